"""Merge what Nova/Neutron, libvirt and OVSDB say about a VM's NICs, and cross-check them.

Pure: the sources' findings in, :class:`~vmsniff.model.Nic` rows plus warnings out. NICs are
keyed by MAC. A contradiction about identity (a port id, a VM uuid, a tap that differs between
sources) raises :class:`~vmsniff.errors.Conflict` naming both sides; a gap (a source that did
not see a NIC, a name found only by convention) becomes a warning or a note.
"""

from __future__ import annotations

from collections.abc import Sequence

from vmsniff.errors import Ambiguous, Conflict, NotFound
from vmsniff.model import Nic, PlugKind
from vmsniff.resolve.libvirt import DomainIface, DomainInfo
from vmsniff.resolve.nova import CloudPort
from vmsniff.resolve.ovsdb import OvsIface, match_iface

__all__ = ["merge_nics", "select_nics", "single_nic"]

_SRIOV_VNIC = {"direct", "direct-physical", "accelerator-direct", "remote-managed"}
# Why each off-OVS plug cannot be seen. SR-IOV: the VF's frames go from the NIC straight to
# the guest. macvtap: they go through a macvtap device on a host NIC, never through a bridge.
_OFF_OVS = {
    PlugKind.SRIOV: (
        "SR-IOV",
        "its traffic bypasses Open vSwitch, so it cannot be mirrored or captured on the host",
    ),
    PlugKind.MACVTAP: (
        "macvtap",
        "its traffic bypasses Open vSwitch (a macvtap device on a host NIC), so an OVS "
        "mirror cannot see it",
    ),
}


def _off_ovs_warning(
    mac: str, plug: PlugKind, port: CloudPort | None, diface: DomainIface | None
) -> str:
    # Say why, not only what: the plug column alone reads like a detail, and every command
    # that mirrors or captures would otherwise fail later with a less helpful message.
    vnic = port.vnic_type if port else None
    if vnic in _SRIOV_VNIC or vnic == "macvtap" or diface is None:
        how = f"vnic_type {vnic}"
    else:
        how = f"libvirt interface type {diface.kind}"
    kind, why = _OFF_OVS[plug]
    return f"NIC {mac} is {kind} ({how}): {why}"


def _plug(
    port: CloudPort | None, diface: DomainIface | None, ovs: OvsIface | None, ovn: bool
) -> PlugKind:
    vnic = port.vnic_type if port else None
    if vnic in _SRIOV_VNIC or (diface and diface.kind == "hostdev"):
        return PlugKind.SRIOV
    if vnic == "macvtap" or (diface and diface.kind == "direct"):
        return PlugKind.MACVTAP
    if (diface and diface.kind == "vhostuser") or (ovs and ovs.type.startswith("dpdkvhostuser")):
        return PlugKind.VHOSTUSER
    if ovs is not None:
        if ovs.name.startswith("qvo"):
            return PlugKind.HYBRID
        return PlugKind.OVN if ovn else PlugKind.OVS
    if (diface and (diface.source_bridge or "").startswith("qbr")) or (port and port.hybrid_plug):
        return PlugKind.HYBRID
    return PlugKind.UNKNOWN


