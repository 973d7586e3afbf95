"""A small hypervisor in a FakeOvs: the rows Neutron and another operator left there."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from vmsniff.model import Direction, Nic, PlugKind, Server
from vmsniff.ovs.fake import FakeOvs
from vmsniff.ovs.plan import MirrorOptions, MirrorPlan, plan_mirror

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SERVER = Server(id="11111111-2222-3333-4444-555555555555", name="c-private")
VM_PORT = "qvo12345678-9a"
NIC = Nic(mac="fa:16:3e:00:00:01", ovs_port=VM_PORT, bridge="br-int", tag=3,
          plug=PlugKind.HYBRID, mtu=1500)  # fmt: skip
SID = "abcdef12-0000-4000-8000-000000000000"
#: what other operators and Neutron own: vmsniff must never remove or rewrite these
FOREIGN_PORTS = {VM_PORT, "qvo-other", "spanport", "gre-0a000002", "patch-tun"}
FOREIGN_MIRRORS = {"ops-span"}


def hypervisor() -> FakeOvs:
    """br-int with the VM's port, another VM's port and another operator's SPAN mirror;
    br-tun with a Neutron GRE tunnel; this chassis' OVN encap IP."""
    ovs = FakeOvs()
    ovs.add_bridge("br-int")
    ovs.add_bridge("br-tun")
    ovs.add_port("br-int", VM_PORT, external_ids={"iface-id": "port-1", "attached-mac": NIC.mac})
    ovs.add_port("br-int", "qvo-other", external_ids={"iface-id": "port-2"})
    ovs.add_port("br-int", "spanport", type="internal")
    ovs.add_port("br-int", "patch-tun", type="patch", options={"peer": "patch-int"})
    tunnel = {"remote_ip": "10.0.0.2", "local_ip": "10.0.0.1", "key": "flow"}
    ovs.add_port("br-tun", "gre-0a000002", type="gre", options=tunnel)
    ovs.add_mirror("br-int", "ops-span", src=("qvo-other",), dst=("qvo-other",), output="spanport")
    ovs.run(ovs.db_set("Open_vSwitch", ".", ("external_ids", {"ovn-encap-ip": "10.0.0.1"})))
    return ovs


def plan(
    direction: Direction = Direction.BOTH,
    *,
    session: str = SID,
    now: datetime = NOW,
    ttl: timedelta = timedelta(hours=1),
    **opts: Any,
) -> MirrorPlan:
    options = MirrorOptions(to="192.0.2.10", direction=direction, ttl=ttl, **opts)
    return plan_mirror(SERVER, NIC, options, now=now, session=session, rng=random.Random(1))


def vswitchd(ovs: FakeOvs, egress: str | None = "eth1") -> None:
    """Play ovs-vswitchd after each commit: number new interfaces' OpenFlow ports and give
    tunnels the egress interface their route leaves by (None: no route)."""

    def react(db: FakeOvs) -> None:
        used = [p for r in db.tables["Interface"].rows.values() for p in r.ofport]
        fresh = [r for r in db.tables["Interface"].rows.values() if not r.ofport]
        commands = []
        for n, row in enumerate(fresh, start=max(used, default=0) + 1):
            commands.append(db.db_set("Interface", row.uuid, ("ofport", n)))
            if row.type in ("gre", "erspan") and egress:
                commands.append(
                    db.db_set("Interface", row.uuid, ("status", {"tunnel_egress_iface": egress}))
                )
        if commands:
            db.run(*commands)

    ovs.on_commit.append(react)
    react(ovs)


def names(ovs: FakeOvs, table: str) -> set[str]:
    return ovs.names(table)


def bridge_members(ovs: FakeOvs, bridge: str, column: str) -> set[str]:
    return {r.name for r in getattr(ovs.lookup("Bridge", bridge), column)}
