"""The mirror workflow over many VMs on many hosts: one session, all or nothing.

``vmsniff mirror VM VM… --to IP`` (or selectors: ``--project``, ``--network``, ``--host``,
``--port-id``) is a thin shell over this module::

    members, warnings = select_members(Selection(vms=("a", "b")), ResolveOptions(query=""))
    with SpreadSession(remotes_of(members)) as spread:
        plan = spread.prepare(members, MirrorOptions(to="192.0.2.9"))
        spread.start(plan, snaplen=None)
        hold_session(spread, duration=60, signalled=lambda: None)
    # every host's rows are gone here

Each VM is resolved as ``vmsniff resolve`` does; its NICs are grouped by the host that runs it
and each host's OVSDB is reached through the endpoint rules (flags > env > config > defaults:
per-host entries and templates such as ``tcp:{host}:6640`` in config.toml). Nothing is written
until every host has answered and the whole session is planned
(:func:`~vmsniff.ovs.spread.plan_spread`); then each host gets one transaction. When one host
fails, the hosts already done are undone and the error names the host: nothing is left
anywhere. One :class:`~vmsniff.mirror.MirrorSession` per host does the work (renewal,
liveness, teardown), all under one session id.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from vmsniff.errors import InvalidState, NotFound, UsageError, VmsniffError
from vmsniff.mirror import CleanupReport, MirrorSession, Started
from vmsniff.model import Nic, Target
from vmsniff.ovs.backend import OvsBackend
from vmsniff.ovs.plan import MirrorOptions
from vmsniff.ovs.spread import HostFacts, Member, SpreadPlan, plan_spread
from vmsniff.resolve import ResolveOptions, resolve, select_nics

__all__ = [
    "Selection",
    "SpreadSession",
    "cleanup_hosts",
    "host_remotes",
    "remotes_of",
    "select_members",
]


@dataclass(frozen=True, slots=True)
class Selection:
    """Which VMs: names or UUIDs, and the selectors (ANDed; they need the cloud API)."""

    vms: tuple[str, ...] = ()
    project: str | None = None  #: project id (or name, where the cloud accepts it)
    network: str | None = None  #: network name or id: the VMs' NICs on it
    host: str | None = None  #: compute host: the VMs it runs (only without VM names)
    port_id: str | None = None  #: one Neutron port: its VM, that NIC only

    @property
    def selectors(self) -> dict[str, str]:
        """The selectors given, by option name."""
        given = {
            "--project": self.project,
            "--network": self.network,
            "--port-id": self.port_id,
            "--host": None if self.vms else self.host,
        }
        return {k: v for k, v in given.items() if v}


def _on_host(exc: VmsniffError, host: str, tail: str = "") -> VmsniffError:
    """``exc`` with the host named first (and ``tail`` added), same class and hint."""
    if not exc.message.startswith(f"host {host}: "):
        exc.message = f"host {host}: {exc.message}{tail}"
        exc.args = (exc.message,)
    return exc


def _selected_servers(sel: Selection, base: ResolveOptions) -> list[tuple[str, set[str] | None]]:
    """(server id, the port ids to take or None for all) of the selectors, from the cloud."""
    from vmsniff.resolve.nova import NovaSource, cloud_configured

    if base.offline or not cloud_configured(base.os_cloud):
        raise UsageError(
            f"{', '.join(sel.selectors)} select VMs through the cloud API, and none is "
            "configured (or --offline was given)",
            hint="set OS_CLOUD / --os-cloud, or name the VMs",
        )
    nova = NovaSource(base.os_cloud)
    try:
        found = nova.select(project=sel.project, network=sel.network,
                            host=sel.selectors.get("--host"), port_id=sel.port_id)  # fmt: skip
    finally:
        nova.close()
    if not found:
        what = " ".join(f"{k} {v}" for k, v in sel.selectors.items())
        raise NotFound(f"no VM matches {what}", hint="`openstack server list --long` shows them")
    return found


def _nics_of(
    target: Target, ports: set[str] | None, nic: str | None, *, explicit: bool = False
) -> list[tuple[int, Nic]]:
    """The NICs of ``target`` to mirror, with their index; off-OVS ones only when chosen
    one by one (``--nic``, ``--port-id``: ``explicit``), which then fails with the reason."""
    indexed = list(enumerate(target.nics))
    if ports is not None:
        indexed = [(i, n) for i, n in indexed if n.port_id in ports]
    if nic:
        chosen = {id(n) for n in select_nics([n for _i, n in indexed], nic)}
        indexed = [(i, n) for i, n in indexed if id(n) in chosen]
    if not explicit:  # every NIC (of the network): those Open vSwitch carries
        indexed = [(i, n) for i, n in indexed if n.plug.on_ovs and n.ovs_port]
    if not indexed:
        raise InvalidState(
            f"VM {target.server.name} has no NIC to mirror on Open vSwitch",
            hint="`vmsniff resolve " + target.server.name + "` shows its NICs",
        )
    return indexed


def select_members(
    sel: Selection, base: ResolveOptions, env: Mapping[str, str] = os.environ
) -> tuple[list[Member], dict[str, str], list[str]]:
    """Resolve every VM of ``sel``: the NICs to mirror, each host's OVSDB remote, and the
    warnings worth telling. Raises (naming the VM) before anything is touched."""
    if not sel.vms and not sel.selectors:
        raise UsageError("name a VM, or select VMs with --project, --network, --host or --port-id")
    wanted: dict[str, set[str] | None] = {q: None for q in sel.vms}
    if sel.selectors:
        picked = dict(_selected_servers(sel, base))
        if sel.vms:  # names and selectors: the named VMs the selectors also pick
            resolved = {q: resolve(replace(base, query=q, nic=None), env) for q in sel.vms}
            wanted = {}
            for q, t in resolved.items():
                if t.server.id not in picked:
                    what = " ".join(f"{k} {v}" for k, v in sel.selectors.items())
                    raise NotFound(f"VM {q} does not match {what}")
                wanted[t.server.id] = picked[t.server.id]
        else:
            wanted = picked
    host_opt = base.host if sel.vms else None
    picked_only = not sel.vms  # VMs the selectors found: one that cannot be mirrored is skipped
    with _cloud(base, env) as nova:
        return _members(sel, base, env, wanted, host_opt, picked_only, nova)


@contextmanager
def _cloud(base: ResolveOptions, env: Mapping[str, str]) -> Iterator[Any]:
    """One cloud connection (one token) for every VM resolved, or None when offline."""
    from vmsniff.resolve.nova import NovaSource, cloud_configured

    if base.offline or not cloud_configured(base.os_cloud, env):
        yield None
        return
    nova = NovaSource(base.os_cloud)
    try:
        nova.prefetch()  # one listing for every VM (admin); else each VM is asked alone
        yield nova
    finally:
        nova.close()


def _members(
    sel: Selection,
    base: ResolveOptions,
    env: Mapping[str, str],
    wanted: dict[str, set[str] | None],
    host_opt: str | None,
    picked_only: bool,
    nova: Any,
) -> tuple[list[Member], dict[str, str], list[str]]:
    members: list[Member] = []
    remotes: dict[str, str] = {}
    warnings: list[str] = []
    names: set[str] = set()
    for query, ports in wanted.items():
        try:
            target = resolve(replace(base, query=query, nic=None, host=host_opt), env, nova=nova)
            chosen = _nics_of(target, ports, base.nic, explicit=bool(base.nic or sel.port_id))
        except InvalidState as exc:  # not ACTIVE, or no NIC on Open vSwitch
            if not picked_only:
                raise
            warnings.append(f"skipped: {exc.message}")
            continue
        warnings.extend(f"{target.server.name}: {w}" for w in target.warnings)
        host = target.server.host or "this host"
        if not target.ovsdb:
            raise UsageError(
                f"no OVSDB endpoint for host {host} (VM {target.server.name})",
                hint='configure the host in config.toml ([hosts."HOST"] ovsdb, or the '
                '[endpoints] template ovsdb = "tcp:{host}:6640")',
            )
        if remotes.setdefault(host, target.ovsdb) != target.ovsdb:  # pragma: no cover
            raise UsageError(f"two OVSDB endpoints for host {host}")
        vm = target.server.name
        if any(n.startswith(f"{vm}/") for n in names):
            vm = f"{vm}-{target.server.id[:8]}"  # two VMs of one name: tell them apart
        for index, nic in chosen:
            name = f"{vm}/eth{index}"
            names.add(name)
            members.append(Member(target.server, nic, name, host))
    if not members:
        raise NotFound(
            "none of the selected VMs can be mirrored: " + "; ".join(warnings),
            hint="`vmsniff resolve VM` shows why",
        )
    if base.ovsdb and len(remotes) > 1:
        raise UsageError(
            f"--ovsdb names one switch, but the VMs run on {len(remotes)} hosts "
            f"({', '.join(remotes)})",
            hint="leave out --ovsdb and configure each host's endpoint in config.toml",
        )
    return members, remotes, warnings


def remotes_of(members: Sequence[Member], remotes: Mapping[str, str]) -> dict[str, str]:
    """Each host of ``members`` with its OVSDB remote, in the members' order."""
    return {m.host: remotes[m.host] for m in members}


