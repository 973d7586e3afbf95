"""An in-memory Open vSwitch database behind :class:`~vmsniff.ovs.backend.OvsBackend`.

For unit tests of the OVS logic without root or a switch; the lab proves the real thing.
It keeps what vmsniff's contracts depend on, as ovsdb-server and ovsdbapp behave:

- five tables (Open_vSwitch, Bridge, Port, Interface, Mirror) with the columns vmsniff reads;
  rows have uuids; set, optional and reference columns read as lists, maps as dict copies,
  references as the referred rows;
- a transaction runs its commands in order and commits all or nothing: a failing command, a
  constraint broken at commit (a strong reference to a missing row, a Port without an
  Interface, a duplicate Bridge/Port/Interface name) or an injected failure
  (:meth:`FakeOvs.fail_next`) leaves every row as it was;
- at commit, like ovsdb-server: rows of non-root tables that nothing references strongly are
  deleted (a Mirror taken off ``Bridge.mirrors``, an Interface of a deleted Port), and weak
  references to deleted rows vanish (``Mirror.select_*_port``, ``output_port``);
- with ``connected`` False the copy is not whole (``idl_ready`` says so) and a commit raises
  ``TimeoutException``, as ovsdbapp does when the database does not answer.

Tests set the switch up with :meth:`FakeOvs.add_bridge`, :meth:`~FakeOvs.add_port` and
:meth:`~FakeOvs.add_mirror`, and play other operators with :meth:`~FakeOvs.run` and the
``db_*`` commands (``db_set`` and ``db_destroy`` too, which vmsniff itself never uses).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from vmsniff.ovs.backend import OvsBackend

__all__ = ["FakeOvs", "FakeRow", "RowNotFound", "TimeoutException"]


@dataclass(frozen=True, slots=True)
class _Col:
    kind: Literal["scalar", "optional", "set", "map"]
    ref: str | None = None  #: the referred table
    weak: bool = False
    default: Any = ""


def _set(ref: str | None = None, weak: bool = False) -> _Col:
    return _Col("set", ref, weak)


def _opt(ref: str | None = None, weak: bool = False) -> _Col:
    return _Col("optional", ref, weak)


_MAP = _Col("map")
_NAME = _Col("scalar")

#: The columns vmsniff reads, with their kinds as in vswitch.ovsschema.
SCHEMA: dict[str, dict[str, _Col]] = {
    "Open_vSwitch": {"bridges": _set("Bridge"), "external_ids": _MAP, "ovs_version": _opt()},
    "Bridge": {"name": _NAME, "ports": _set("Port"), "mirrors": _set("Mirror"),
               "external_ids": _MAP},
    "Port": {"name": _NAME, "interfaces": _set("Interface"), "tag": _opt(), "external_ids": _MAP},
    "Interface": {"name": _NAME, "type": _Col("scalar"), "options": _MAP, "external_ids": _MAP,
                  "status": _MAP, "ofport": _opt(), "error": _opt(), "mtu": _opt()},
    "Mirror": {"name": _NAME, "select_src_port": _set("Port", weak=True),
               "select_dst_port": _set("Port", weak=True),
               "output_port": _opt("Port", weak=True), "snaplen": _opt(),
               "external_ids": _MAP, "statistics": _MAP},
}  # fmt: skip
ROOT_TABLES = frozenset({"Open_vSwitch"})
#: Tables whose ``name`` is an index (unique); ovsdbapp looks Mirror rows up by name too.
_UNIQUE_NAME = ("Bridge", "Port", "Interface")
_BY_NAME = ("Bridge", "Port", "Interface", "Mirror")


_NO_DEFAULT: Any = object()


class RowNotFound(LookupError):
    """No row matches a record (ovsdbapp's ``idlutils.RowNotFound``)."""


class TimeoutException(Exception):  # named as ovsdbapp names it: our adapter reads the name
    """The database did not answer (ovsdbapp's ``exceptions.TimeoutException``)."""


class FakeRow:
    """One row: ``uuid`` and one attribute per column of :data:`SCHEMA`."""

    def __init__(self, db: FakeOvs, table: str, row_uuid: uuid.UUID, data: dict[str, Any]):
        object.__setattr__(self, "_db", db)
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "uuid", row_uuid)
        object.__setattr__(self, "_data", data)

    def _col(self, column: str) -> _Col:
        try:
            return SCHEMA[self._table][column]
        except KeyError:
            raise AttributeError(f"{self._table} has no column {column}") from None

    def __getattr__(self, column: str) -> Any:
        if column.startswith("_"):
            raise AttributeError(column)
        col = self._col(column)
        value = self._data[column]
        if col.kind == "map":
            return dict(value)
        if col.kind == "scalar":
            return value
        if col.ref is None:
            return list(value)
        rows = self._db._rows(col.ref)
        return [rows[u] for u in value if u in rows]

    def __setattr__(self, column: str, value: Any) -> None:
        self._db._write("update", self, column)
        self._data[column] = self._db._stored(self._col(column), value)

    def addvalue(self, column: str, value: Any) -> None:
        self._db._write("mutate", self, column)
        stored = self._db._stored(self._col(column), [value])[0]
        if stored not in self._data[column]:
            self._data[column] = [*self._data[column], stored]

    def delvalue(self, column: str, value: Any) -> None:
        self._db._write("mutate", self, column)
        stored = self._db._stored(self._col(column), [value])[0]
        self._data[column] = [v for v in self._data[column] if v != stored]

    def setkey(self, column: str, key: str, value: Any) -> None:
        self._db._write("mutate", self, column)
        self._data[column] = {**self._data[column], key: value}

    def delkey(self, column: str, key: str, value: Any = None) -> None:
        self._db._write("mutate", self, column)
        current = self._data[column]
        if key in current and (value is None or current[key] == value):
            self._data[column] = {k: v for k, v in current.items() if k != key}

    def verify(self, column: str) -> None:
        """Check ``column`` is unchanged at commit: nothing changes under a fake commit."""
        self._col(column)

    def delete(self) -> None:
        self._db._write("delete", self, None)
        self._db._rows(self._table).pop(self.uuid, None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakeRow) and (other._table, other.uuid) == (
            self._table,
            self.uuid,
        )

    def __hash__(self) -> int:
        return hash((self._table, self.uuid))

    def __repr__(self) -> str:
        name = self._data.get("name")
        return f"<FakeRow {self._table} {name or self.uuid}>"