def merge_nics(
    server_id: str,
    ports: Sequence[CloudPort],
    domain: DomainInfo | None,
    ifaces: Sequence[OvsIface] | None,
    *,
    ovn: bool = False,
) -> tuple[list[Nic], list[str]]:
    """One Nic per MAC the sources know; ``ifaces`` None means OVSDB was not consulted."""
    warnings: list[str] = []
    conflicts: list[str] = []
    by_mac_port = {p.mac: p for p in ports}
    by_mac_dom = {i.mac: i for i in (domain.ifaces if domain else ())}
    # the guest's own order (libvirt's devices: eth0, eth1, ...) when libvirt was asked
    macs = list(by_mac_dom) + [m for m in by_mac_port if m not in by_mac_dom]
    nics = []
    for mac in macs:
        port, diface = by_mac_port.get(mac), by_mac_dom.get(mac)
        notes: list[str] = []
        port_id = port.id if port else (diface.interface_id if diface else None)
        if port and diface and diface.interface_id and diface.interface_id != port.id:
            conflicts.append(
                f"NIC {mac}: Neutron says port {port.id}, libvirt's virtualport says "
                f"{diface.interface_id}"
            )
        ovs = how = None
        if ifaces is not None:
            ovs, how = match_iface(ifaces, port_id=port_id, mac=mac, vm_uuid=server_id)
            if ovs is not None:
                if ovs.vm_uuid and ovs.vm_uuid != server_id:
                    conflicts.append(
                        f"NIC {mac}: OVS interface {ovs.name} belongs to vm-uuid {ovs.vm_uuid}, "
                        f"not to server {server_id}"
                    )
                if ovs.mac and ovs.mac != mac:
                    conflicts.append(
                        f"NIC {mac}: OVS interface {ovs.name} has attached-mac {ovs.mac}"
                    )
                if how != "iface-id":
                    notes.append(f"OVS interface matched by {how}, not by iface-id")
                port_id = port_id or ovs.iface_id
        plug = _plug(port, diface, ovs, ovn)
        tap = diface.tap if diface else None
        ovs_port = ovs.port if ovs else None
        suffix = port_id[:11] if port_id else None
        if tap is None and ovs is not None and ovs.name.startswith("tap"):
            tap = ovs.name
        if plug.on_ovs and plug is not PlugKind.VHOSTUSER and tap is None and suffix:
            tap = f"tap{suffix}"
            notes.append(f"tap {tap} inferred from the os-vif naming convention")
        if plug is PlugKind.HYBRID and ovs_port is None and suffix:
            ovs_port = f"qvo{suffix}"
            notes.append(f"OVS port {ovs_port} inferred from the os-vif naming convention")
        if ovs is not None and diface and diface.tap:
            if plug is PlugKind.OVS and ovs.name != diface.tap:
                conflicts.append(
                    f"NIC {mac}: libvirt's tap is {diface.tap}, OVS has interface {ovs.name}"
                )
            if plug is PlugKind.HYBRID and ovs.name[3:] != diface.tap[3:]:
                warnings.append(
                    f"NIC {mac}: tap {diface.tap} and OVS port {ovs.name} do not share the "
                    "os-vif suffix"
                )
        if ifaces is not None and ovs is None and plug.on_ovs:
            warnings.append(f"NIC {mac}: no OVS interface found for it on this switch")
        if plug in _OFF_OVS:
            warnings.append(_off_ovs_warning(mac, plug, port, diface))
        if port and domain and diface is None:
            warnings.append(f"NIC {mac} (port {port.id}) is in Neutron but not in libvirt's XML")
        sources = tuple(
            name for name, seen in (("nova", port), ("libvirt", diface), ("ovsdb", ovs)) if seen
        )
        nics.append(
            Nic(
                mac=mac,
                port_id=port_id,
                network_id=port.network_id if port else None,
                network_name=port.network_name if port else None,
                fixed_ips=port.fixed_ips if port else (),
                tap=tap,
                ovs_port=ovs_port,
                bridge=ovs.bridge if ovs else ("br-int" if plug.on_ovs and ovs_port else None),
                ofport=ovs.ofport if ovs else None,
                tag=ovs.tag if ovs else None,
                mtu=(ovs.mtu if ovs else None) or (diface.mtu if diface else None),
                plug=plug,
                vnic_type=port.vnic_type if port else None,
                sources=sources,
                notes=tuple(notes),
            )
        )
    if conflicts:
        raise Conflict(
            "the sources disagree: " + "; ".join(conflicts),
            hint="a migration or re-plug may be in progress; retry, or check with "
            "`openstack port show`, `virsh dumpxml` and `ovs-vsctl list Interface`",
        )
    return nics, warnings


def select_nics(nics: Sequence[Nic], selector: str | None) -> list[Nic]:
    """NICs matching ``--nic`` (MAC, port id or its prefix, network name/id, tap, OVS port)."""
    if not selector:
        return list(nics)
    s = selector.lower()
    hits = [
        n
        for n in nics
        if s
        in {
            n.mac,
            (n.port_id or "").lower(),
            (n.network_id or "").lower(),
            (n.network_name or "").lower(),
            (n.tap or "").lower(),
            (n.ovs_port or "").lower(),
        }
        or (len(s) >= 8 and (n.port_id or "").lower().startswith(s))
    ]
    if not hits:
        raise NotFound(
            f"no NIC matches --nic {selector!r}",
            hint="NICs: " + "; ".join(_describe(n) for n in nics),
        )
    return hits


def single_nic(nics: Sequence[Nic]) -> Nic:
    """The one NIC a command acts on, or Ambiguous listing them (pick with --nic)."""
    if len(nics) == 1:
        return nics[0]
    if not nics:
        raise NotFound("the VM has no NICs")
    raise Ambiguous(
        f"the VM has {len(nics)} NICs; choose one with --nic",
        candidates=[_describe(n) for n in nics],
        hint="--nic takes a MAC, a Neutron port id, a network name or id",
    )


def _describe(nic: Nic) -> str:
    net = nic.network_name or nic.network_id or "?"
    return f"{nic.mac} port {nic.port_id or '?'} on {net} ({nic.plug.value})"
