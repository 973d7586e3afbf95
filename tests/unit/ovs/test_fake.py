"""The fake switch behaves as ovsdb-server and ovsdbapp do where vmsniff depends on it."""

from __future__ import annotations

import pytest

from tests.unit.ovs.helpers import FOREIGN_MIRRORS, FOREIGN_PORTS, VM_PORT, hypervisor
from vmsniff.ovs.fake import FakeOvs, RowNotFound, TimeoutException


def snapshot(ovs: FakeOvs) -> dict[str, dict[object, dict[str, object]]]:
    return {t: {u: dict(r._data) for u, r in table.rows.items()} for t, table in ovs.tables.items()}


def test_columns_read_as_the_idl_gives_them() -> None:
    ovs = hypervisor()
    mirror = ovs.lookup("Mirror", "ops-span")
    assert [p.name for p in mirror.select_src_port] == ["qvo-other"]
    assert [p.name for p in mirror.output_port] == ["spanport"]  # optional: a list
    assert mirror.snaplen == [] and isinstance(mirror.external_ids, dict)
    port = ovs.lookup("Port", VM_PORT)
    assert [i.name for i in port.interfaces] == [VM_PORT]
    assert ovs.lookup("Port", port.uuid) is port and ovs.lookup("Port", str(port.uuid)) is port
    assert ovs.lookup("Port", "nope", default=None) is None
    with pytest.raises(RowNotFound):
        ovs.lookup("Port", "nope")


def test_rows_change_only_inside_a_transaction() -> None:
    ovs = hypervisor()
    with pytest.raises(RuntimeError, match="inside a transaction"):
        ovs.lookup("Port", VM_PORT).tag = 5


def test_a_failing_command_leaves_every_row_as_it_was() -> None:
    ovs = hypervisor()
    before, commits = snapshot(ovs), ovs.commits
    with pytest.raises(RowNotFound):
        ovs.run(
            ovs.db_add("Bridge", "br-int", "external_ids", {"a": "b"}),
            ovs.del_port("qvo-other"),
            ovs.db_add("Bridge", "br-missing", "ports", ovs.lookup("Port", VM_PORT).uuid),
        )
    assert snapshot(ovs) == before and ovs.commits == commits


def test_an_injected_failure_commits_nothing_and_only_once() -> None:
    ovs = hypervisor()
    before = snapshot(ovs)
    ovs.fail_next(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        ovs.run(ovs.del_port("qvo-other"))
    assert snapshot(ovs) == before
    ovs.run(ovs.del_port("qvo-other"))
    assert "qvo-other" not in ovs.names("Port")


def test_without_check_error_a_failure_is_swallowed_as_ovsdbapp_does() -> None:
    ovs = hypervisor()
    ovs.fail_next()
    with ovs.transaction() as txn:
        txn.add(ovs.del_port("qvo-other"))
    assert "qvo-other" in ovs.names("Port")


def test_a_disconnected_database_times_out() -> None:
    ovs = hypervisor()
    ovs.connected = False
    assert ovs.idl.state != ovs.idl.IDL_S_MONITORING
    with pytest.raises(TimeoutException):
        ovs.run(ovs.del_port("qvo-other"))
    assert "qvo-other" in ovs.names("Port")


def test_constraints_are_checked_at_commit() -> None:
    ovs = hypervisor()
    before = snapshot(ovs)
    with pytest.raises(RuntimeError, match="duplicate Port name"):
        ovs.add_port("br-int", "qvo-other")
    with pytest.raises(RuntimeError, match="referential integrity"):
        ovs.run(ovs.db_destroy("Port", "qvo-other"))  # br-int still refers to it
    assert snapshot(ovs) == before


def test_unreferenced_rows_are_collected_and_weak_references_vanish() -> None:
    ovs = hypervisor()
    ovs.run(ovs.db_remove("Bridge", "br-int", "mirrors", ovs.lookup("Mirror", "ops-span").uuid))
    assert ovs.names("Mirror") == set()  # off its bridge, the Mirror is gone
    ovs.add_mirror("br-int", "m2", src=("qvo-other",), output="spanport")
    ovs.run(ovs.del_port("spanport", "br-int"))
    assert "spanport" not in ovs.names("Interface")
    m2 = ovs.lookup("Mirror", "m2")
    assert m2.output_port == [] and [p.name for p in m2.select_src_port] == ["qvo-other"]
    assert m2._data["output_port"] == []  # the stored reference went too, not just its view


def test_set_columns_record_mutations_apart_from_updates() -> None:
    ovs = hypervisor()
    ovs.writes.clear()
    port = ovs.lookup("Port", "qvo-other")
    ovs.run(
        ovs.db_remove("Bridge", "br-int", "ports", port.uuid), ovs.db_destroy("Port", port.uuid)
    )
    assert ("mutate", "Bridge", "br-int", "ports") in ovs.writes
    assert not [w for w in ovs.writes if w[0] == "update"]
    assert ovs.names("Port") == FOREIGN_PORTS - {"qvo-other"}
    assert ovs.names("Mirror") == FOREIGN_MIRRORS
