"""plan_nb: a session as OVN Northbound Mirror rows (pure), and cleanup's selection on them."""

from __future__ import annotations

import random
import shlex
from datetime import timedelta

import pytest

from tests.unit.ovs.helpers import NOW
from tests.unit.ovs.test_spread import member
from vmsniff.errors import InvalidState, SwitchError, UsageError
from vmsniff.manifest import parse_manifest
from vmsniff.model import Direction
from vmsniff.ovn.plan import plan_nb
from vmsniff.ovs.plan import MirrorOptions, Tunnel
from vmsniff.ovs.spread import Member

SID = "0badcafe-0000-4000-8000-000000000000"
FOUR = [member("a", 0, "compute-1", tag=None), member("b", 0, "compute-2", tag=None),
        member("c", 0, "compute-3", tag=None), member("c", 1, "compute-3", tag=None)]  # fmt: skip


def plan(members: list[Member] = FOUR, **kw: object):  # type: ignore[no-untyped-def]
    shared = kw.pop("shared", None)
    existing = kw.pop("existing", ())
    opts = MirrorOptions(to="192.0.2.10", ttl=timedelta(minutes=5), **kw)  # type: ignore[arg-type]
    return plan_nb(members, opts, existing=existing, now=NOW, shared=shared, session=SID,  # type: ignore[arg-type]
                   rng=random.Random(3))  # fmt: skip


def test_a_row_per_nic_and_direction_with_its_own_index() -> None:
    p = plan()
    assert len(p.mirrors) == 8
    base = p.mirrors[0].index
    assert [m.index for m in p.mirrors] == list(range(base, base + 8))
    assert [m.filter for m in p.mirrors[:2]] == ["from-lport", "to-lport"]
    assert {m.sink for m in p.mirrors} == {"192.0.2.10"} and {m.type for m in p.mirrors} == {"gre"}
    assert p.mirrors[6].ports == ("port-c-1",)
    for m in p.mirrors:
        assert m.external_ids["vmsniff-session"] == SID
        assert m.external_ids["vmsniff-role"] == f"mirror-{m.direction.value}"
        assert m.name.startswith("vmsniff-0badcafe-")
    manifest = parse_manifest(p.manifest.to_json())
    assert manifest.via == "ovn" and {n.tag for n in manifest.nics} == {None}
    assert [s.key for s in manifest.streams] == [m.index for m in p.mirrors]


def test_the_ovn_nbctl_equivalent_creates_and_attaches_every_row() -> None:
    argv = shlex.split(plan(direction=Direction.FROM_VM).ovn_nbctl_command("unix:/x.sock"))
    assert argv[:2] == ["ovn-nbctl", "--db=unix:/x.sock"]
    assert argv.count("create") == 4
    assert " ".join(argv).count("add Logical_Switch_Port") == 4
    assert "filter=from-lport" in argv and "filter=to-lport" not in argv


def test_shared_rows_per_host_attach_to_every_port_of_it() -> None:
    p = plan(shared=True)
    shared = [m for m in p.mirrors if len(m.ports) > 1]
    assert [m.ports for m in shared] == [("port-c-0", "port-c-1")] * 2
    assert p.shared == {"compute-1": False, "compute-2": False, "compute-3": True}
    many = [member(f"v{i}", 0, "compute-1", tag=None) for i in range(20)]
    assert len(plan(many).mirrors) == 2  # 40 mirrors on one chassis would not fit


def test_indexes_avoid_other_mirrors_toward_the_same_sink() -> None:
    taken = [Tunnel("ops", "gre", "192.0.2.10", None, str(k)) for k in range(900, 904)]
    with pytest.raises(SwitchError, match="already used"):
        plan(key=896, existing=taken)
    assert (
        plan(key=896, existing=[Tunnel("x", "gre", "192.0.2.99", None, "900")]).mirrors[0].index
        == 896
    )


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"encap": "erspan", "erspan_version": 2}, "--erspan-version 2"),
        ({"encap": "erspan", "erspan_index": 3}, "--erspan-index"),
        ({"snaplen": 128}, "--snaplen"),
        ({"bridge": "br-int"}, "--bridge"),
    ],  # fmt: skip
)
def test_what_ovn_mirrors_cannot_do_is_refused(options: dict[str, object], needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        plan(**options)


def test_a_nic_without_a_port_id_is_refused() -> None:
    from dataclasses import replace

    bare = replace(FOUR[0], nic=replace(FOUR[0].nic, port_id=None))
    with pytest.raises(InvalidState, match="no Neutron port id"):
        plan([bare])


def test_erspan_rows_use_session_ids() -> None:
    p = plan(encap="erspan")
    assert {m.type for m in p.mirrors} == {"erspan"} and p.manifest.encap == "erspan"
    assert all(1 <= m.index <= 1023 for m in p.mirrors)
