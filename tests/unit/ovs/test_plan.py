from __future__ import annotations

import random
import shlex
from datetime import UTC, datetime, timedelta

import pytest

from vmsniff.errors import InvalidState, SwitchError, UsageError
from vmsniff.mirror import mtu_warning
from vmsniff.model import Direction, Nic, PlugKind, Server
from vmsniff.ovs.plan import GRE_KEY_MIN, MirrorOptions, Tunnel, plan_mirror

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SERVER = Server(id="11111111-2222-3333-4444-555555555555", name="c-private")
NIC = Nic(mac="fa:16:3e:00:00:01", ovs_port="qvo12345678-9a", bridge="br-int", tag=3,
          plug=PlugKind.HYBRID, mtu=1500)  # fmt: skip


def plan(**kw: object):  # type: ignore[no-untyped-def]
    opts = MirrorOptions(**{"to": "192.0.2.10", **kw})  # type: ignore[arg-type]
    return plan_mirror(SERVER, NIC, opts, now=NOW, session="abcdef12-0000-4000-8000-000000000000",
                       rng=random.Random(1))  # fmt: skip


def test_both_directions_use_k_and_k_plus_one_and_the_right_select_column() -> None:
    p = plan()
    assert p.keys["to-vm"] == p.keys["from-vm"] + 1
    assert p.keys["from-vm"] >= GRE_KEY_MIN
    by_dir = {m.direction: m for m in p.mirrors}
    assert set(by_dir) == {Direction.FROM_VM, Direction.TO_VM}
    assert {t.direction: t.options["key"] for t in p.tunnels} == {
        Direction.FROM_VM: str(p.keys["from-vm"]), Direction.TO_VM: str(p.keys["to-vm"]),
    }  # fmt: skip
    cmd = p.vsctl_command()
    assert "select_src_port=@vm" in cmd and "select_dst_port=@vm" in cmd
    assert shlex.split(cmd)[0] == "ovs-vsctl"


def test_single_direction_keeps_the_key_convention() -> None:
    p = plan(direction=Direction.TO_VM, key=1000)
    assert p.keys == {"to-vm": 1001}
    assert [m.direction for m in p.mirrors] == [Direction.TO_VM]


def test_names_and_ownership_marks() -> None:
    p = plan(reason="ticket 42", ttl=timedelta(minutes=30))
    for t in p.tunnels:
        assert t.name.startswith("vms") and len(t.name) <= 15
        ids = t.external_ids
        assert ids["vmsniff-session"] == p.session
        assert ids["vmsniff-vm"] == f"c-private ({SERVER.id})"
        assert "@" in ids["vmsniff-owner"]
        assert ids["vmsniff-created"] == "2026-12-01T12:00:00Z"
        assert ids["vmsniff-expires"] == "2026-12-01T12:30:00Z"
        assert ids["vmsniff-reason"] == "ticket 42"
    for m in p.mirrors:
        assert m.external_ids["vmsniff-session"] == p.session


def test_key_collisions_with_existing_tunnels() -> None:
    taken = [Tunnel("gre-0a000002", "gre", "192.0.2.10", None, "5000")]
    with pytest.raises(SwitchError, match="gre-0a000002"):
        plan_mirror(SERVER, NIC, MirrorOptions(to="192.0.2.10", key=4999), tunnels=taken, now=NOW)
    # Another remote IP or tunnel type is a different tunnel: no clash.
    plan_mirror(SERVER, NIC, MirrorOptions(to="192.0.2.11", key=4999), tunnels=taken, now=NOW)
    # Random keys avoid every explicit key.
    many = [
        Tunnel(f"t{k}", "gre", "192.0.2.10", None, str(k))
        for k in range(GRE_KEY_MIN, GRE_KEY_MIN + 50)
    ]
    rng = random.Random(0)
    for _ in range(20):
        p = plan_mirror(SERVER, NIC, MirrorOptions(to="192.0.2.10"), tunnels=many, now=NOW, rng=rng)
        assert not set(p.keys.values()) & set(range(GRE_KEY_MIN, GRE_KEY_MIN + 50))


def test_mirror_limit_is_checked_before_anything_with_owners() -> None:
    owners = ["vmsniff abcd1234"] * 4 + [f"foreign m{i}" for i in range(27)]
    with pytest.raises(SwitchError, match="31 of Open vSwitch's 32 mirrors in use") as info:
        plan_mirror(SERVER, NIC, MirrorOptions(to="192.0.2.10"), mirrors_on_bridge=31,
                    owners=owners, now=NOW)  # fmt: skip
    assert "4 by vmsniff sessions, 27 by others" in info.value.message
    plan_mirror(SERVER, NIC, MirrorOptions(to="192.0.2.10", direction=Direction.FROM_VM),
                mirrors_on_bridge=31, now=NOW)  # fmt: skip


