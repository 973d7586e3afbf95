"""What vmsniff asks of an Open vSwitch database: the :class:`OvsBackend` protocol.

Two implementations: ovsdbapp's ``OvsdbIdl`` (what :func:`vmsniff.ovs.connection.ovsdb`
yields; the real switch, proved in the lab) and :class:`vmsniff.ovs.fake.FakeOvs` (in memory,
for unit tests without root). The protocol is as small as vmsniff's OVS logic (``apply``,
``sessions``, ``keeper``, ``mirror``) needs, in ovsdbapp's own words, so the real object
satisfies it unchanged:

- reads go to the IDL's local copy of the tables (``tables[name].rows``, ``lookup``);
- writes are command objects that do nothing until a ``transaction`` commits them, all or
  nothing (ovsdbapp's API/backend split, ``ovsdbapp/api.py``); a command given as a value to
  a later command of the same transaction stands for the row it creates;
- ``idl`` says whether that copy is whole (:func:`vmsniff.ovs.keeper.idl_ready`).

Rows are typed ``Any``: the IDL makes their column attributes at run time. A column reads as
its Python value: a set or optional column as a list, a map as a dict (a copy), a reference
as the referred row. Callers pass ``check_error=True`` to ``transaction`` (ovsdbapp swallows
failures otherwise) and translate the plain exceptions they get at their boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

__all__ = ["Command", "Idl", "OvsBackend", "Row", "Table", "Transaction"]

#: An IDL row: ``uuid`` plus one attribute per column (see the module docstring).
Row = Any


class Command(Protocol):
    """One change (or read) to run inside a transaction; its ``result`` after the commit."""

    @property
    def result(self) -> Any: ...

    def run_idl(self, txn: Any) -> None: ...


_C = TypeVar("_C", bound=Command)


class Transaction(Protocol):
    """The commands of one OVSDB transaction; committed when its ``with`` block ends."""

    timeout: float | None  #: seconds to wait for the database's answer

    def add(self, command: _C) -> _C: ...


class Table(Protocol):
    """One table of the IDL's copy: its rows by uuid."""

    @property
    def rows(self) -> Mapping[Any, Row]: ...


class IdlSession(Protocol):
    def is_connected(self) -> bool: ...


class Idl(Protocol):
    """What tells whether the local copy is whole (``ovs.db.idl.Idl`` has no public flag)."""

    @property
    def _session(self) -> IdlSession: ...

    @property
    def state(self) -> int: ...

    @property
    def IDL_S_MONITORING(self) -> int: ...


class OvsBackend(Protocol):
    """An Open vSwitch database as vmsniff uses it (see the module docstring)."""

    @property
    def tables(self) -> Mapping[str, Table]: ...

    @property
    def idl(self) -> Idl: ...

    def lookup(self, table: str, record: Any, default: Any = ...) -> Row:
        """The row named or identified (uuid) by ``record``; ``default`` when there is none
        (without a default: raises)."""
        ...

    def transaction(
        self, check_error: bool = False, log_errors: bool = True, **kwargs: Any
    ) -> AbstractContextManager[Transaction]: ...

    def db_create(self, table: str, **columns: Any) -> Command: ...

    def db_add(self, table: str, record: Any, column: str, *values: Any) -> Command:
        """Add values to a set column (or keys to a map) of one row: a mutation."""
        ...

    def db_remove(
        self, table: str, record: Any, column: str, *values: Any, **keyvalues: Any
    ) -> Command:
        """Remove values from a set column (or keys from a map) of one row: a mutation."""
        ...

    def del_port(self, port: str, bridge: str | None = None, if_exists: bool = True) -> Command:
        """Take ``port`` off its bridge and delete it with its interfaces."""
        ...
