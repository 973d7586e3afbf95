"""``vmsniff mirror``, ``list`` and ``cleanup``: GRE/ERSPAN port mirroring that leaves no mess."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from vmsniff.cli._context import Env
from vmsniff.cli._mirror_hold import OVS_STATS_INTERVAL_S, hold_with_progress
from vmsniff.cli._options import DURATION, json_option, resolve_options, resolve_options_from

ovsdb_option = click.option(
    "--ovsdb",
    metavar="REMOTE",
    envvar="VMSNIFF_OVSDB",
    help="OVSDB of this host [default unix:/var/run/openvswitch/db.sock].",
)


def _receive_command(plan: Any) -> str:
    if plan.direction.value == "both":
        parts = [f"--key {plan.keys['from-vm']}", "--direction both"]
    else:
        key = plan.keys[plan.direction.value]
        parts = [f"--key {key}", f"--direction {plan.direction.value}"]
    if plan.tag is not None:
        parts.append(f"--strip-vlan {plan.tag}")
    return " ".join(["vmsniff receive", *parts, "-w vm.pcapng"])


@click.command()
@click.argument("vms", metavar="[VM]...", nargs=-1)
@click.option(
    "--to",
    "to",
    required=True,
    metavar="IP",
    help="Receiver of the tunnel: a unicast IPv4/IPv6 address of another host (not loopback, "
    "multicast, broadcast or this hypervisor's tunnel address).",
)
@click.option(
    "--direction",
    type=click.Choice(["both", "from-vm", "to-vm"]),
    default="both",
    show_default=True,
    help="From the VM's point of view.",
)
@click.option("--encap", type=click.Choice(["gre", "erspan"]), default="gre", show_default=True)
@click.option(
    "--erspan-version",
    type=click.IntRange(1, 2),
    metavar="1|2",
    help="With --encap erspan: 1 (type II) or 2 (type III, direction and hardware id) "
    "[default: 1].",
)
@click.option(
    "--erspan-index",
    type=click.IntRange(0, 0xFFFFF),
    metavar="N",
    help="With --encap erspan, version 1 only: the type II index, 0-1048575 (20 bits) "
    "[default: 1].",
)
@click.option(
    "--key",
    type=click.IntRange(0),
    metavar="K",
    help="Tunnel key K (K+1 for to-vm): GRE 0-4294967293, ERSPAN session id 0-1022 [random].",
)
@click.option("--snaplen", type=click.IntRange(14, 65535), help="Cut mirrored frames to N bytes.")
@click.option("--duration", type=DURATION, metavar="D", help="Stop after D (30s, 10m, 1h).")
@click.option("--detach", is_flag=True, help="Leave the mirror running; it expires after --ttl.")
@click.option(
    "--ttl", type=DURATION, default="1h", show_default=True, metavar="T", help="Expiry of the rows."
)
@click.option("--reason", metavar="TEXT", help="Recorded on the rows (who asked, ticket).")
@click.option(
    "--bridge", metavar="BR", help="Bridge to mirror on; only the NIC's own [default: the NIC's]."
)
@click.option("--dry-run", is_flag=True, help="Print the plan and the ovs-vsctl command only.")
@click.option("--project", metavar="ID", help="Every VM of this project (several VMs; admin).")
@click.option("--network", metavar="NET", help="The VMs' NICs on this network (name or id).")
@click.option("--port-id", metavar="PORT", help="The VM NIC of this Neutron port.")
@click.option(
    "--manifest",
    metavar="FILE",
    help="Several VMs: write the session's manifest here for `vmsniff receive --manifest` "
    "[default: session-ID.json].",
)
@click.option(
    "--shared-mirrors",
    is_flag=True,
    default=None,
    help="Several VMs: one Mirror per direction and host for all its NICs (the receiver tells "
    "them by MAC) [default: only when two per NIC do not fit in OVS's 32].",
)
@click.option(
    "--via",
    type=click.Choice(["auto", "ovs", "ovn"]),
    default="auto",
    show_default=True,
    help="Several VMs: OVSDB Mirror rows on each host (ovs), or OVN Northbound Mirror rows "
    "(ovn; auto when every NIC is OVN-plugged and an NB endpoint is configured).",
)
@click.option(
    "--ovn-nb",
    metavar="REMOTE",
    help="The OVN Northbound database [env OVN_NB_DB; config [ovn] nb].",
)
@resolve_options
@json_option
@click.pass_obj
def mirror(env: Env, /, vms: tuple[str, ...], as_json: bool, **kw: Any) -> None:
    """Mirror VM's traffic to --to over GRE or ERSPAN, then remove the mirror.

    Several VMs (names, UUIDs, or --project/--network/--host/--port-id) make one session over
    every host they run on: all or nothing, each host's OVSDB found as `vmsniff resolve` finds
    it, and a manifest for `vmsniff receive --manifest` that files each frame under its NIC
    (docs/scale.md).

    Creates, in one OVSDB transaction, tunnel port(s) and Mirror row(s) on the NIC's bridge
    (from-vm with key K, to-vm with key K+1), adding to Bridge.ports and Bridge.mirrors and
    never replacing them. Runs in the foreground until Ctrl-C, SIGTERM, SIGHUP or
    --duration, then removes exactly what it created; while it runs it renews the rows'
    expiry, and exits 12 if they are removed under it. Prints the keys and the matching
    `vmsniff receive` command for the receiving host (stdout; stderr with --json).
    """
    from datetime import timedelta

    from vmsniff.errors import UsageError
    from vmsniff.mirror import MirrorSession
    from vmsniff.model import Direction
    from vmsniff.ovs.plan import MirrorOptions
    from vmsniff.pipeline.run import StopFlag, stop_on_signals
    from vmsniff.resolve import resolve, single_nic

    duration: float | None = kw.pop("duration")
    ttl_s: float = kw.pop("ttl")
    if duration is not None:
        ttl_s = max(ttl_s, duration + 60)  # the rows outlive the run even if renewal fails
    ttl = timedelta(seconds=ttl_s)
    if kw["detach"] and duration:
        raise UsageError("--detach and --duration do not go together; --ttl sets the expiry")
    opts = MirrorOptions(
        to=kw.pop("to"),
        direction=Direction(kw.pop("direction")),
        encap=kw.pop("encap"),
        erspan_version=kw.pop("erspan_version"),
        erspan_index=kw.pop("erspan_index"),
        key=kw.pop("key"),
        snaplen=kw.pop("snaplen"),
        ttl=ttl,
        reason=kw.pop("reason"),
        bridge=kw.pop("bridge"),
    )
    detach, dry_run = kw.pop("detach"), kw.pop("dry_run")
    selectors = {k: kw.pop(k) for k in ("project", "network", "port_id")}
    manifest, shared = kw.pop("manifest"), kw.pop("shared_mirrors")
    via, ovn_nb = kw.pop("via"), kw.pop("ovn_nb")
    if len(vms) != 1 or any(selectors.values()) or manifest or shared or via == "ovn":
        from vmsniff.cli._mirror_many import mirror_many

        mirror_many(env, vms, opts, selectors, kw, manifest=manifest, shared=shared,
                    detach=detach, dry_run=dry_run, duration=duration, as_json=as_json,
                    via=via, ovn_nb=ovn_nb)  # fmt: skip
        return
    vm = vms[0]
    target = resolve(resolve_options_from(vm, kw))
    nic = single_nic(target.nics)
    if not target.ovsdb:
        raise UsageError(
            f"no OVSDB endpoint for host {target.server.host}",
            hint="pass --ovsdb REMOTE or configure the host in config.toml",
        )
    for warning in target.warnings:
        env.warn(warning)
    # From here to the end of teardown, SIGINT, SIGTERM and SIGHUP only set a flag: a signal
    # raising inside the commit or the teardown left whole sessions behind (bench/faults.py).
    # Starting is bounded (5 s transaction, 5 s tunnel wait, 1 s route wait), and the loop
    # below sees the flag within 0.25 s; a second Ctrl-C cannot cut the teardown short.
    flag = StopFlag()
    with stop_on_signals(flag):
        with MirrorSession(target.ovsdb) as session:
            plan, expired = session.prepare(target.server, nic, opts)
            for sid in expired:
                env.info(f"removed {session.removed_why.get(sid, 'expired')} vmsniff session {sid}")
            if dry_run:
                session.detach = True
                if as_json:
                    env.json({**plan.to_dict(), "dry_run": True, "ovs_vsctl": plan.vsctl_command()})
                else:
                    env.out.print(
                        f"would mirror {plan.vm_port} on {plan.bridge} to {plan.remote_ip}"
                    )
                    env.stdout.write(plan.vsctl_command(target.ovsdb) + "\n")
                return
            if flag():
                raise KeyboardInterrupt  # stopped before anything was made
            started = session.start(plan, nic, opts.snaplen, detach=detach)
            for warning in started.warnings:
                env.warn(warning)
            env.info(
                f"mirroring {target.server.name} {nic.mac} ({plan.vm_port} on {plan.bridge}) "
                f"to {plan.remote_ip} over {plan.encap}"
            )
            _started(env, plan, as_json=as_json, detach=detach)
            if detach:
                if as_json:
                    env.json({**plan.to_dict(), "detached": True})
                return
            began = time.monotonic()
            reason = hold_with_progress(env, session, duration, flag)
            packets, bytes_ = session.stats()
            lasted = time.monotonic() - began
        if packets == 0 and lasted < OVS_STATS_INTERVAL_S + 1:
            # ovs-vswitchd writes Mirror statistics every 5 s: a short session may show none yet
            env.info(f"stopped ({reason}); mirror removed; OVS had not counted its packets yet "
                     f"(it updates mirror counters every {OVS_STATS_INTERVAL_S} s)")  # fmt: skip
        else:
            env.info(
                f"stopped ({reason}); mirror removed; {packets} packets, {bytes_} bytes mirrored"
            )
        if as_json:
            env.json({**plan.to_dict(), "stopped": reason, "packets": packets, "bytes": bytes_})


def _started(env: Env, plan: Any, *, as_json: bool, detach: bool) -> None:
    """What a user (or script) needs to receive the session: printed even with -q.

    As text it is data, on stdout. With --json stdout holds exactly one JSON document (at
    the end of a foreground session), so the same lines go to stderr when the session starts.
    """
    keys = ", ".join(f"{d} key {k}" for d, k in plan.keys.items())
    lines = [
        f"session {plan.session}: {keys}",
        f"on {plan.remote_ip} run:  {_receive_command(plan)}",
    ]
    if detach:
        lines.append(f"session {plan.session} expires {plan.expires}")
        lines.append(f"remove it with:  vmsniff cleanup {plan.session}")
    stream = env.stderr if as_json else env.stdout
    stream.write("".join(line + "\n" for line in lines))
    stream.flush()


NB = "OVN Northbound"

hosts_options = [
    click.option(
        "--ovn",
        "ovn",
        is_flag=True,
        help="vmsniff's OVN Northbound sessions (mirror --via ovn) instead of a switch's.",
    ),
    click.option(
        "--ovn-nb",
        metavar="REMOTE",
        help="The OVN Northbound database [env OVN_NB_DB; config [ovn] nb].",
    ),
    click.option(
        "--host",
        "hosts",
        multiple=True,
        metavar="HOST",
        help="This compute host's switch (repeatable; its OVSDB as resolve finds it: "
        "config.toml per-host entry or template).",
    ),  # fmt: skip
    click.option(
        "--all-hosts",
        is_flag=True,
        help="This host and every host config.toml lists (multi-host sessions).",
    ),  # fmt: skip
]


def _with_hosts(func: Any) -> Any:
    for option in reversed(hosts_options):
        func = option(func)
    return func


def _remotes(
    ovsdb: str | None, hosts: tuple[str, ...], all_hosts: bool, ovn: bool, ovn_nb: str | None
) -> dict[str, str]:
    """host -> OVSDB remote of the switches to act on (``--ovsdb`` alone: this host's); with
    ``--ovn``, ``{NB: remote}``."""
    from vmsniff.errors import UsageError
    from vmsniff.resolve.endpoints import DEFAULT_OVSDB

    if ovn or ovn_nb:
        from vmsniff.mirror_many import choose_via

        if hosts or all_hosts:
            raise UsageError("--ovn is the cloud's one Northbound database: no --host there")
        _via, remote = choose_via("ovn", (), ovn_nb)
        assert remote is not None
        return {NB: remote}
    if not (hosts or all_hosts):
        return {"": ovsdb or DEFAULT_OVSDB}
    if ovsdb and ovsdb != os.environ.get("VMSNIFF_OVSDB"):  # this host's from the env: fine
        raise UsageError("--ovsdb names one switch: leave it out with --host/--all-hosts")
    from vmsniff.mirror_many import host_remotes

    return host_remotes(hosts, all_hosts=all_hosts)


@click.command("list")
@ovsdb_option
@_with_hosts
@json_option
@click.pass_obj
def list_command(
    env: Env,
    /,
    ovsdb: str | None,
    ovn: bool,
    ovn_nb: str | None,
    hosts: tuple[str, ...],
    all_hosts: bool,
    as_json: bool,
) -> None:
    """List vmsniff's mirror sessions on this host (dead, expired and orphaned ones marked).

    A session is dead when it was made on this host by a process that no longer runs. With
    --host or --all-hosts, the sessions on those hosts' switches (a multi-VM session has rows
    on each of its hosts).
    """
    from vmsniff.cli._render import sessions_table
    from vmsniff.mirror import list_sessions

    remotes = _remotes(ovsdb, hosts, all_hosts, ovn, ovn_nb)
    if NB in remotes:
        from vmsniff.mirror_ovn import list_nb_sessions

        found = {"": list_nb_sessions(remotes[NB])}
        remotes = {"": remotes[NB]}
    else:
        found = {host: list_sessions(remote) for host, remote in remotes.items()}
    if as_json:
        if list(remotes) == [""]:
            env.json([s.to_dict() for s in found[""]])
        else:
            env.json([{**s.to_dict(), "switch_host": h} for h, ss in found.items() for s in ss])
        return
    for host, sessions in found.items():
        if host:
            env.out.print(f"[bold]{host}[/bold] ({remotes[host]})")
        sessions_table(env, sessions)


@click.command()
@click.argument("sessions", nargs=-1)
@click.option("--vm", metavar="VM", help="Sessions of this VM (name or server id).")
@click.option("--expired", is_flag=True, help="Sessions past their expiry, dead and orphaned ones.")
@click.option("--all", "everything", is_flag=True, help="Every vmsniff session on this host.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed.")
@ovsdb_option
@_with_hosts
@json_option
@click.pass_obj
def cleanup(
    env: Env,
    /,
    sessions: tuple[str, ...],
    vm: str | None,
    expired: bool,
    everything: bool,
    dry_run: bool,
    ovsdb: str | None,
    ovn: bool,
    ovn_nb: str | None,
    hosts: tuple[str, ...],
    all_hosts: bool,
    as_json: bool,
) -> None:
    """Remove vmsniff's mirrors and tunnel ports (never anyone else's), in one transaction.

    Select with SESSION ids (or their first 8 characters), --vm, --expired or --all. With no
    selector it asks on a terminal; elsewhere it needs --all. An id or --vm that matches no
    session exits 3 and removes nothing.
    """
    from vmsniff.errors import UsageError
    from vmsniff.mirror import cleanup as do_cleanup

    remotes = _remotes(ovsdb, hosts, all_hosts, ovn, ovn_nb)
    if not (sessions or vm or expired or everything):
        if not sys.stdin.isatty():
            raise UsageError(
                "cleanup needs a selector: SESSION ids, --vm, --expired or --all",
                hint="not on a terminal, so vmsniff will not ask",
            )
        click.confirm("remove every vmsniff session on this host?", abort=True, err=True)
        everything = True
    reports: dict[str, Any]
    if NB in remotes:
        from vmsniff.mirror_ovn import cleanup_nb

        reports = {NB: cleanup_nb(remotes[NB], sessions=sessions, vm=vm, expired=expired,
                                  everything=everything, dry_run=dry_run)}  # fmt: skip
    elif list(remotes) == [""]:
        reports = {"": do_cleanup(remotes[""], sessions=sessions, vm=vm, expired=expired,
                                  everything=everything, dry_run=dry_run)}  # fmt: skip
    else:
        from vmsniff.mirror_many import cleanup_hosts

        reports = cleanup_hosts(remotes, sessions=sessions, vm=vm, expired=expired,
                                everything=everything, dry_run=dry_run)  # fmt: skip
    restored: list[str] = []
    if (expired or everything) and not dry_run:
        # `snoop --ovs` changes Controller rows rather than making its own: put back those of
        # a snoop that is gone (killed: its bridge would point at a dead relay), or all.
        from vmsniff.snoop.ovs import restore_abandoned

        for host, remote in remotes.items():
            if host != NB:
                restored += restore_abandoned(remote, expired_only=not everything)
    removed = [(h, s) for h, r in reports.items() for s in r.removed]
    kept = sum(r.kept for r in reports.values())
    if as_json:
        env.json(
            {
                "dry_run": dry_run,
                "removed": [{**s.to_dict(), **({"switch_host": h} if h else {})}
                            for h, s in removed],
                "kept": kept,
                "restored_controllers": restored,
            }
        )  # fmt: skip
        return
    for target in restored:
        env.out.print(f"restored controller target {target} (a snoop had redirected it)")
    verb = "would remove" if dry_run else "removed"
    for host, s in removed:
        ports = [] if host == NB else [p["name"] for p in s.ports]  # NB: the ports are OVN's
        what = ", ".join(ports + [m["name"] for m in s.mirrors])
        where = f" on {host}" if host else ""
        env.out.print(f"{verb} session {s.id} ({s.vm}){where}: {what}")
    if not removed and not restored:
        env.info("no vmsniff session matched; nothing removed")
    if kept:
        env.info(f"{kept} other vmsniff session(s) kept")
