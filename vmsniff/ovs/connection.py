"""One ovsdbapp connection to an OVSDB remote, with errors translated at this boundary.

FACTS.md: ovsdbapp logs tracebacks at ERROR even for errors the caller handles (we
silence its loggers); its IDL runs a thread (always close); failures are swallowed unless
``check_error=True`` (callers that write pass it).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vmsniff.errors import PermissionDenied, Unreachable, UsageError

__all__ = ["TABLES", "close_all", "ovsdb"]

#: The tables vmsniff reads or writes; registering only these keeps the IDL small.
TABLES = ("Open_vSwitch", "Bridge", "Port", "Interface", "Mirror", "Controller")


def _quiet_ovsdbapp() -> None:
    for name in ("ovsdbapp", "ovsdbapp.backend.ovs_idl", "ovs"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


_ROOT_HINT = "run vmsniff as root (or as a member of the socket's group, if it has one)"

#: One connection per remote and process: resolve and mirror share it. (Measured: a second
#: ovsdbapp connection to the same server in one process took 1 s to start, the first 0.1 s.)
_OPEN: dict[str, tuple[Any, Any]] = {}


def close_all() -> None:
    """Stop every cached connection (their IDL threads); called at exit."""
    while _OPEN:
        _remote, (conn, _api) = _OPEN.popitem()
        conn.stop(timeout=5)


@contextmanager
def ovsdb(remote: str, timeout: float = 5.0) -> Iterator[Any]:
    """Yield an ovsdbapp ``OvsdbIdl`` API on ``remote`` (shared within the process)."""
    if remote in _OPEN:
        yield _OPEN[remote][1]
        return
    conn, api = _connect(remote, timeout)
    if not _OPEN:
        atexit.register(close_all)
    _OPEN[remote] = (conn, api)
    yield api


def _check_unix_socket(path: str, hint: str, timeout: float, what: str = "OVSDB") -> None:
    """Say what is wrong with a ``unix:`` remote before ovsdbapp would only say that it
    "could not retrieve schema": missing (Unreachable), not a socket, nobody listening, or
    not ours to open (PermissionDenied: the socket is root's, mode 0750, or a directory on
    its way is not searchable, as for the lab's /run/PREFIX). One connect() probe: the
    kernel's answer is the truth, ACLs and security modules included."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise Unreachable(f"{what} socket {path} does not exist", hint=hint) from None
    except PermissionError:
        raise PermissionDenied(
            f"cannot reach {what} socket {path}: permission denied on a directory of its path",
            hint=_ROOT_HINT,
        ) from None
    except OSError as exc:
        raise Unreachable(f"{what} socket {path}: {exc.strerror}", hint=hint) from None
    if not stat.S_ISSOCK(info.st_mode):
        raise Unreachable(f"{path} is not a socket, so not an {what} server", hint=hint)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(path)
    except PermissionError:
        mode = stat.filemode(info.st_mode)
        raise PermissionDenied(
            f"no permission to connect to {what} socket {path} ({mode}, uid {info.st_uid}, "
            f"gid {info.st_gid})",
            hint=_ROOT_HINT,
        ) from None
    except ConnectionRefusedError:
        raise Unreachable(
            f"nothing listens on {what} socket {path} (a stale socket: is ovsdb-server running?)",
            hint=hint,
        ) from None
    except OSError as exc:
        raise Unreachable(f"cannot connect to {what} socket {path}: {exc}", hint=hint) from None
    finally:
        probe.close()


def _connect(remote: str, timeout: float) -> tuple[Any, Any]:
    from ovsdbapp.schema.open_vswitch import impl_idl

    hint = "pass --ovsdb REMOTE (or set VMSNIFF_OVSDB), e.g. unix:/var/run/openvswitch/db.sock"
    return connect_idl(remote, "Open_vSwitch", TABLES, impl_idl.OvsdbIdl, hint, timeout)


def _use_ssl_files() -> None:
    """Give Open vSwitch's stream library the key, certificate and CA of config ``[ssl]``."""
    from ovs.stream import Stream

    from vmsniff.resolve.endpoints import ssl_files

    files = ssl_files()
    Stream.ssl_set_private_key_file(files.private_key)
    Stream.ssl_set_certificate_file(files.certificate)
    Stream.ssl_set_ca_cert_file(files.ca_cert)


def connect_idl(
    remote: str,
    schema: str,
    tables: tuple[str, ...],
    api_base: type,
    hint: str,
    timeout: float,
    what: str = "OVSDB",
) -> tuple[Any, Any]:
    """A started ovsdbapp connection to database ``schema`` at ``remote`` (only ``tables``
    registered) and its API (a subclass of ``api_base``); every failure translated."""
    _quiet_ovsdbapp()
    from ovsdbapp.backend.ovs_idl import connection, idlutils

    if not remote.startswith(("unix:", "tcp:", "ssl:")):
        # ovsdbapp would try it and say only "could not retrieve schema" (exit 6)
        raise UsageError(
            f"{what} remote {remote!r} is not unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT",
            hint=hint,
        )
    if remote.startswith("unix:"):
        _check_unix_socket(remote[5:], hint, timeout, what)
    if remote.startswith("ssl:"):
        _use_ssl_files()
    try:
        helper = idlutils.get_schema_helper(remote, schema)
    except Exception as exc:  # ovsdbapp raises plain Exception for every connect failure
        raise Unreachable(f"cannot reach {what} at {remote}: {exc}", hint=hint) from None
    for table in tables:
        helper.register_table(table)
    idl = connection.OvsdbIdl(remote, helper)
    conn = connection.Connection(idl=idl, timeout=timeout)
    # ovsdbapp keeps an API class's connection in a class attribute, set by the first
    # instance only: a second remote (or a second connection) in the same process would get
    # the first one's database. A class of its own per connection keeps them apart.
    api_class = type(api_base.__name__, (api_base,), {"_ovsdb_connection": None})
    try:
        api = api_class(conn, start=True)
    except Exception as exc:
        conn.stop()
        raise Unreachable(f"{what} at {remote} did not answer: {exc}", hint=hint) from None
    return conn, api
