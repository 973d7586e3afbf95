"""Apply a MirrorPlan in one OVSDB transaction, check the tunnel came up, tear down in one.

Set columns are mutated, never replaced (DESIGN.md contract 2): ``Bridge.ports`` and
``Bridge.mirrors`` gain or lose exactly our rows, so other operators' mirrors survive.
ovsdbapp swallows failures unless ``check_error=True`` and raises plain RuntimeErrors; they
are translated into SwitchError here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vmsniff.errors import NotFound, SwitchError, Unreachable
from vmsniff.model import Direction
from vmsniff.ovs.backend import OvsBackend
from vmsniff.ovs.plan import MirrorPlan, Tunnel

__all__ = [
    "TunnelState",
    "apply_plan",
    "local_tunnel_ips",
    "remove_rows",
    "switch_facts",
    "wait_egress",
    "wait_tunnels",
]


@dataclass(frozen=True, slots=True)
class TunnelState:
    """How a tunnel interface came up."""

    name: str
    ofport: int | None
    error: str | None
    egress_iface: str | None
    egress_mtu: int | None


def switch_facts(api: OvsBackend, bridge: str) -> tuple[list[Tunnel], int, list[str]]:
    """Existing tunnels (all bridges), the bridge's mirror count and its mirrors' owners."""
    bridges = {b.name: b for b in list(api.tables["Bridge"].rows.values())}
    if bridge not in bridges:
        raise NotFound(
            f"bridge {bridge} does not exist on this switch",
            hint=f"bridges: {', '.join(sorted(bridges)) or 'none'}; pass --bridge",
        )
    tunnels = []
    for row in list(api.tables["Interface"].rows.values()):
        if row.type in ("gre", "erspan", "ip6gre", "ip6erspan", "vxlan", "geneve", "stt"):
            opts = dict(row.options)
            tunnels.append(
                Tunnel(row.name, row.type, opts.get("remote_ip"), opts.get("local_ip"),
                       opts.get("key") or opts.get("out_key"))
            )  # fmt: skip
    mirrors = list(bridges[bridge].mirrors)
    owners = [
        "vmsniff " + str(dict(m.external_ids).get("vmsniff-session", ""))[:8]
        if dict(m.external_ids).get("vmsniff-session")
        else f"foreign {m.name}"
        for m in mirrors
    ]
    return tunnels, len(mirrors), owners


def local_tunnel_ips(api: OvsBackend) -> dict[str, str]:
    """This switch's own tunnel endpoint addresses, as OVSDB records them, and where.

    Neutron's tunnel ports carry ``options:local_ip``; OVN's chassis records
    ``Open_vSwitch external_ids:ovn-encap-ip`` (comma-separated when several).
    """
    own: dict[str, str] = {}
    for row in list(api.tables["Interface"].rows.values()):
        local = dict(row.options).get("local_ip")
        if local and local != "flow":
            own.setdefault(
                local, f"this hypervisor's own tunnel endpoint (local_ip of tunnel port {row.name})"
            )
    for row in list(api.tables["Open_vSwitch"].rows.values()):
        for ip in dict(row.external_ids).get("ovn-encap-ip", "").split(","):
            if ip.strip():
                own.setdefault(
                    ip.strip(),
                    "this hypervisor's own tunnel endpoint (ovn-encap-ip of this chassis)",
                )
    return own


def _translate(exc: Exception, what: str, hint: str) -> SwitchError | Unreachable:
    if type(exc).__name__ == "TimeoutException":  # ovsdbapp: the database did not answer
        return Unreachable(f"OVSDB did not answer in time to {what}", hint=hint)
    return SwitchError(f"Open vSwitch refused to {what}: {exc}", hint=hint)


def apply_plan(api: OvsBackend, plan: MirrorPlan) -> None:
    """Create the plan's tunnel ports and mirrors in one transaction."""
    selected: dict[str, Any] = {}
    for m in plan.mirrors:
        for name in m.ports:
            row = api.lookup("Port", name, default=None)
            if row is None:
                raise NotFound(f"OVS port {name} does not exist on bridge {plan.bridge}")
            selected[name] = row.uuid
    try:
        with api.transaction(check_error=True) as txn:
            ports = {}
            for t in plan.tunnels:
                iface = txn.add(
                    api.db_create(
                        "Interface", name=t.name, type=t.type, options=t.options,
                        external_ids=t.external_ids,
                    )
                )  # fmt: skip
                port = txn.add(
                    api.db_create(
                        "Port", name=t.name, interfaces=[iface], external_ids=t.external_ids
                    )
                )
                txn.add(api.db_add("Bridge", plan.bridge, "ports", port))
                ports[t.name] = port
            for m in plan.mirrors:
                uuids = [selected[name] for name in m.ports]
                select = (
                    {"select_src_port": uuids}
                    if m.direction is Direction.FROM_VM
                    else {"select_dst_port": uuids}
                )
                columns: dict[str, Any] = {
                    "name": m.name,
                    "output_port": ports[m.output_port],
                    "external_ids": m.external_ids,
                    **select,
                }
                if m.snaplen:
                    columns["snaplen"] = m.snaplen
                mirror = txn.add(api.db_create("Mirror", **columns))
                txn.add(api.db_add("Bridge", plan.bridge, "mirrors", mirror))
    except Exception as exc:  # ovsdbapp: RuntimeError and friends
        raise _translate(
            exc, "create the mirror",
            "check `ovs-vsctl show` and ovs-vswitchd's log; nothing was left behind",
        ) from None  # fmt: skip