def _now() -> datetime:
    return datetime.now(UTC)


class SpreadSession(AbstractContextManager["SpreadSession"]):
    """One session over several hosts; ``stop()`` (or leaving the ``with``) removes every
    host's rows. ``backends`` stand in for the switches (tests pass FakeOvs per host)."""

    def __init__(
        self, remotes: Mapping[str, str], backends: Mapping[str, OvsBackend] | None = None
    ) -> None:
        self.remotes = dict(remotes)
        self._backends = dict(backends or {})
        self._stack = ExitStack()
        self.hosts: dict[str, MirrorSession] = {}
        self.plan: SpreadPlan | None = None
        self.detach = False
        self.removed: dict[str, list[str]] = {}  #: host -> expired/dead sessions removed
        self._stopped = False

    def __enter__(self) -> SpreadSession:
        try:
            for host, remote in self.remotes.items():
                session = MirrorSession(remote, self._backends.get(host))
                try:
                    self.hosts[host] = self._stack.enter_context(session)
                except VmsniffError as exc:
                    raise _on_host(exc, host, "; nothing was changed on any host") from None
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if not self.detach:
                self.stop()
        finally:
            for session in self.hosts.values():
                session.detach = True  # stopped above (or kept): not again on their exit
            self._stack.close()

    def prepare(
        self, members: Sequence[Member], opts: MirrorOptions, *, shared: bool | None = None
    ) -> SpreadPlan:
        """Read every host (removing its expired vmsniff rows), then plan the session."""
        facts: dict[str, HostFacts] = {}
        for host, session in self.hosts.items():
            mine = [m for m in members if m.host == host]
            bridge = opts.bridge or mine[0].nic.bridge or ""
            try:
                facts[host], self.removed[host] = session.facts(bridge)
            except VmsniffError as exc:
                raise _on_host(exc, host, "; nothing was changed on any host") from None
        return plan_spread(members, opts, facts, now=_now(), shared=shared)

    def start(
        self,
        plan: SpreadPlan,
        members: Sequence[Member],
        snaplen: int | None,
        *,
        detach: bool = False,
        stopped: Callable[[], bool] = lambda: False,
    ) -> dict[str, Started]:
        """Apply every host's rows, host by host; when one fails (or ``stopped()`` turns true
        between hosts), undo the others and raise, naming the host."""
        self.plan = plan
        self.detach = detach
        started: dict[str, Started] = {}
        host = ""
        try:
            for host, host_plan in plan.plans.items():
                if stopped():
                    raise KeyboardInterrupt
                nic = next(m.nic for m in members if m.host == host)
                started[host] = self.hosts[host].start(host_plan, nic, snaplen, detach=detach)
        except BaseException as exc:
            left = self._undo()
            if isinstance(exc, VmsniffError):
                tail = (
                    "; nothing was left on any host"
                    if not left
                    else f"; rows remain on {left}: run `vmsniff cleanup {plan.session}` there"
                )
                raise _on_host(exc, host, tail) from None
            raise
        return started

    def _undo(self) -> str:
        """Remove what was made so far on every host; the hosts where that failed."""
        failed = []
        for host, session in self.hosts.items():
            try:
                session.stop()
            except VmsniffError:
                failed.append(host)
        self._stopped = not failed
        return ", ".join(failed)

    def check(self) -> None:
        """Raise SessionLost (naming the host) once any host's rows are gone."""
        for host, session in self.hosts.items():
            try:
                session.check()
            except VmsniffError as exc:
                raise _on_host(exc, host) from None

    def stats(self) -> tuple[int, int]:
        """Mirrored packets and bytes so far, every host summed."""
        packets = bytes_ = 0
        for session in self.hosts.values():
            p, b = session.stats()
            packets, bytes_ = packets + p, bytes_ + b
        return packets, bytes_

    def stop(self) -> None:
        """Remove every host's rows (idempotent); an unreachable host is tried after the
        others, then named with what remains there."""
        if self._stopped or self.plan is None:
            return
        errors: list[VmsniffError] = []
        for host, session in self.hosts.items():
            try:
                session.stop()
            except VmsniffError as exc:
                errors.append(_on_host(exc, host))
        self._stopped = True
        if errors:
            first = errors[0]
            for other in errors[1:]:
                first.message += f"; and {other.message}"
            first.args = (first.message,)
            raise first


