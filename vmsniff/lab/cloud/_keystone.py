"""Keystone v3: version discovery and password authentication (``POST /v3/auth/tokens``).

keystoneauth's ``password`` plugin first discovers the versions at the auth URL, then posts
``{"auth": {"identity": {"methods": ["password"], "password": {"user": {...}}}, "scope":
{"project": {...}}}}`` and reads the token id from ``X-Subject-Token`` and the service catalog
from the body. Users and projects are named by ``name`` plus ``domain`` (``name`` or ``id``)
or by ``id``; the one domain is ``Default`` (id ``default``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from vmsniff.lab.cloud import _tokens
from vmsniff.lab.cloud._context import Auth, Context
from vmsniff.lab.cloud._http import Request, Response, json_response, keystone_error
from vmsniff.lab.cloud.inventory import DOMAIN_ID, DOMAIN_NAME, Project, User

__all__ = ["authenticate", "identity_root", "identity_v3", "issue_token"]

_UPDATED = "2024-01-01T00:00:00Z"
_MEDIA = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]
_DOMAIN = {"id": DOMAIN_ID, "name": DOMAIN_NAME}


def _version(base: str) -> dict[str, Any]:
    return {
        "id": "v3.14",
        "status": "stable",
        "updated": _UPDATED,
        "links": [{"rel": "self", "href": f"{base}/identity/v3/"}],
        "media-types": _MEDIA,
    }


def identity_root(
    req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]
) -> Response:
    """``GET /identity``: the version list (Keystone answers 300 Multiple Choices)."""
    return json_response(300, {"versions": {"values": [_version(req.base_url)]}})


def identity_v3(req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]) -> Response:
    """``GET /identity/v3``: the v3 version document."""
    return json_response(200, {"version": _version(req.base_url)})


def _in_domain(ref: Mapping[str, Any]) -> bool:
    domain = ref.get("domain")
    if domain is None:
        return True  # keystone would 400; accepting it keeps odd clients working
    return bool(domain.get("id") == DOMAIN_ID or domain.get("name") == DOMAIN_NAME)


def authenticate(req: Request, ctx: Context) -> Auth | Response:
    """The caller of a password-auth request, or the error Keystone would answer."""
    try:
        body = json.loads(req.body or b"null")
        identity = body["auth"]["identity"]
        methods = identity["methods"]
    except (ValueError, KeyError, TypeError):
        return keystone_error(400, "Expecting to find auth in request body.")
    if methods != ["password"]:
        return keystone_error(401, f"Unsupported authentication method: {methods!r}.")
    try:
        ref = identity["password"]["user"]
        password = ref["password"]
    except (KeyError, TypeError):
        return keystone_error(400, "Expecting to find password in identity.")
    user: User | None = None
    if "id" in ref:
        user = next((u for u in ctx.inventory.users if u.id == ref["id"]), None)
    elif _in_domain(ref):
        user = next((u for u in ctx.inventory.users if u.name == ref.get("name")), None)
    if user is None or password != user.password:
        # Keystone does not say which of user and password was wrong.
        return keystone_error(401, "The request you have made requires authentication.")

    project = _scope(body["auth"].get("scope"), ctx)
    if isinstance(project, Response):
        return project
    if project is None:
        # No scope asked: Keystone scopes to the user's default project.
        project = ctx.inventory.project(user.project)
    if project is None or project.name != user.project:
        return keystone_error(
            401, f"User {user.id} has no access to project {project and project.id}"
        )
    return Auth(user, project)


def _scope(scope: Any, ctx: Context) -> Project | None | Response:
    if not scope:
        return None
    ref = scope.get("project") if isinstance(scope, Mapping) else None
    if not isinstance(ref, Mapping):
        return keystone_error(400, "Only project scope is supported by the stand-in.")
    if "id" in ref:
        found = next((p for p in ctx.inventory.projects if p.id == ref["id"]), None)
    elif _in_domain(ref):
        found = next((p for p in ctx.inventory.projects if p.name == ref.get("name")), None)
    else:
        found = None
    if found is None:
        return keystone_error(401, "The request you have made requires authentication.")
    return found


def _role(name: str) -> dict[str, str]:
    return {"id": hashlib.md5(name.encode(), usedforsecurity=False).hexdigest(), "name": name}


def _endpoint(kind: str, url: str, region: str) -> dict[str, Any]:
    return {
        "id": hashlib.md5(kind.encode(), usedforsecurity=False).hexdigest(),
        "interface": "public",
        "region": region,
        "region_id": region,
        "url": url,
    }


def catalog(base: str, region: str) -> list[dict[str, Any]]:
    """The service catalog: identity, compute and network, each with one public endpoint."""
    services = [
        ("identity", "keystone", f"{base}/identity"),
        ("compute", "nova", f"{base}/compute/v2.1"),
        ("network", "neutron", f"{base}/network"),
    ]
    return [
        {
            "id": hashlib.md5(name.encode(), usedforsecurity=False).hexdigest(),
            "type": kind,
            "name": name,
            "endpoints": [_endpoint(kind, url, region)],
        }
        for kind, name, url in services
    ]


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def issue_token(req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]) -> Response:
    """``POST /identity/v3/auth/tokens``: 201 with ``X-Subject-Token`` and the token body."""
    who = authenticate(req, ctx)
    if isinstance(who, Response):
        return who
    now = ctx.clock()
    expires = int(now) + ctx.token_lifetime
    token = _tokens.issue(ctx.secret, _tokens.Claims(who.user.id, who.project.id, expires))
    roles = list(who.user.roles)
    # Keystone's implied roles: admin implies member, member implies reader.
    for implied in ("member", "reader"):
        if implied not in roles:
            roles.append(implied)
    body = {
        "token": {
            "methods": ["password"],
            "user": {
                "id": who.user.id,
                "name": who.user.name,
                "domain": _DOMAIN,
                "password_expires_at": None,
            },
            "audit_ids": [token[-22:]],
            "issued_at": _time(now),
            "expires_at": _time(expires),
            "project": {"id": who.project.id, "name": who.project.name, "domain": _DOMAIN},
            "is_domain": False,
            "roles": [_role(r) for r in roles],
            "catalog": catalog(req.base_url, ctx.inventory.region),
        }
    }
    return json_response(201, body, {"X-Subject-Token": token})
