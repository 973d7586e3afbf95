"""Plain request/response values and the error bodies of each OpenStack service.

The handlers never see a socket: the server shell turns bytes into a :class:`Request` and a
:class:`Response` back into bytes. Each service has its own error shape, and clients parse
them (keystoneauth reads ``error.message``; openstacksdk looks for Nova's ``{"itemNotFound":
{...}}`` and Neutron's ``{"NeutronError": {...}}``), so the stand-in reproduces each one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

__all__ = [
    "Request",
    "Response",
    "json_response",
    "keystone_error",
    "neutron_error",
    "nova_error",
]


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request. Header names are lower case; query values keep repetitions."""

    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        """A header value by case-insensitive name."""
        return self.headers.get(name.lower(), default)

    def first(self, name: str) -> str | None:
        """The first value of a query parameter, or ``None``."""
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def base_url(self) -> str:
        """``http://host:port`` as the client addressed this server (from ``Host``)."""
        return "http://" + (self.header("host") or "127.0.0.1")


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP response; ``body`` is already encoded."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The body decoded as JSON (for tests and logs)."""
        return json.loads(self.body) if self.body else None


def json_response(status: int, data: Any, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response with ``Content-Type`` set."""
    merged = {"Content-Type": "application/json"}
    merged.update(headers or {})
    return Response(status, merged, json.dumps(data).encode())


def keystone_error(status: int, message: str) -> Response:
    """Keystone's error shape: ``{"error": {"code", "title", "message"}}``.

    keystonemiddleware answers 401 for Nova and Neutron with the same body.
    """
    title = HTTPStatus(status).phrase
    body = {"error": {"code": status, "title": title, "message": message}}
    return json_response(status, body)


# Nova's fault names (nova/api/openstack/wsgi.py, class Fault); other codes use computeFault.
_NOVA_FAULTS = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
}


def nova_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """Nova's error shape, e.g. ``{"itemNotFound": {"code": 404, "message": "..."}}``."""
    name = _NOVA_FAULTS.get(status, "computeFault")
    return json_response(status, {name: {"code": status, "message": message}}, headers)


def neutron_error(status: int, kind: str, message: str) -> Response:
    """Neutron's error shape: ``{"NeutronError": {"type", "message", "detail"}}``."""
    return json_response(status, {"NeutronError": {"type": kind, "message": message, "detail": ""}})
