"""``snoop --ovs BRIDGE``: point a bridge's controllers through the relay, and put them back.

For each active controller target of the bridge (``tcp:``, ``ssl:``), the relay listens on a
free port of 127.0.0.1 and the Controller row's ``target`` is set to it; the relay connects
upstream to the original target. The row is marked (DESIGN.md contract 1, on a row vmsniff
changed rather than created) with ``external_ids``:

* ``vmsniff-session``, ``vmsniff-owner``, ``vmsniff-created``, ``vmsniff-expires``,
  ``vmsniff-role`` = ``snoop``, as on every row vmsniff touches;
* ``vmsniff-snoop-target``: the original target, to restore;
* ``vmsniff-snoop-via``: the target vmsniff set.

Restoring (on exit, on every signal the CLI catches, or :func:`restore_abandoned` from
``vmsniff cleanup`` after a crash) sets ``target`` back only while it is still the one
vmsniff set (someone who changed it since wins), and removes exactly the keys vmsniff added.
A row that vanished (``set-controller`` replaced it) is left alone. Each snoop acts only on
rows with its own session id, so two snoops on two bridges never touch each other's rows; a
bridge whose controller another live snoop already redirects is refused.

Changes are one ovsdbapp transaction each way; ``external_ids`` is mutated key by key
(contract 2), never replaced. :class:`ControllerBackend` is the small protocol the logic
above talks to; :class:`OvsdbControllers` is its ovsdbapp implementation (the tests' fake
lives with them).
"""

from __future__ import annotations

import ssl
import uuid as uuidlib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from vmsniff.errors import InvalidState, NotFound, SwitchError, UsageError
from vmsniff.ovs.ownership import (
    LIVENESS_KEYS,
    SESSION_KEY,
    is_expired,
    liveness_ids,
    owner,
    owner_alive,
    rfc3339,
    this_host,
)
from vmsniff.snoop.loop import Route
from vmsniff.snoop.session import Endpoint, open_listener, resolve

__all__ = [
    "ControllerBackend",
    "ControllerRow",
    "OvsdbControllers",
    "Redirect",
    "TARGET_KEY",
    "VIA_KEY",
    "plan_upstream",
    "redirect_bridge",
    "restore_abandoned",
]

TARGET_KEY = "vmsniff-snoop-target"
VIA_KEY = "vmsniff-snoop-via"
ROLE = "snoop"
_MARKS = (SESSION_KEY, "vmsniff-owner", "vmsniff-created", "vmsniff-expires", "vmsniff-role",
          TARGET_KEY, VIA_KEY, *LIVENESS_KEYS)  # fmt: skip
DEFAULT_REMOTE = "unix:/var/run/openvswitch/db.sock"
_DEFAULT_PORT = 6653  # OpenFlow's IANA port, Open vSwitch's default for tcp:/ssl: targets


@dataclass(frozen=True, slots=True)
class ControllerRow:
    """One Controller row as snoop needs it."""

    uuid: str
    target: str
    external_ids: dict[str, str] = field(default_factory=dict)
    bridge: str = ""


class ControllerBackend(Protocol):
    """What the redirection needs from OVSDB."""

    def controllers(self, bridge: str) -> list[ControllerRow]:
        """The bridge's Controller rows; NotFound when there is no such bridge."""
        ...

    def marked(self) -> list[ControllerRow]:
        """Every Controller row carrying snoop's marks (any bridge, any session)."""
        ...

    def change(self, changes: list[tuple[str, str | None, dict[str, str], list[str]]]) -> None:
        """One transaction: per row uuid, set ``target`` (unless None), add these
        external_ids keys, remove those."""
        ...


def plan_upstream(target: str) -> tuple[Endpoint, bool]:
    """The relay's upstream for a controller target, and whether it is TLS. Only active
    TCP targets can be relayed: ``unix:`` has no address to synthesize and passive targets
    (``ptcp:``, ``pssl:``, ``punix:``) have the controller connect to the switch."""
    kind, _, rest = target.partition(":")
    if kind not in ("tcp", "ssl"):
        raise UsageError(
            f"controller target {target!r}: only tcp: and ssl: targets can be relayed",
            hint="run snoop by hand with --listen/--upstream for other set-ups",
        )
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = rest.partition(":")
    try:
        number = int(port) if port else _DEFAULT_PORT
    except ValueError:
        raise UsageError(f"controller target {target!r}: bad port") from None
    return Endpoint(host, number), kind == "ssl"


