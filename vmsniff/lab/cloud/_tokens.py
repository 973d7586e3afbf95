"""Stateless Keystone tokens: the claims, signed with the server's secret (HMAC-SHA256).

Keeping no token table means the handlers stay functions of (request, inventory, secret,
clock); a token from another stand-in instance (another secret) is simply unknown (401).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

__all__ = ["Claims", "issue", "verify"]


@dataclass(frozen=True, slots=True)
class Claims:
    """Who a token speaks for: user and project ids, and when it expires (Unix time)."""

    user_id: str
    project_id: str
    expires: int


def _sign(secret: bytes, payload: bytes) -> str:
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


def issue(secret: bytes, claims: Claims) -> str:
    """The token string for these claims."""
    payload = json.dumps([claims.user_id, claims.project_id, claims.expires]).encode()
    encoded = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{encoded}.{_sign(secret, payload)}"


def verify(secret: bytes, token: str, now: float) -> Claims | None:
    """The claims of a valid, unexpired token signed with ``secret``; otherwise ``None``."""
    encoded, _, signature = token.partition(".")
    try:
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        return None
    if not hmac.compare_digest(_sign(secret, payload), signature):
        return None
    user_id, project_id, expires = json.loads(payload)
    if expires <= now:
        return None
    return Claims(str(user_id), str(project_id), int(expires))
