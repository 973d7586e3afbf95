"""apply_plan and remove_rows on a fake switch: one transaction each, only our rows."""

from __future__ import annotations

import pytest

from tests.unit.ovs.helpers import (
    FOREIGN_MIRRORS,
    FOREIGN_PORTS,
    VM_PORT,
    bridge_members,
    hypervisor,
    plan,
    vswitchd,
)
from vmsniff.errors import NotFound, SwitchError, Unreachable
from vmsniff.model import Direction
from vmsniff.ovs.apply import (
    apply_plan,
    local_tunnel_ips,
    remove_rows,
    switch_facts,
    wait_egress,
    wait_tunnels,
)
from vmsniff.ovs.fake import FakeOvs, TimeoutException
from vmsniff.ovs.ownership import SESSION_KEY


def rows(ovs: FakeOvs) -> dict[str, set[str]]:
    return {t: ovs.names(t) for t in ("Port", "Interface", "Mirror")}


def test_apply_creates_the_plans_rows_in_one_transaction() -> None:
    ovs, p = hypervisor(), plan(snaplen=128)
    commits = ovs.commits
    apply_plan(ovs, p)
    assert ovs.commits == commits + 1
    ours = {t.name for t in p.tunnels}
    assert ovs.names("Port") == FOREIGN_PORTS | ours
    assert ovs.names("Mirror") == FOREIGN_MIRRORS | {m.name for m in p.mirrors}
    for t in p.tunnels:
        iface = ovs.lookup("Interface", t.name)
        assert iface.type == "gre" and iface.options == t.options
        assert iface.external_ids == t.external_ids == ovs.lookup("Port", t.name).external_ids
    vm = ovs.lookup("Port", VM_PORT)
    for m in p.mirrors:
        row = ovs.lookup("Mirror", m.name)
        assert row.external_ids[SESSION_KEY] == p.session and row.snaplen == [128]
        assert [r.name for r in row.output_port] == [m.output_port]
        src, dst = (
            ([vm], []) if m.direction is Direction.FROM_VM else ([], [vm])
        )  # contract 3: from-vm selects the VM port as source, to-vm as destination
        assert (row.select_src_port, row.select_dst_port) == (src, dst)
    assert bridge_members(ovs, "br-int", "mirrors") == {"ops-span", *(m.name for m in p.mirrors)}
    assert bridge_members(ovs, "br-int", "ports") >= ours


def test_apply_mutates_the_bridges_set_columns_and_never_replaces_them() -> None:
    ovs, p = hypervisor(), plan()
    ovs.writes.clear()
    apply_plan(ovs, p)
    bridge_writes = [w for w in ovs.writes if w[1] == "Bridge"]
    assert {(op, col) for op, _t, _n, col in bridge_writes} == {
        ("mutate", "ports"), ("mutate", "mirrors"),
    }  # fmt: skip


def test_one_direction_makes_one_port_and_one_mirror() -> None:
    ovs, p = hypervisor(), plan(Direction.TO_VM)
    apply_plan(ovs, p)
    assert ovs.names("Mirror") == FOREIGN_MIRRORS | {p.mirrors[0].name}
    row = ovs.lookup("Mirror", p.mirrors[0].name)
    assert row.select_src_port == [] and [r.name for r in row.select_dst_port] == [VM_PORT]
    assert row.snaplen == []


def test_a_missing_vm_port_is_not_found_and_nothing_is_written() -> None:
    ovs = hypervisor()
    ovs.run(ovs.del_port(VM_PORT))
    before, commits = rows(ovs), ovs.commits
    with pytest.raises(NotFound, match=VM_PORT):
        apply_plan(ovs, plan())
    assert rows(ovs) == before and ovs.commits == commits


def test_a_refused_transaction_leaves_nothing_behind() -> None:
    ovs = hypervisor()
    before = rows(ovs)
    ovs.fail_next(RuntimeError("ovsdb-server said no"))
    with pytest.raises(SwitchError, match="ovsdb-server said no") as info:
        apply_plan(ovs, plan())
    assert "nothing was left behind" in (info.value.hint or "")
    assert rows(ovs) == before


def test_a_name_taken_meanwhile_fails_the_whole_transaction() -> None:
    ovs, p = hypervisor(), plan()
    ovs.add_port("br-int", p.tunnels[1].name)  # someone took the to-vm port's name
    before = rows(ovs)
    with pytest.raises(SwitchError):
        apply_plan(ovs, p)
    assert rows(ovs) == before  # the from-vm port and both mirrors were not made either


