"""The one exception hierarchy of vmsniff.

Every error a user can cause or meet is a :class:`VmsniffError`; each class carries the
process exit code (:mod:`vmsniff.exitcodes`) and each instance a message plus a hint that
says what to do next. Errors of lower libraries (openstacksdk, libvirt, ovsdbapp, pyroute2,
sockets) are translated into these at the adapter that calls them; the CLI maps them to
messages and exit codes in one place (:mod:`vmsniff.cli._errors`).

The tree is shallow on purpose::

    VmsniffError                 ERROR (1)
    ├── UsageError               USAGE (2)        bad option, argument or plan: the caller's fault
    ├── NotFound                 NOT_FOUND (3)    VM, NIC, bridge, session, file
    ├── Ambiguous                AMBIGUOUS (4)    several matches; carries the candidates
    ├── InvalidState             STATE (5)        VM not ACTIVE, not on this host, lab (not) running
    ├── Unreachable              UNREACHABLE (6)  OVSDB, libvirt or the cloud API did not answer
    ├── PermissionDenied         PERMISSION (7)   root / CAP_NET_RAW / admin role needed
    ├── SwitchError              SWITCH (8)       Open vSwitch refused a transaction or a port
    ├── MissingDependency        DEPENDENCY (9)   a system tool or library is missing
    ├── Conflict                 CONFLICT (10)    Nova, libvirt and OVSDB disagree about a VM
    ├── FileError                IO (11)          a file could not be read or written (ENOSPC)
    ├── SessionLost              SESSION_LOST (12) rows of a live session vanished or changed
    └── MalformedPacket          ERROR (1)        bytes from the wire: the peer's fault; decoders
                                                  raise it, pipelines count it and go on
"""

from __future__ import annotations

from collections.abc import Sequence

from vmsniff.exitcodes import ExitCode

__all__ = [
    "Ambiguous",
    "Conflict",
    "FileError",
    "InvalidState",
    "MalformedPacket",
    "MissingDependency",
    "NotFound",
    "PermissionDenied",
    "SessionLost",
    "SwitchError",
    "Unreachable",
    "UsageError",
    "VmsniffError",
]


class VmsniffError(Exception):
    """Base of every vmsniff error: a message, a next-step hint and an exit code."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description, used by ``--json`` output of failing commands."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "exit_code": int(self.exit_code),
        }


class UsageError(VmsniffError):
    """A bad option, argument or combination of them."""

    exit_code = ExitCode.USAGE


class NotFound(VmsniffError):
    """The named VM, NIC, bridge, session or file does not exist."""

    exit_code = ExitCode.NOT_FOUND


class Ambiguous(VmsniffError):
    """A name matched several things; ``candidates`` lists them for the user to pick."""

    exit_code = ExitCode.AMBIGUOUS

    def __init__(
        self, message: str, *, candidates: Sequence[str] = (), hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.candidates = list(candidates)

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "candidates": self.candidates}


class InvalidState(VmsniffError):
    """The thing exists but is in the wrong state for the request."""

    exit_code = ExitCode.STATE


class Unreachable(VmsniffError):
    """An endpoint did not answer (or refused the connection) in time."""

    exit_code = ExitCode.UNREACHABLE


class PermissionDenied(VmsniffError):
    """The caller lacks a privilege (root, CAP_NET_RAW, an admin role)."""

    exit_code = ExitCode.PERMISSION


class SwitchError(VmsniffError):
    """Open vSwitch refused a transaction, a port did not come up, or a limit was hit."""

    exit_code = ExitCode.SWITCH


class MissingDependency(VmsniffError):
    """A system tool or library that vmsniff needs is not installed."""

    exit_code = ExitCode.DEPENDENCY


class Conflict(VmsniffError):
    """The sources disagree (which and how is in the message); nothing was changed."""

    exit_code = ExitCode.CONFLICT


class FileError(VmsniffError):
    """A file could not be read or written: disk full, read-only file system, I/O error."""

    exit_code = ExitCode.IO


class SessionLost(VmsniffError):
    """A running session's rows were removed or changed by someone else while it ran."""

    exit_code = ExitCode.SESSION_LOST


class MalformedPacket(VmsniffError):
    """Bytes from the wire could not be decoded: the peer's fault, never fatal to a capture."""

    exit_code = ExitCode.ERROR
