"""The route table and :func:`dispatch`: a :class:`Request` in, a :class:`Response` out.

Routing, token checks and request counting live here; the answers come from the service
modules (``_keystone``, ``_nova``, ``_neutron``), each handler a function of (request,
context, caller, path parameters). Nothing here touches a socket, so the unit tests call
:func:`dispatch` directly.

Every request outside ``/_stand-in/`` is counted under its method and path template (``GET
/compute/v2.1/servers/{id}``), unmatched ones under their literal path. ``GET
/_stand-in/requests`` returns ``{"counts": {...}, "total": N}``; ``DELETE`` resets them.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from vmsniff.lab.cloud import _keystone, _neutron, _nova, _tokens
from vmsniff.lab.cloud._context import Auth, Context
from vmsniff.lab.cloud._http import (
    Request,
    Response,
    json_response,
    keystone_error,
    neutron_error,
    nova_error,
)

__all__ = ["ROUTES", "RequestCounter", "Route", "dispatch"]

Handler = Callable[[Request, Context, Auth | None, dict[str, str]], Response]


class RequestCounter:
    """Thread-safe counts of requests by ``"METHOD /path/template"``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, key: str) -> None:
        """Count one request."""
        with self._lock:
            self._counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        """The counts so far."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Forget every count."""
        with self._lock:
            self._counts.clear()


@dataclass(frozen=True, slots=True)
class Route:
    """A method and path template (``{name}`` matches one segment), its handler and service.

    ``service`` picks the 401 shape and ``auth`` whether a token is required.
    """

    method: str
    template: str
    handler: Handler
    service: str
    auth: bool = True

    @property
    def pattern(self) -> re.Pattern[str]:
        """The template as an anchored regular expression."""
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        return re.compile(f"^{regex}$")


ROUTES: tuple[Route, ...] = (
    Route("GET", "/identity", _keystone.identity_root, "identity", auth=False),
    Route("GET", "/identity/v3", _keystone.identity_v3, "identity", auth=False),
    Route("POST", "/identity/v3/auth/tokens", _keystone.issue_token, "identity", auth=False),
    Route("GET", "/compute", _nova.compute_root, "compute", auth=False),
    Route("GET", "/compute/v2.1", _nova.compute_v21, "compute", auth=False),
    Route("GET", "/compute/v2.1/servers", _nova.servers_list, "compute"),
    Route("GET", "/compute/v2.1/servers/detail", _nova.servers_detail, "compute"),
    Route("GET", "/compute/v2.1/servers/{id}", _nova.server_show, "compute"),
    Route("GET", "/compute/v2.1/servers/{id}/os-interface", _nova.server_interfaces, "compute"),
    Route("GET", "/network", _neutron.network_root, "network", auth=False),
    Route("GET", "/network/v2.0", _neutron.network_v20, "network", auth=False),
    Route("GET", "/network/v2.0/ports", _neutron.ports_list, "network"),
    Route("GET", "/network/v2.0/ports/{id}", _neutron.port_show, "network"),
    Route("GET", "/network/v2.0/networks", _neutron.networks_list, "network"),
    Route("GET", "/network/v2.0/networks/{id}", _neutron.network_show, "network"),
)
_COMPILED = [(route, route.pattern) for route in ROUTES]
_COUNTER_PATH = "/_stand-in/requests"


def _unauthorized(service: str, base: str) -> Response:
    message = "The request you have made requires authentication."
    if service == "identity":
        return keystone_error(401, message)
    # keystonemiddleware answers for Nova and Neutron, and says where to get a token.
    response = keystone_error(401, message)
    headers = dict(response.headers)
    headers["WWW-Authenticate"] = f'Keystone uri="{base}/identity"'
    return Response(401, headers, response.body)


def _not_found(service: str, path: str) -> Response:
    if service == "compute":
        return nova_error(404, "The resource could not be found.")
    if service == "network":
        return neutron_error(404, "HTTPNotFound", "The resource could not be found.")
    return keystone_error(404, f"Could not find the resource {path}.")


def _caller(req: Request, ctx: Context) -> Auth | None:
    token = req.header("x-auth-token")
    claims = _tokens.verify(ctx.secret, token, ctx.clock()) if token else None
    if claims is None:
        return None
    user = ctx.inventory.user(claims.user_id)
    project = ctx.inventory.project(claims.project_id)
    if user is None or project is None:
        return None
    return Auth(user, project)


def _counter_route(req: Request, counter: RequestCounter) -> Response:
    if req.method == "GET":
        counts = counter.snapshot()
        return json_response(200, {"counts": counts, "total": sum(counts.values())})
    if req.method == "DELETE":
        counter.reset()
        return Response(204)
    return json_response(405, {"error": f"{req.method} not allowed"}, {"Allow": "GET, DELETE"})


def dispatch(req: Request, ctx: Context, counter: RequestCounter | None = None) -> Response:
    """Route one request, check its token, count it, and answer it."""
    path = req.path.rstrip("/") or "/"
    if path == _COUNTER_PATH:
        return _counter_route(req, counter or RequestCounter())

    allowed: list[str] = []
    for route, pattern in _COMPILED:
        match = pattern.match(path)
        if match is None:
            continue
        if route.method != req.method:
            allowed.append(route.method)
            continue
        if counter is not None:
            counter.add(f"{req.method} {route.template}")
        caller = _caller(req, ctx)
        if route.auth and caller is None:
            return _unauthorized(route.service, req.base_url)
        return route.handler(req, ctx, caller, match.groupdict())

    if counter is not None:
        counter.add(f"{req.method} {path}")
    service = path.lstrip("/").split("/", 1)[0]
    if allowed:
        return json_response(405, {"error": "Method Not Allowed"}, {"Allow": ", ".join(allowed)})
    return _not_found(service, path)
