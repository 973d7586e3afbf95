"""The kernel side of a ``--at ovs`` port: find its network device, make it quiet, bring it up.

Open vSwitch creates an internal port's device (a tap under the userspace datapath, an
internal device under the kernel one) *down*; frames a Mirror sends to a down device are
lost. Before bringing it up we switch off what would make the kernel talk on it: IPv6 (router
solicitations, MLD, DAD) and ARP (``IFF_NOARP``). Open vSwitch discards whatever arrives on a
mirror's output port anyway (ovs-vswitchd.conf.db(5), Mirror ``output_port``), but a quiet
device keeps the capture holding only the VM's frames. Plain ``ioctl`` (netdevice(7)), no
pyroute2.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import time
from pathlib import Path

from vmsniff.errors import InvalidState, PermissionDenied, VmsniffError

__all__ = ["link_exists", "quiet_up", "wait_link"]

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFF_NOARP = 0x80
_IFREQ = struct.Struct("16sH22x")  # struct ifreq: ifr_name, ifr_flags (40 bytes in all)


def link_exists(name: str) -> bool:
    """Whether a network device ``name`` exists in this network namespace."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def wait_link(name: str, timeout: float = 3.0) -> None:
    """Wait until ``name`` appears here; :class:`InvalidState` if it does not in time."""
    deadline = time.monotonic() + timeout
    while not link_exists(name):
        if time.monotonic() > deadline:
            raise InvalidState(
                f"Open vSwitch made port {name}, but no network device {name} appeared in "
                "this network namespace",
                hint="run vmsniff where ovs-vswitchd runs (its network namespace or container)",
            )
        time.sleep(0.02)


def quiet_up(name: str) -> None:
    """Disable IPv6 and ARP on ``name``, then set it up."""
    knob = Path("/proc/sys/net/ipv6/conf") / name / "disable_ipv6"
    try:
        if knob.exists():
            knob.write_text("1\n")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            req = _IFREQ.pack(name.encode(), 0)
            flags = _IFREQ.unpack(fcntl.ioctl(sock, SIOCGIFFLAGS, req))[1]
            fcntl.ioctl(sock, SIOCSIFFLAGS, _IFREQ.pack(name.encode(), flags | IFF_UP | IFF_NOARP))
    except PermissionError:
        raise PermissionDenied(
            f"setting up {name} needs CAP_NET_ADMIN", hint="run as root"
        ) from None
    except OSError as exc:
        raise VmsniffError(f"cannot set up {name}: {exc.strerror or exc}") from None