def wait_tunnels(api: OvsBackend, names: Iterable[str], timeout: float = 5.0) -> list[TunnelState]:
    """Wait until each tunnel interface has an OpenFlow port (or an error); report both."""
    deadline = time.monotonic() + timeout
    names = list(names)
    while True:
        states = [_state(api, name) for name in names]
        done = all(s.error or (s.ofport or 0) > 0 for s in states)
        if done or time.monotonic() > deadline:
            return states
        time.sleep(0.05)


#: After its OpenFlow port, how long a tunnel may take to show its egress interface.
EGRESS_WAIT_S = 1.0


def wait_egress(
    api: OvsBackend, states: list[TunnelState], timeout: float = EGRESS_WAIT_S
) -> list[TunnelState]:
    """Re-read tunnels without ``status:tunnel_egress_iface`` until they show one, or timeout.

    ovs-vswitchd fills the status when it configures the port (measured in the lab: at once,
    or never when it has no route to ``remote_ip``); the wait covers a slower switch.
    """
    deadline = time.monotonic() + timeout
    while any(not s.egress_iface for s in states) and time.monotonic() < deadline:
        time.sleep(0.05)
        states = [_state(api, s.name) for s in states]
    return states


def _one(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else (None if value == [] else value)


def _state(api: OvsBackend, name: str) -> TunnelState:
    row = api.lookup("Interface", name, default=None)
    if row is None:
        return TunnelState(name, None, "interface vanished", None, None)
    status = dict(row.status)
    egress = status.get("tunnel_egress_iface")
    mtu = None
    if egress:
        egress_row = api.lookup("Interface", egress, default=None)
        mtu = _one(egress_row.mtu) if egress_row is not None else None
    ofport = _one(row.ofport)
    ofport = ofport if ofport and ofport > 0 else None
    return TunnelState(name, ofport, _one(row.error), egress, mtu)


def remove_rows(
    api: OvsBackend,
    bridge_of: dict[str, str],
    mirrors: list[Any],
    ports: list[str],
    timeout: float | None = None,
) -> None:
    """Remove mirrors (by uuid, from their bridge) and ports (by name) in one transaction.

    A database that does not answer within ``timeout`` (default: the connection's) raises
    Unreachable; a refusal raises SwitchError. Either way the rows remain, and we say so.
    """
    try:
        with api.transaction(check_error=True) as txn:
            if timeout is not None:
                txn.timeout = timeout
            for mirror in mirrors:
                txn.add(api.db_remove("Bridge", bridge_of[str(mirror)], "mirrors", mirror))
            for port in ports:
                txn.add(api.del_port(port, bridge_of.get(port), if_exists=True))
    except Exception as exc:
        raise _translate(
            exc, "remove vmsniff's rows",
            "the rows remain: see `vmsniff list`, and run `vmsniff cleanup` once the switch "
            "answers",
        ) from None  # fmt: skip