@pytest.mark.parametrize(
    ("kw", "nic", "error", "needle"),
    [
        ({"to": "not-an-ip"}, NIC, UsageError, "not an IP address"),
        ({"to": "0.0.0.0"}, NIC, UsageError, "cannot receive"),
        ({"to": "192.0.2.1", "encap": "vxlan"}, NIC, UsageError, "gre or erspan"),
        ({"to": "192.0.2.1"}, Nic(mac="m", plug=PlugKind.SRIOV), InvalidState, "be mirrored"),
        ({"to": "192.0.2.1", "key": 2**32}, NIC, UsageError, "out of range"),
        ({"to": "192.0.2.1", "encap": "erspan", "key": 1023}, NIC, UsageError, "out of range"),
    ],
)  # fmt: skip
def test_bad_requests(kw: dict, nic: Nic, error: type, needle: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(error, match=needle):
        plan_mirror(SERVER, nic, MirrorOptions(**kw), now=NOW)


def test_erspan_options() -> None:
    p = plan(encap="erspan", erspan_version=2, key=10)
    opts = {t.direction: t.options for t in p.tunnels}
    assert opts[Direction.FROM_VM] == {"remote_ip": "192.0.2.10", "key": "10", "erspan_ver": "2",
                                       "erspan_dir": "0", "erspan_hwid": "1"}  # fmt: skip
    assert opts[Direction.TO_VM]["erspan_dir"] == "1"


def test_mtu_warning_counts_the_vlan_tag_and_encapsulation() -> None:
    # 1500 IP + 14 Ethernet + 4 VLAN + 20 IP + 8 GRE = 1546 > 1500.
    text = mtu_warning(NIC, "gre", "br-phy", 1500, None)
    assert text is not None and "1546" in text and "--snaplen 1472" in text
    assert mtu_warning(NIC, "gre", "br-phy", 9000, None) is None
    assert mtu_warning(NIC, "gre", "br-phy", 1500, 1472) is None
    assert mtu_warning(NIC, "gre", None, None, None) is None


def test_erspan_v1_index_is_written_in_hexadecimal_as_ovs_reads_it() -> None:
    # lib/netdev-vport.c: erspan_idx = strtol(value, NULL, 16), at most 0xfffff
    p = plan(encap="erspan", key=10, erspan_index=300)
    assert {t.options["erspan_idx"] for t in p.tunnels} == {"0x12c"}
    assert plan(encap="erspan", key=10).tunnels[0].options["erspan_idx"] == "0x1"
    assert (
        plan(encap="erspan", key=10, erspan_index=0xFFFFF).tunnels[0].options["erspan_idx"]
        == "0xfffff"
    )


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"erspan_version": 2}, "--erspan-version only applies to ERSPAN"),
        ({"erspan_index": 1}, "--erspan-index only applies to ERSPAN"),
        ({"erspan_version": 1, "erspan_index": 1}, "and --erspan-index only apply"),
        ({"encap": "erspan", "erspan_version": 2, "erspan_index": 3}, "version 1"),
        ({"encap": "erspan", "erspan_index": 0x100000}, "out of range"),
        ({"encap": "erspan", "erspan_version": 3}, "choose 1 or 2"),
        ({"snaplen": 13}, "at least 14"),
        ({"to": "255.255.255.255"}, "broadcast"),
    ],
)
def test_options_are_checked_when_made(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        MirrorOptions(**{"to": "192.0.2.10", **kw})  # type: ignore[arg-type]


def test_bridge_must_be_the_one_the_port_is_on() -> None:
    with pytest.raises(UsageError, match="is on bridge br-int, not br-phy"):
        plan(bridge="br-phy")
    assert plan(bridge="br-int").bridge == "br-int"


def test_the_hypervisors_own_tunnel_address_is_refused() -> None:
    own = {"192.0.2.10": "this hypervisor's own tunnel endpoint (local_ip of port gre-c0000202)"}
    with pytest.raises(UsageError, match="own tunnel endpoint .*gre-c0000202"):
        plan_mirror(SERVER, NIC, MirrorOptions(to="192.0.2.10"), refused_receivers=own, now=NOW)
    plan_mirror(SERVER, NIC, MirrorOptions(to="192.0.2.11"), refused_receivers=own, now=NOW)


@pytest.mark.parametrize(
    "reason", ['a\\b "c" d', "it's $HOME `x`", "k=v:w,(x)", "tab\there", "ünïcode ✓", "\\"]
)
def test_dry_run_values_are_quoted_for_the_shell_and_ovs_vsctl(reason: str) -> None:
    # the real ovs-vsctl reads them back in tests/functional/test_validation.py
    import json

    argv = shlex.split(plan(reason=reason).vsctl_command())
    values = [a.split("=", 1)[1] for a in argv if a.startswith("external_ids:vmsniff-reason=")]
    assert values and all(json.loads(v) == reason for v in values)
