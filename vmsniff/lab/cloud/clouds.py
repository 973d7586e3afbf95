"""Write a ``clouds.yaml`` that points openstacksdk at the stand-in."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["write_clouds_yaml"]


def _scalar(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar: no YAML library needed.
    return json.dumps(value)


def write_clouds_yaml(
    path: str | Path,
    cloud_name: str,
    port: int,
    user: str,
    password: str,
    project: str,
    *,
    host: str = "127.0.0.1",
    region: str = "RegionOne",
    more: Sequence[tuple[str, str, str, str]] = (),
) -> Path:
    """Write ``path`` holding a cloud entry for the stand-in; return the path.

    ``more`` adds entries (cloud name, user, password, project) on the same server. The
    file holds passwords, so it is created with mode 0600. An existing file is replaced
    (the lab owns it).
    """
    lines = ["clouds:"]
    for name, usr, pw, proj in [(cloud_name, user, password, project), *more]:
        lines += _entry(name, port, usr, pw, proj, host, region)
    text = "\n".join([*lines, ""])
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    tmp.replace(target)
    return target


def _entry(
    cloud_name: str, port: int, user: str, password: str, project: str, host: str, region: str
) -> list[str]:
    return [
        f"  {_scalar(cloud_name)}:",
        "    auth:",
        f"      auth_url: {_scalar(f'http://{host}:{port}/identity/v3')}",
        f"      username: {_scalar(user)}",
        f"      password: {_scalar(password)}",
        f"      project_name: {_scalar(project)}",
        '      user_domain_name: "Default"',
        '      project_domain_name: "Default"',
        f"    region_name: {_scalar(region)}",
        '    identity_api_version: "3"',
        '    interface: "public"',
    ]