def test_a_silent_database_is_unreachable() -> None:
    ovs = hypervisor()
    ovs.fail_next(TimeoutException("Commands exceeded timeout"))
    with pytest.raises(Unreachable):
        apply_plan(ovs, plan())


def test_remove_rows_removes_ours_and_leaves_every_other_row() -> None:
    ovs, p = hypervisor(), plan()
    apply_plan(ovs, p)
    ovs.writes.clear()
    mirrors = [ovs.lookup("Mirror", m.name).uuid for m in p.mirrors]
    bridge_of = {**{str(u): "br-int" for u in mirrors}, **{t.name: "br-int" for t in p.tunnels}}
    remove_rows(ovs, bridge_of, mirrors, [t.name for t in p.tunnels])
    assert ovs.names("Port") == FOREIGN_PORTS and ovs.names("Mirror") == FOREIGN_MIRRORS
    assert ovs.names("Interface") == FOREIGN_PORTS
    assert bridge_members(ovs, "br-int", "mirrors") == FOREIGN_MIRRORS
    assert not [w for w in ovs.writes if w[0] == "update"]  # set columns were mutated
    remove_rows(ovs, bridge_of, mirrors, [t.name for t in p.tunnels])  # again: no error
    assert ovs.names("Port") == FOREIGN_PORTS


def test_remove_rows_that_fail_say_the_rows_remain() -> None:
    ovs, p = hypervisor(), plan()
    apply_plan(ovs, p)
    before = rows(ovs)
    ovs.fail_next()
    with pytest.raises(SwitchError) as info:
        remove_rows(ovs, {t.name: "br-int" for t in p.tunnels}, [], [t.name for t in p.tunnels])
    assert "the rows remain" in (info.value.hint or "")
    assert rows(ovs) == before
    ovs.connected = False
    with pytest.raises(Unreachable):
        remove_rows(ovs, {}, [], [p.tunnels[0].name], timeout=0.1)
    assert rows(ovs) == before


def test_switch_facts_see_every_tunnel_and_the_bridges_mirrors() -> None:
    ovs, p = hypervisor(), plan()
    apply_plan(ovs, p)
    tunnels, count, owners = switch_facts(ovs, "br-int")
    by_name = {t.name: t for t in tunnels}
    assert set(by_name) == {"gre-0a000002", *(t.name for t in p.tunnels)}
    assert by_name["gre-0a000002"].key == "flow" and by_name["gre-0a000002"].local_ip == "10.0.0.1"
    assert count == 3
    assert sorted(owners) == ["foreign ops-span", "vmsniff abcdef12", "vmsniff abcdef12"]
    with pytest.raises(NotFound) as info:
        switch_facts(ovs, "br-ex")
    assert "br-int, br-tun" in (info.value.hint or "")


def test_local_tunnel_ips_come_from_tunnel_ports_and_the_ovn_chassis() -> None:
    ovs = hypervisor()
    ovs.run(ovs.db_set("Open_vSwitch", ".", ("external_ids", {"ovn-encap-ip": "10.0.0.1,fd00::1"})))
    own = local_tunnel_ips(ovs)
    assert set(own) == {"10.0.0.1", "fd00::1"}
    assert "gre-0a000002" in own["10.0.0.1"] and "ovn-encap-ip" in own["fd00::1"]


def test_wait_tunnels_reports_ports_that_came_up_and_those_that_did_not() -> None:
    ovs, p = hypervisor(), plan()
    apply_plan(ovs, p)
    ovs.run(ovs.db_set("Interface", p.tunnels[1].name, ("error", "could not add network device")))
    states = wait_tunnels(ovs, [t.name for t in p.tunnels], timeout=0.2)
    assert [(s.ofport, s.error) for s in states] == [
        (None, None), (None, "could not add network device"),
    ]  # fmt: skip
    assert wait_tunnels(ovs, ["vms-gone"], timeout=0)[0].error == "interface vanished"


def test_wait_egress_reads_the_route_and_its_mtu() -> None:
    ovs, p = hypervisor(), plan()
    ovs.add_port("br-tun", "eth1", type="system", mtu=1450)
    vswitchd(ovs)
    apply_plan(ovs, p)
    states = wait_egress(ovs, wait_tunnels(ovs, [t.name for t in p.tunnels], timeout=1))
    assert all(s.ofport and s.egress_iface == "eth1" and s.egress_mtu == 1450 for s in states)