@dataclass
class Redirect:
    """The rows one snoop changed; :meth:`restore` puts them back (idempotent)."""

    backend: ControllerBackend
    session: str
    rows: list[ControllerRow]
    restored: bool = False
    log: Callable[[str], None] = lambda _msg: None

    def restore(self) -> list[str]:
        """Restore this session's rows; the targets put back."""
        if self.restored:
            return []
        self.restored = True
        try:
            mine = [
                r for r in self.backend.marked() if r.external_ids.get(SESSION_KEY) == self.session
            ]
            return _restore(self.backend, mine, self.log)
        finally:
            close = getattr(self.backend, "close", None)
            if close is not None:
                close()


def _restore(
    backend: ControllerBackend, rows: list[ControllerRow], log: Callable[[str], None]
) -> list[str]:
    changes: list[tuple[str, str | None, dict[str, str], list[str]]] = []
    done = []
    for row in rows:
        ids = row.external_ids
        original, via = ids.get(TARGET_KEY), ids.get(VIA_KEY)
        keys = [k for k in _MARKS if k in ids]
        if original and row.target == via:
            changes.append((row.uuid, original, {}, keys))
            done.append(original)
        else:
            log(f"controller {row.uuid}: target changed to {row.target!r} by someone else "
                "since vmsniff set it; left as it is, marks removed")  # fmt: skip
            changes.append((row.uuid, None, {}, keys))
    if changes:
        backend.change(changes)
    return done


def redirect_bridge(
    bridge: str,
    remote: str | None,
    accept_tls: ssl.SSLContext | None,
    connect_tls: ssl.SSLContext | None,
    *,
    ttl: float,
    backend: ControllerBackend | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    now: datetime | None = None,
) -> tuple[list[Route], Redirect]:
    """Listen for each of ``bridge``'s controllers and point its target at the listener.

    Expired redirections of crashed snoops are restored first (as every new mirror
    session cleans expired rows). Nothing is changed unless every controller can be
    relayed and every listener is open."""
    own = backend is None
    backend = backend or OvsdbControllers(remote or DEFAULT_REMOTE)
    try:
        return _redirect(bridge, backend, accept_tls, connect_tls, ttl, log, now)
    except BaseException:
        if own:
            backend.close()  # type: ignore[attr-defined]
        raise


def _redirect(
    bridge: str,
    backend: ControllerBackend,
    accept_tls: ssl.SSLContext | None,
    connect_tls: ssl.SSLContext | None,
    ttl: float,
    log: Callable[[str], None],
    now: datetime | None,
) -> tuple[list[Route], Redirect]:
    now = now or datetime.now(UTC)
    restore_abandoned(backend=backend, now=now, log=log)
    rows = backend.controllers(bridge)
    if not rows:
        raise InvalidState(
            f"bridge {bridge} has no controller: nothing to snoop on",
            hint=f"ovs-vsctl set-controller {bridge} tcp:HOST:PORT, or use --listen/--upstream",
        )
    for row in rows:
        if row.external_ids.get(SESSION_KEY):
            raise InvalidState(
                f"bridge {bridge}: controller {row.target} is already redirected by vmsniff "
                f"session {row.external_ids[SESSION_KEY]} ({row.external_ids.get('vmsniff-owner')}"
                f", expires {row.external_ids.get('vmsniff-expires')})",
                hint="stop that snoop first, or `vmsniff cleanup` once it has expired",
            )
    plans = []
    for row in rows:
        upstream, tls = plan_upstream(row.target)
        if tls and (accept_tls is None or connect_tls is None):
            raise UsageError(
                f"bridge {bridge}: controller {row.target} uses TLS",
                hint="give --tls-cert/--tls-key/--tls-ca (towards the switch) and "
                "--upstream-tls (towards the controller)",
            )
        plans.append((row, upstream, tls))
    routes: list[Route] = []
    try:
        for row, upstream, tls in plans:
            target = resolve(upstream, f"controller {row.target}")
            listener = open_listener(Endpoint("127.0.0.1", 0), "--ovs listener")
            tls_pair = (accept_tls, connect_tls) if tls else (None, None)
            routes.append(Route(listener, target, row.target, *tls_pair))
        session = str(uuidlib.uuid4())
        marks = {
            SESSION_KEY: session,
            "vmsniff-owner": owner(),
            "vmsniff-created": rfc3339(now),
            "vmsniff-expires": rfc3339(now + timedelta(seconds=ttl)),
            "vmsniff-role": ROLE,
            **liveness_ids(detached=False),
        }
        changes: list[tuple[str, str | None, dict[str, str], list[str]]] = []
        for (row, _up, tls), r in zip(plans, routes, strict=True):
            port = r.listener.getsockname()[1]
            via = f"{'ssl' if tls else 'tcp'}:127.0.0.1:{port}"
            changes.append((row.uuid, via, {**marks, TARGET_KEY: row.target, VIA_KEY: via}, []))
        backend.change(changes)
    except BaseException:
        for r in routes:
            r.listener.close()
        raise
    return routes, Redirect(backend, session, rows, log=log)


