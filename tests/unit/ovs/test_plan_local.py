"""plan_local_mirror: the rows of ``capture --at ovs`` (internal ports + Mirrors, owned)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vmsniff.errors import InvalidState, SwitchError
from vmsniff.model import Direction, Nic, PlugKind, Server
from vmsniff.ovs.plan import MAX_MIRRORS, plan_local_mirror

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SERVER = Server(id="11111111-2222-3333-4444-555555555555", name="c-private")
NIC = Nic(mac="fa:16:3e:00:00:01", ovs_port="qvo12345678-9a", bridge="br-int", tag=3,
          plug=PlugKind.HYBRID)  # fmt: skip
SID = "abcdef12-0000-4000-8000-000000000000"


def test_one_internal_port_and_mirror_per_direction_with_ownership() -> None:
    p = plan_local_mirror(SERVER, NIC, now=NOW, session=SID, ttl=timedelta(minutes=5),
                          reason="ticket 7")  # fmt: skip
    assert [(t.name, t.type, t.options, t.direction) for t in p.tunnels] == [
        ("vmsabcdef12-f", "internal", {}, Direction.FROM_VM),
        ("vmsabcdef12-t", "internal", {}, Direction.TO_VM),
    ]
    assert [(m.direction, m.output_port, m.vm_port) for m in p.mirrors] == [
        (Direction.FROM_VM, "vmsabcdef12-f", "qvo12345678-9a"),
        (Direction.TO_VM, "vmsabcdef12-t", "qvo12345678-9a"),
    ]
    for row in [*p.tunnels, *p.mirrors]:
        ids = row.external_ids
        assert ids["vmsniff-session"] == SID and ids["vmsniff-nic"] == NIC.mac
        assert ids["vmsniff-expires"] == "2026-12-01T12:05:00Z"
        assert ids["vmsniff-reason"] == "ticket 7"
        assert row.name.startswith("vms") and len(p.tunnels[0].name) <= 15
    assert p.encap == "internal" and p.keys == {}
    assert "type=internal" in p.vsctl_command() and "select_dst_port=@vm" in p.vsctl_command()


def test_one_direction_needs_one_port_and_the_mirror_limit_is_kept() -> None:
    p = plan_local_mirror(SERVER, NIC, now=NOW, direction=Direction.TO_VM)
    assert [t.direction for t in p.tunnels] == [Direction.TO_VM]
    with pytest.raises(SwitchError):
        plan_local_mirror(SERVER, NIC, now=NOW, mirrors_on_bridge=MAX_MIRRORS - 1)


def test_a_nic_off_the_switch_is_refused() -> None:
    with pytest.raises(InvalidState):
        plan_local_mirror(SERVER, Nic(mac="fa:16:3e:00:00:09", plug=PlugKind.SRIOV), now=NOW)


def test_the_plan_says_the_tag_roles_and_what_to_do_at_the_mirror_limit() -> None:
    p = plan_local_mirror(SERVER, NIC, now=NOW, session=SID)
    assert p.tag == 3  # mirrored frames carry the VM port's VLAN tag
    assert [t.external_ids["vmsniff-role"] for t in p.tunnels] == [
        "capture-from-vm", "capture-to-vm",
    ]  # fmt: skip
    assert [m.external_ids["vmsniff-role"] for m in p.mirrors] == ["mirror-from-vm", "mirror-to-vm"]
    with pytest.raises(SwitchError, match="this capture needs 2 more") as info:
        plan_local_mirror(SERVER, NIC, now=NOW, mirrors_on_bridge=MAX_MIRRORS - 1,
                          owners=["vmsniff 1234", "foreign x"])  # fmt: skip
    assert "(1 by vmsniff sessions, 30 by others)" in str(info.value)
    assert "--at tap" in (info.value.hint or "")
