"""The OVSDB source: which OVS Interface/Port/Bridge carries a VM's NIC.

os-vif (and Nova before it) label each VM interface with ``external_ids``: ``iface-id``
(the Neutron port id), ``attached-mac``, ``vm-uuid`` and ``iface-status``. Matching goes by
``iface-id``, then ``attached-mac``, then ``vm-uuid``; device-name conventions (``qvo``…) are
only a last resort, applied by the merge step and reported as such.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["OvsIface", "match_iface", "snapshot"]


@dataclass(frozen=True, slots=True)
class OvsIface:
    """One OVS Interface with the Port and Bridge it belongs to."""

    name: str
    port: str
    bridge: str
    type: str
    iface_id: str | None
    mac: str | None
    vm_uuid: str | None
    ofport: int | None
    tag: int | None
    mtu: int | None
    error: str | None


def _one(value: Any) -> Any:
    # The IDL gives optional columns as lists of zero or one element.
    if isinstance(value, list):
        return value[0] if value else None
    return value


def snapshot(api: Any) -> tuple[list[OvsIface], dict[str, str]]:
    """Every Interface of the switch, and the Open_vSwitch row's external_ids."""
    port_of: dict[Any, Any] = {}
    bridge_of: dict[Any, str] = {}
    for bridge in api.tables["Bridge"].rows.values():
        for port in bridge.ports:
            bridge_of[port.uuid] = bridge.name
    for port in api.tables["Port"].rows.values():
        for iface in port.interfaces:
            port_of[iface.uuid] = port
    found = []
    for row in api.tables["Interface"].rows.values():
        port = port_of.get(row.uuid)
        ids = dict(row.external_ids)
        found.append(
            OvsIface(
                name=row.name,
                port=port.name if port is not None else "",
                bridge=bridge_of.get(port.uuid, "") if port is not None else "",
                type=row.type or "system",
                iface_id=ids.get("iface-id"),
                mac=(ids.get("attached-mac") or "").lower() or None,
                vm_uuid=ids.get("vm-uuid"),
                ofport=_one(row.ofport),
                tag=_one(port.tag) if port is not None else None,
                mtu=_one(row.mtu),
                error=_one(row.error),
            )
        )
    system = next(iter(api.tables["Open_vSwitch"].rows.values()), None)
    return found, dict(system.external_ids) if system is not None else {}


def match_iface(
    ifaces: Iterable[OvsIface], *, port_id: str | None, mac: str | None, vm_uuid: str | None
) -> tuple[OvsIface | None, str | None]:
    """The interface of one NIC and how it was matched (``iface-id``, ``attached-mac``, …)."""
    ifaces = list(ifaces)
    if port_id:
        for iface in ifaces:
            if iface.iface_id == port_id:
                return iface, "iface-id"
    if mac:
        hits = [i for i in ifaces if i.mac == mac.lower()]
        if len(hits) == 1:
            return hits[0], "attached-mac"
    if vm_uuid and mac:
        hits = [i for i in ifaces if i.vm_uuid == vm_uuid and (i.mac in (None, mac.lower()))]
        if len(hits) == 1:
            return hits[0], "vm-uuid"
    return None, None