def restore_abandoned(
    remote: str | None = None,
    *,
    expired_only: bool = True,
    backend: ControllerBackend | None = None,
    now: datetime | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> list[str]:
    """Restore controllers that snoops changed and did not put back (killed, crashed).

    With ``expired_only`` (the default, and what ``vmsniff cleanup --expired`` wants) only
    rows of a snoop that is gone: whose owner on this host no longer runs (``kill -9``: the
    bridge would otherwise point at a dead relay until the expiry), or, when that cannot be
    told (another host, an older vmsniff), whose ``vmsniff-expires`` has passed. A running
    snoop's rows stay, even past their expiry. Returns the targets restored."""
    own = backend is None
    backend = backend or OvsdbControllers(remote or DEFAULT_REMOTE)
    now = now or datetime.now(UTC)
    host = this_host()

    def abandoned(ids: dict[str, str]) -> bool:
        alive = owner_alive(ids, host)
        return alive is False or (alive is None and is_expired(ids, now))

    try:
        rows = [r for r in backend.marked() if not expired_only or abandoned(r.external_ids)]
        return _restore(backend, rows, log)
    finally:
        if own:
            backend.close()  # type: ignore[attr-defined]


class OvsdbControllers:
    """:class:`ControllerBackend` over ovsdbapp, on vmsniff's shared connection to ``remote``
    (:mod:`vmsniff.ovs.connection`, which registers the Controller table)."""

    def __init__(self, remote: str, timeout: float = 5.0) -> None:
        self.remote = remote
        self.timeout = timeout
        self._stack = ExitStack()
        self._api: Any = None

    def _connect(self) -> Any:
        if self._api is None:
            from vmsniff.ovs.connection import ovsdb

            self._api = self._stack.enter_context(ovsdb(self.remote, self.timeout))
        return self._api

    def close(self) -> None:
        self._stack.close()
        self._api = None

    def controllers(self, bridge: str) -> list[ControllerRow]:
        api = self._connect()
        from ovsdbapp.backend.ovs_idl import idlutils

        try:
            (row,) = api.db_list("Bridge", [bridge], columns=["controller"]).execute(
                check_error=True
            )
        except idlutils.RowNotFound:
            raise NotFound(f"no bridge {bridge} in {self.remote}") from None
        wanted = {str(u) for u in row["controller"]}
        return [r for r in self._all(bridge) if r.uuid in wanted]

    def marked(self) -> list[ControllerRow]:
        return [r for r in self._all("") if r.external_ids.get(TARGET_KEY)]

    def _all(self, bridge: str) -> list[ControllerRow]:
        api = self._connect()
        rows = api.db_list("Controller", columns=["_uuid", "target", "external_ids"]).execute(
            check_error=True
        )
        return [ControllerRow(str(r["_uuid"]), r["target"], dict(r["external_ids"]), bridge)
                for r in rows]  # fmt: skip

    def change(self, changes: list[tuple[str, str | None, dict[str, str], list[str]]]) -> None:
        api = self._connect()
        try:
            with api.transaction(check_error=True) as txn:
                for uuid, target, add, remove in changes:
                    if target is not None:
                        txn.add(api.db_set("Controller", uuid, ("target", target)))
                    if remove:
                        txn.add(api.db_remove("Controller", uuid, "external_ids", *remove))
                    if add:
                        txn.add(api.db_add("Controller", uuid, "external_ids", add))
        except Exception as exc:  # ovsdbapp: RuntimeError and friends, translated here
            raise SwitchError(f"OVSDB refused to change the controllers: {exc}") from None
