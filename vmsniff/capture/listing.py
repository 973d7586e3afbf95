"""``-D``: what can be captured on this host, as tcpdump's ``-D`` lists interfaces.

``receive -D``: the network interfaces (receive listens on one, or on all). ``capture -D``:
the VMs libvirt runs here and their NICs, named as capture names them (``VM/ethN``, the
domain's N-th interface) with the tap device and MAC address.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Capturable", "interfaces", "vm_nics"]


@dataclass(frozen=True, slots=True)
class Capturable:
    """One thing ``-D`` lists."""

    name: str
    detail: str
    state: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def interfaces(sys_class_net: Path = Path("/sys/class/net")) -> list[Capturable]:
    """This network namespace's interfaces, in index order, with their operational state."""
    out = []
    for _index, name in sorted(socket.if_nameindex()):
        try:
            state = (sys_class_net / name / "operstate").read_text().strip()
        except OSError:
            state = "unknown"
        out.append(Capturable(name, "loopback" if name == "lo" else "", state))
    return out


def vm_nics(libvirt_uri: str) -> list[Capturable]:
    """Every NIC of every domain libvirt at ``libvirt_uri`` knows, as ``VM/ethN``."""
    from vmsniff.resolve.libvirt import LibvirtSource

    source = LibvirtSource(libvirt_uri)
    try:
        domains = source.domains()
    finally:
        source.close()
    out = []
    for dom in sorted(domains, key=lambda d: d.display_name or d.name):
        vm = dom.display_name or dom.name
        for i, iface in enumerate(dom.ifaces):
            where = iface.tap or iface.kind
            out.append(Capturable(f"{vm}/eth{i}", f"{where}, {iface.mac}, domain {dom.name}",
                                  dom.state))  # fmt: skip
    return out
