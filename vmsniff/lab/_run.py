"""Running system tools for the lab, inside or outside a namespace, with clear errors."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence

from vmsniff.errors import MissingDependency, VmsniffError

__all__ = ["LabError", "need", "run", "run_in"]


class LabError(VmsniffError):
    """A step of building or using the lab failed."""


def need(tool: str, package: str) -> str:
    """Path of ``tool``, or MissingDependency naming the Debian package that provides it."""
    path = shutil.which(tool)
    if path is None:
        raise MissingDependency(
            f"{tool} is not installed",
            hint=f"apt-get install {package} (or run scripts/install.sh)",
        )
    return path


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; raise LabError with its stderr when it fails."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(
            f"{argv[0]} did not finish within {timeout:.0f} s: {' '.join(argv)}"
        ) from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {detail}")
    return proc


def run_in(
    namespace: str, argv: Sequence[str], **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run a command inside a network namespace (``ip netns exec``)."""
    return run(["ip", "netns", "exec", namespace, *argv], **kwargs)  # type: ignore[arg-type]
