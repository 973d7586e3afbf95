"""The data that flows through vmsniff: resolve -> Target -> plan -> apply -> receive.

Frozen, slotted dataclasses and enums only; no I/O, no third-party imports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Direction", "Nic", "PlugKind", "Server", "Target"]


class PlugKind(StrEnum):
    """How a NIC reaches the integration bridge."""

    HYBRID = "hybrid"  #: tap -> qbr Linux bridge -> qvb/qvo veth -> qvo on the OVS bridge
    OVS = "ovs"  #: tap directly on the OVS bridge (OVS firewall driver)
    OVN = "ovn"  #: tap directly on br-int, managed by ovn-controller
    VHOSTUSER = "vhostuser"  #: OVS-DPDK vhost-user socket: no kernel tap
    SRIOV = "sriov"  #: a PCI virtual function passed to the guest: not on OVS
    MACVTAP = "macvtap"  #: macvtap on a host NIC: not on OVS
    UNKNOWN = "unknown"

    @property
    def on_ovs(self) -> bool:
        """Whether an OVS mirror can see this NIC's traffic."""
        return self in (PlugKind.HYBRID, PlugKind.OVS, PlugKind.OVN, PlugKind.VHOSTUSER)


class Direction(StrEnum):
    """Named from the VM's point of view (DESIGN.md contract 3)."""

    FROM_VM = "from-vm"  #: what the VM sends (OVS select_src_port on its port)
    TO_VM = "to-vm"  #: what it receives (select_dst_port)
    BOTH = "both"


@dataclass(frozen=True, slots=True)
class Nic:
    """One interface of a VM, as far as the sources could tell."""

    mac: str
    port_id: str | None = None  #: Neutron port UUID
    network_id: str | None = None
    network_name: str | None = None
    fixed_ips: tuple[str, ...] = ()
    tap: str | None = None  #: host-side kernel device (None for vhost-user / SR-IOV)
    ovs_port: str | None = None  #: the port on the OVS bridge (qvo… for hybrid)
    bridge: str | None = None
    ofport: int | None = None
    tag: int | None = None  #: bridge-local VLAN tag of the OVS port (mirrored frames carry it)
    mtu: int | None = None
    plug: PlugKind = PlugKind.UNKNOWN
    vnic_type: str | None = None
    sources: tuple[str, ...] = ()  #: which sources reported this NIC (nova, libvirt, ovsdb)
    notes: tuple[str, ...] = ()  #: how a field was found when not from a source of record

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["plug"] = self.plug.value
        data["fixed_ips"] = list(self.fixed_ips)
        data["sources"] = list(self.sources)
        data["notes"] = list(self.notes)
        return data


@dataclass(frozen=True, slots=True)
class Server:
    """The VM as Nova (or, offline, libvirt's Nova metadata) describes it."""

    id: str
    name: str
    project_id: str | None = None
    project_name: str | None = None
    status: str | None = None  #: Nova status (ACTIVE, SHUTOFF, …) or libvirt state
    host: str | None = None  #: compute node
    instance_name: str | None = None  #: libvirt domain name


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved VM: where it runs and each of its NICs, with provenance."""

    server: Server
    nics: tuple[Nic, ...]
    local: bool  #: the VM runs on the host vmsniff is running on
    ovsdb: str | None = None  #: the OVSDB remote that serves the VM's host
    libvirt_uri: str | None = None
    sources: tuple[str, ...] = ()  #: sources consulted successfully
    warnings: tuple[str, ...] = field(default=())  #: disagreements or gaps worth telling

    def to_dict(self) -> dict[str, Any]:
        """The stable ``resolve --json`` document (docs/resolve.md)."""
        return {
            "server": asdict(self.server),
            "local": self.local,
            "ovsdb": self.ovsdb,
            "libvirt_uri": self.libvirt_uri,
            "sources": list(self.sources),
            "warnings": list(self.warnings),
            "nics": [nic.to_dict() for nic in self.nics],
        }
