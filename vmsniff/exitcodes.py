"""Exit codes of the ``vmsniff`` command, one per kind of failure (documented in vmsniff(1))."""

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    """What the process exit status means. Scripts may rely on these numbers."""

    OK = 0
    ERROR = 1  #: an unexpected failure (a bug: please report it, with -vv)
    USAGE = 2  #: a bad option, argument or combination (the caller's fault)
    NOT_FOUND = 3  #: the VM, NIC, bridge, session or file named does not exist
    AMBIGUOUS = 4  #: the name matches several things; pick one by id
    STATE = 5  #: the thing exists but is in the wrong state (VM not ACTIVE, lab not running)
    UNREACHABLE = 6  #: an endpoint (OVSDB, libvirt, cloud API) could not be reached in time
    PERMISSION = 7  #: missing privileges (root, CAP_NET_RAW, admin role)
    SWITCH = 8  #: Open vSwitch refused or failed (transaction, tunnel port, mirror limit)
    DEPENDENCY = 9  #: a system tool or library vmsniff needs is missing
    CONFLICT = 10  #: the sources (Nova, libvirt, OVSDB) disagree about the VM
    IO = 11  #: reading or writing a file failed (disk full, read-only file system, I/O error)
    SESSION_LOST = 12  #: a running session's rows were removed or changed by someone else
    INTERRUPTED = 130  #: stopped by Ctrl-C before finishing