class _Table:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, FakeRow] = {}


class _Command:
    """A fake ovsdbapp command: ``run_idl`` inside the transaction, ``result`` after it."""

    def __init__(self, db: FakeOvs, run: Any, what: str) -> None:
        self.api = db
        self._run = run
        self.result: Any = None
        self.what = what

    def run_idl(self, txn: Any) -> None:
        self._run(self)

    def post_commit(self, txn: Any) -> None:
        if isinstance(self.result, FakeRow):  # db_create: the new row's uuid, as ovsdbapp
            self.result = self.result.uuid

    def __repr__(self) -> str:
        return f"<{self.what}>"


class _Transaction:
    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.commands: list[Any] = []

    def add(self, command: Any) -> Any:
        self.commands.append(command)
        return command


class _Session:
    def __init__(self, db: FakeOvs) -> None:
        self._db = db

    def is_connected(self) -> bool:
        return self._db.connected


class _Idl:
    IDL_S_MONITORING = 2

    def __init__(self, db: FakeOvs) -> None:
        self._session = _Session(db)
        self._db = db

    @property
    def state(self) -> int:
        return self.IDL_S_MONITORING if self._db.connected else 0


class FakeOvs:
    """An in-memory switch database with ovsdbapp's API (see the module docstring)."""

    def __init__(self) -> None:
        self.tables: dict[str, _Table] = {name: _Table() for name in SCHEMA}
        self.idl = _Idl(self)
        self.connected = True
        self.commits = 0  #: transactions committed (a failed one does not count)
        #: every committed write: ("update" | "mutate" | "delete", table, row name, column)
        #: (OVSDB's update replaces a column, mutate adds or removes single values)
        self.writes: list[tuple[str, str, str, str | None]] = []
        #: called after each commit, e.g. to play ovs-vswitchd (may run transactions)
        self.on_commit: list[Callable[[FakeOvs], None]] = []
        self._pending: list[tuple[str, str, str, str | None]] = []
        self._in_hooks = False
        self.lock = threading.RLock()
        self._in_txn = False
        self._fail: BaseException | None = None
        self.run(self.db_create("Open_vSwitch"))

    # -- the OvsBackend protocol -------------------------------------------------------

    def lookup(self, table: str, record: Any, default: Any = _NO_DEFAULT) -> Any:
        try:
            return self._lookup(table, record)
        except RowNotFound:
            if default is _NO_DEFAULT:
                raise
            return default

    @contextmanager
    def transaction(
        self, check_error: bool = False, log_errors: bool = True, **kwargs: Any
    ) -> Iterator[_Transaction]:
        txn = _Transaction(kwargs.get("timeout"))
        yield txn
        try:
            self._commit(txn.commands)
        except Exception:
            if check_error:
                raise

    def db_create(self, table: str, **columns: Any) -> _Command:
        def run(cmd: _Command) -> None:
            row = self._insert(table)
            for column, value in columns.items():
                setattr(row, column, value)
            cmd.result = row

        return _Command(self, run, f"db_create {table}")

    def db_add(self, table: str, record: Any, column: str, *values: Any) -> _Command:
        def run(cmd: _Command) -> None:
            row = self._lookup(table, record)
            for value in values:
                if isinstance(value, Mapping):  # a map: keys already there are kept
                    for k, v in value.items():
                        if k not in getattr(row, column):
                            row.setkey(column, k, v)
                else:
                    row.addvalue(column, value)

        return _Command(self, run, f"db_add {table} {record} {column}")

    def db_remove(
        self, table: str, record: Any, column: str, *values: Any, **keyvalues: Any
    ) -> _Command:
        if_exists = keyvalues.pop("if_exists", False)

        def run(cmd: _Command) -> None:
            try:
                row = self._lookup(table, record)
            except RowNotFound:
                if if_exists:
                    return
                raise
            if SCHEMA[table][column].kind == "map":
                for key in values:
                    row.delkey(column, key)
                for key, value in keyvalues.items():
                    row.delkey(column, key, value)
            else:
                for value in values:
                    row.delvalue(column, value)

        return _Command(self, run, f"db_remove {table} {record} {column}")

    def del_port(self, port: str, bridge: str | None = None, if_exists: bool = True) -> _Command:
        def run(cmd: _Command) -> None:
            # as ovsdbapp's DelPortCommand
            try:
                row = self._lookup("Port", port)
            except RowNotFound:
                if if_exists:
                    return
                raise RuntimeError(f"Port {port} does not exist") from None
            if bridge:
                br = self._lookup("Bridge", bridge)
            else:
                br = next(b for b in self._rows("Bridge").values() if row in b.ports)
            if row not in br.ports and not if_exists:
                raise RuntimeError(f"Port {port} does not exist on {bridge}!")
            br.delvalue("ports", row)
            for iface in row.interfaces:
                iface.delete()
            row.delete()

        return _Command(self, run, f"del_port {port}")

    # -- more of ovsdbapp's API, for tests that play other operators --------------------

    def db_set(self, table: str, record: Any, *col_values: tuple[str, Any]) -> _Command:
        def run(cmd: _Command) -> None:
            row = self._lookup(table, record)
            for column, value in col_values:
                if SCHEMA[table][column].kind == "map":  # as ovsdbapp: keys are set
                    for k, v in value.items():
                        row.setkey(column, k, v)
                else:
                    setattr(row, column, value)

        return _Command(self, run, f"db_set {table} {record}")

    def db_destroy(self, table: str, record: Any) -> _Command:
        def run(cmd: _Command) -> None:
            self._lookup(table, record).delete()

        return _Command(self, run, f"db_destroy {table} {record}")

    # -- test helpers --------------------------------------------------------------------

    def run(self, *commands: Any) -> list[Any]:
        """Commit ``commands`` in one transaction (raising on failure); their results."""
        with self.transaction(check_error=True) as txn:
            for c in commands:
                txn.add(c)
        return [c.result for c in commands]

    def fail_next(self, exc: BaseException | None = None) -> None:
        """Make the next commit fail with ``exc`` after its commands ran (nothing is kept)."""
        self._fail = exc or RuntimeError("injected failure")

    def add_bridge(self, name: str) -> FakeRow:
        bridge = self.db_create("Bridge", name=name)
        self.run(bridge, self.db_add("Open_vSwitch", ".", "bridges", bridge))
        row: FakeRow = self.lookup("Bridge", name)
        return row

    def add_port(
        self,
        bridge: str,
        name: str,
        *,
        external_ids: Mapping[str, str] | None = None,
        **interface: Any,
    ) -> FakeRow:
        """A Port with one Interface of the same name (``interface``: its columns) on
        ``bridge``, as ``ovs-vsctl add-port`` makes it."""
        ids = dict(external_ids or {})
        with self.transaction(check_error=True) as txn:
            iface = txn.add(self.db_create("Interface", name=name, external_ids=ids, **interface))
            port = txn.add(self.db_create("Port", name=name, interfaces=[iface], external_ids=ids))
            txn.add(self.db_add("Bridge", bridge, "ports", port))
        row: FakeRow = self.lookup("Port", name)
        return row

    def add_mirror(
        self,
        bridge: str,
        name: str,
        *,
        src: tuple[str, ...] = (),
        dst: tuple[str, ...] = (),
        output: str | None = None,
        external_ids: Mapping[str, str] | None = None,
    ) -> FakeRow:
        """A Mirror on ``bridge`` selecting ports by name (another operator's, say)."""
        columns: dict[str, Any] = {
            "name": name,
            "select_src_port": [self.lookup("Port", p).uuid for p in src],
            "select_dst_port": [self.lookup("Port", p).uuid for p in dst],
            "external_ids": dict(external_ids or {}),
        }
        if output:
            columns["output_port"] = self.lookup("Port", output).uuid
        with self.transaction(check_error=True) as txn:
            mirror = txn.add(self.db_create("Mirror", **columns))
            txn.add(self.db_add("Bridge", bridge, "mirrors", mirror))
        row: FakeRow = self._rows("Mirror")[mirror.result]
        return row

    def names(self, table: str) -> set[str]:
        """The names of a table's rows."""
        return {r.name for r in self._rows(table).values()}

    # -- the machinery ----------------------------------------------------------------

    def _rows(self, table: str) -> dict[uuid.UUID, FakeRow]:
        return self.tables[table].rows

    def _write(self, op: str, row: FakeRow, column: str | None) -> None:
        if not self._in_txn:
            raise RuntimeError("rows change only inside a transaction")
        if column is not None:
            row._col(column)
        self._pending.append((op, row._table, row._data.get("name") or str(row.uuid), column))

    def _insert(self, table: str) -> FakeRow:
        data = {
            name: {} if col.kind == "map" else ("" if col.kind == "scalar" else [])
            for name, col in SCHEMA[table].items()
        }
        row = FakeRow(self, table, uuid.uuid4(), data)
        self._rows(table)[row.uuid] = row
        return row

    def _lookup(self, table: str, record: Any) -> FakeRow:
        if hasattr(record, "run_idl"):  # a command of this transaction: its row
            record = record.result
        if isinstance(record, FakeRow):
            record = record.uuid
        rows = self._rows(table)
        if isinstance(record, str):
            try:
                record = uuid.UUID(record)
            except ValueError:
                pass
        if isinstance(record, uuid.UUID):
            if record in rows:
                return rows[record]
        elif table == "Open_vSwitch" and rows:
            return next(iter(rows.values()))
        elif table in _BY_NAME:
            for row in list(rows.values()):
                if row._data["name"] == record:
                    return row
        raise RowNotFound(f"Cannot find {table} with record={record}")

    def _stored(self, col: _Col, value: Any) -> Any:
        """A value as the database keeps it: commands become their rows, rows their uuids."""
        if col.kind == "map":
            return dict(value)
        if col.kind == "scalar":
            return value
        values = list(value) if isinstance(value, list | tuple | set) else [value]
        out = []
        for v in values:
            if hasattr(v, "run_idl"):
                v = v.result
            if isinstance(v, FakeRow):
                v = v.uuid
            if col.ref is not None and not isinstance(v, uuid.UUID):
                raise TypeError(f"a reference to {col.ref} must be a row or uuid, not {v!r}")
            if v not in out:
                out.append(v)
        if col.kind == "optional" and len(out) > 1:
            raise ValueError(f"an optional column takes at most one value, not {out}")
        return out

    def _commit(self, commands: list[Any]) -> None:
        with self.lock:
            snapshot = {
                t: {u: (row, dict(row._data)) for u, row in table.rows.items()}
                for t, table in self.tables.items()
            }
            self._in_txn = True
            self._pending = []
            try:
                if not self.connected:
                    raise TimeoutException("Commands exceeded timeout")
                for command in commands:
                    command.run_idl(None)
                self._check_and_collect()
                if self._fail is not None:
                    exc, self._fail = self._fail, None
                    raise exc
            except BaseException:
                for t, rows in snapshot.items():
                    self.tables[t].rows = {}
                    for u, (row, data) in rows.items():
                        object.__setattr__(row, "_data", data)
                        self.tables[t].rows[u] = row
                raise
            finally:
                self._in_txn = False
            self.commits += 1
            self.writes += self._pending
        for command in commands:
            if hasattr(command, "post_commit"):
                command.post_commit(None)
        if not self._in_hooks:
            self._in_hooks = True
            try:
                for hook in self.on_commit:
                    hook(self)
            finally:
                self._in_hooks = False

    def _check_and_collect(self) -> None:
        """ovsdb-server's checks at commit: constraints, referential integrity, garbage
        collection of unreferenced non-root rows, and removal of dangling weak references."""
        for table in _UNIQUE_NAME:
            names = [r._data["name"] for r in self._rows(table).values()]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise RuntimeError(f"constraint violation: duplicate {table} name {sorted(dup)}")
        for port in self._rows("Port").values():
            if not port._data["interfaces"]:
                raise RuntimeError(f"constraint violation: Port {port.name} has no interface")
        for table, columns in SCHEMA.items():
            for row in self._rows(table).values():
                for name, col in columns.items():
                    if col.ref and not col.weak:
                        missing = [u for u in row._data[name] if u not in self._rows(col.ref)]
                        if missing:
                            raise RuntimeError(
                                f"referential integrity violation: {table} {row!r} {name} "
                                f"refers to missing {col.ref} {missing}"
                            )
        while True:  # garbage collection, until nothing more goes
            referenced = {
                u
                for table, columns in SCHEMA.items()
                for row in self._rows(table).values()
                for name, col in columns.items()
                if col.ref and not col.weak
                for u in row._data[name]
            }
            gone = [
                (table, u)
                for table in SCHEMA
                if table not in ROOT_TABLES
                for u in self._rows(table)
                if u not in referenced
            ]
            if not gone:
                break
            for table, u in gone:
                del self._rows(table)[u]
        for table, columns in SCHEMA.items():
            for row in self._rows(table).values():
                for name, col in columns.items():
                    if col.ref and col.weak:
                        kept = [u for u in row._data[name] if u in self._rows(col.ref)]
                        if kept != row._data[name]:
                            row._data[name] = kept


if TYPE_CHECKING:

    def _satisfies_the_protocol(fake: FakeOvs) -> OvsBackend:
        return fake  # mypy checks that the fake is an OvsBackend
