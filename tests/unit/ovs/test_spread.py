"""plan_spread: a multi-VM session's rows per host, its keys, its manifest (pure)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from tests.unit.ovs.helpers import NOW
from vmsniff.errors import SwitchError, UsageError
from vmsniff.manifest import parse_manifest
from vmsniff.model import Direction, Nic, PlugKind, Server
from vmsniff.ovs.plan import MAX_MIRRORS, MirrorOptions, Tunnel
from vmsniff.ovs.spread import HostFacts, Member, plan_spread

SID = "feedbeef-0000-4000-8000-000000000000"


def member(vm: str, i: int, host: str, *, bridge: str = "br-int", tag: int | None = 1) -> Member:
    server = Server(id=f"{vm}-id", name=vm, host=host)
    nic = Nic(mac=f"fa:16:3e:00:00:{i:02x}", port_id=f"port-{vm}-{i}", ovs_port=f"qvo-{vm}-{i}",
              bridge=bridge, tag=tag, plug=PlugKind.HYBRID)  # fmt: skip
    return Member(server, nic, f"{vm}/eth{i}", host)


THREE = [member("a", 0, "compute-1"), member("b", 0, "compute-2"), member("c", 0, "compute-3"),
         member("c", 1, "compute-3")]  # fmt: skip


def plan(members: list[Member] = THREE, facts: dict[str, HostFacts] | None = None, **kw: object):  # type: ignore[no-untyped-def]
    shared = kw.pop("shared", None)
    opts = MirrorOptions(to="192.0.2.10", ttl=timedelta(minutes=10), **kw)  # type: ignore[arg-type]
    return plan_spread(members, opts, facts or {}, now=NOW, session=SID, shared=shared,  # type: ignore[arg-type]
                       rng=random.Random(7))  # fmt: skip


def test_one_session_one_transaction_per_host_and_consecutive_keys() -> None:
    p = plan()
    assert list(p.plans) == ["compute-1", "compute-2", "compute-3"]
    keys = [t.key for host_plan in p.plans.values() for t in host_plan.tunnels]
    base = keys[0]
    assert keys == list(range(base, base + 8)) and base >= 1 << 24
    for host_plan in p.plans.values():
        assert host_plan.session == SID
        for t in host_plan.tunnels:
            assert t.external_ids["vmsniff-session"] == SID
            assert t.options == {"remote_ip": "192.0.2.10", "key": str(t.key)}
            assert len(t.name) <= 15
    c3 = p.plans["compute-3"]
    assert [m.ports for m in c3.mirrors] == [("qvo-c-0",), ("qvo-c-0",), ("qvo-c-1",), ("qvo-c-1",)]
    assert [m.direction for m in c3.mirrors] == [Direction.FROM_VM, Direction.TO_VM] * 2
    assert p.shared == {"compute-1": False, "compute-2": False, "compute-3": False}


def test_the_manifest_names_each_stream_and_survives_json() -> None:
    p = plan()
    m = parse_manifest(p.manifest.to_json())
    assert m == p.manifest
    assert [(s.key - m.streams[0].key, s.direction.value, s.nics) for s in m.streams] == [
        (0, "from-vm", ("a/eth0",)), (1, "to-vm", ("a/eth0",)),
        (2, "from-vm", ("b/eth0",)), (3, "to-vm", ("b/eth0",)),
        (4, "from-vm", ("c/eth0",)), (5, "to-vm", ("c/eth0",)),
        (6, "from-vm", ("c/eth1",)), (7, "to-vm", ("c/eth1",)),
    ]  # fmt: skip
    assert m.nic("c/eth1").mac == "fa:16:3e:00:00:01" and m.nic("c/eth1").tag == 1
    assert m.hosts == ("compute-1", "compute-2", "compute-3")


def test_shared_mirrors_select_every_nic_of_the_host() -> None:
    p = plan(shared=True)
    c3 = p.plans["compute-3"]
    assert len(c3.mirrors) == 2 and len(c3.tunnels) == 2
    assert c3.mirrors[0].ports == ("qvo-c-0", "qvo-c-1")
    assert "-- --id=@vm1 get Port qvo-c-1" in c3.vsctl_command()
    assert "select_src_port=@vm,@vm1" in c3.vsctl_command()
    streams = [s for s in p.manifest.streams if s.host == "compute-3"]
    assert [s.nics for s in streams] == [("c/eth0", "c/eth1")] * 2
    # a host with one NIC has nothing to share
    assert p.shared == {"compute-1": False, "compute-2": False, "compute-3": True}


def test_fifty_nics_on_one_host_share_two_mirrors_when_they_do_not_fit() -> None:
    many = [member(f"vm{i}", 0, "compute-1") for i in range(50)]
    p = plan(many, {"compute-1": HostFacts(mirrors_on_bridge=3)})
    only = p.plans["compute-1"]
    assert p.shared["compute-1"] and len(only.mirrors) == 2
    assert len(only.mirrors[0].ports) == 50
    few = plan(many[:14], {"compute-1": HostFacts(mirrors_on_bridge=3)})
    assert not few.shared["compute-1"] and len(few.plans["compute-1"].mirrors) == 28


def test_a_full_host_is_named_before_anything_is_touched() -> None:
    facts = {"compute-2": HostFacts(mirrors_on_bridge=MAX_MIRRORS - 1, owners=("foreign x",) * 31)}
    with pytest.raises(SwitchError, match="session on host compute-2 needs 2 more"):
        plan(facts=facts)
    with pytest.raises(SwitchError, match="compute-2"):
        plan(facts=facts, shared=False)


def test_keys_avoid_every_hosts_tunnels_toward_the_receiver() -> None:
    used = tuple(Tunnel(f"t{k}", "gre", "192.0.2.10", None, str(k)) for k in range(5000, 5004))
    with pytest.raises(SwitchError, match="already used"):
        plan(facts={"compute-3": HostFacts(tunnels=used)}, key=4998)
    p = plan(facts={"compute-3": HostFacts(tunnels=used)}, key=5004)
    assert min(t.key for hp in p.plans.values() for t in hp.tunnels) == 5004


def test_a_receiver_a_host_refuses_is_named() -> None:
    facts = {"compute-2": HostFacts(refused={"192.0.2.10": "this hypervisor's own address"})}
    with pytest.raises(UsageError, match="host compute-2: it is this hypervisor's own"):
        plan(facts=facts)


def test_nics_on_two_bridges_of_one_host_are_refused() -> None:
    odd = [member("a", 0, "compute-1"), member("b", 0, "compute-1", bridge="br-ex")]
    with pytest.raises(UsageError, match="bridges br-ex, br-int"):
        plan(odd)


def test_one_direction_uses_the_contracts_key_of_that_direction() -> None:
    p = plan(direction=Direction.TO_VM)
    keys = [t.key for hp in p.plans.values() for t in hp.tunnels]
    base = p.manifest.streams[0].key - 1
    assert keys == [base + 1, base + 3, base + 5, base + 7]
    assert {s.direction for s in p.manifest.streams} == {Direction.TO_VM}


def test_erspan_streams_are_session_ids() -> None:
    p = plan(encap="erspan")
    ids = [t.key for hp in p.plans.values() for t in hp.tunnels]
    assert all(1 <= k <= 1023 for k in ids)
    assert p.manifest.encap == "erspan"
