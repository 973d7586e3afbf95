"""One ovsdbapp connection to an OVN Northbound database per remote and process."""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["NB_TABLES", "nb"]

#: What vmsniff reads or writes of the Northbound database.
NB_TABLES = ("Mirror", "Logical_Switch_Port")

_OPEN: dict[str, tuple[Any, Any]] = {}

_HINT = (
    "pass --ovn-nb REMOTE, set OVN_NB_DB (as for ovn-nbctl) or [ovn] nb in config.toml, "
    "e.g. tcp:192.0.2.5:6641"
)


def _close_all() -> None:
    while _OPEN:
        _remote, (conn, _api) = _OPEN.popitem()
        conn.stop(timeout=5)


@contextmanager
def nb(remote: str, timeout: float = 5.0) -> Iterator[Any]:
    """Yield an ovsdbapp ``OvnNbApiIdlImpl`` on ``remote`` (shared within the process)."""
    if remote not in _OPEN:
        from ovsdbapp.schema.ovn_northbound.impl_idl import OvnNbApiIdlImpl

        from vmsniff.ovs.connection import connect_idl

        conn, api = connect_idl(remote, "OVN_Northbound", NB_TABLES, OvnNbApiIdlImpl, _HINT,
                                timeout, what="OVN Northbound")  # fmt: skip
        if not _OPEN:
            atexit.register(_close_all)
        _OPEN[remote] = (conn, api)
    yield _OPEN[remote][1]