def host_remotes(
    hosts: Sequence[str], *, all_hosts: bool = False, env: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The OVSDB remote of each host named (``list``/``cleanup --host``), or of every host
    config.toml lists and this one (``--all-hosts``); a host without one is a UsageError."""
    from vmsniff.resolve.endpoints import endpoints_for, load_config, local_host

    config = load_config(env)
    names = list(hosts)
    if all_hosts:
        listed = config.get("hosts", {})
        names = [local_host(env, config), *(listed if isinstance(listed, dict) else {}), *names]
    remotes: dict[str, str] = {}
    for host in dict.fromkeys(names):
        ep = endpoints_for(host, env=env, config=config)
        if not ep.ovsdb:
            raise UsageError(
                f"no OVSDB endpoint for host {host}",
                hint='configure it in config.toml ([hosts."HOST"] ovsdb, or the [endpoints] '
                "template)",
            )
        remotes.setdefault(ep.host, ep.ovsdb)
    return remotes


def cleanup_hosts(
    remotes: Mapping[str, str],
    *,
    sessions: Sequence[str] = (),
    vm: str | None = None,
    expired: bool = False,
    everything: bool = False,
    dry_run: bool = False,
) -> dict[str, CleanupReport]:
    """:func:`vmsniff.mirror.cleanup` on each host (one transaction there): a session id or
    ``vm`` must match on some host, not on every one (a multi-host session has rows on each
    of its hosts only). Every host is read before any is changed."""
    from vmsniff.mirror import _by_id, _by_vm, choose, cleanup, list_sessions

    found: dict[str, list[Any]] = {}
    for host, remote in remotes.items():
        try:
            found[host] = list_sessions(remote)
        except VmsniffError as exc:
            raise _on_host(exc, host, "; nothing was removed on any host") from None
    every = [s for ss in found.values() for s in ss]
    choose(every, sessions, vm, False, False, where=f" on {', '.join(remotes)}",
           hint="`vmsniff list --all-hosts` shows them")  # fmt: skip
    reports = {}
    for host, remote in remotes.items():
        here = [i for i in sessions if any(_by_id(s, i) for s in found[host])]
        vm_here = vm if vm and any(_by_vm(s, vm) for s in found[host]) else None
        if not (here or vm_here or expired or everything):
            continue
        try:
            reports[host] = cleanup(remote, sessions=here, vm=vm_here, expired=expired,
                                    everything=everything, dry_run=dry_run)  # fmt: skip
        except VmsniffError as exc:
            raise _on_host(exc, host) from None
    return reports


def choose_via(
    via: str, members: Sequence[Member], ovn_nb: str | None, env: Mapping[str, str] = os.environ
) -> tuple[str, str | None]:
    """``--via``: ``ovs`` or ``ovn`` as asked; ``auto`` is ovn when every NIC is OVN-plugged
    and a Northbound endpoint is configured (flag, OVN_NB_DB, config). The NB remote too."""
    from vmsniff.model import PlugKind
    from vmsniff.resolve.endpoints import ovn_nb_endpoint

    remote, _origin = ovn_nb_endpoint(ovn_nb, env=env)
    if via == "ovn" and remote is None:
        raise UsageError(
            "--via ovn needs the OVN Northbound database",
            hint="pass --ovn-nb REMOTE, set OVN_NB_DB, or [ovn] nb in config.toml",
        )
    if via == "auto":
        on_ovn = all(m.nic.plug is PlugKind.OVN for m in members)
        via = "ovn" if on_ovn and remote is not None else "ovs"
    return via, remote
