"""``vmsniff mirror VM VM…``: the rendering of a multi-VM, multi-host session.

The work is :mod:`vmsniff.mirror_many`'s; this module writes the manifest file, prints what the
receiving host must run, holds the session and says how it ended.
"""

from __future__ import annotations

import os
import time
from typing import Any

from vmsniff.cli._context import Env
from vmsniff.cli._mirror_hold import OVS_STATS_INTERVAL_S, hold_with_progress
from vmsniff.cli._options import resolve_options_from
from vmsniff.errors import FileError, UsageError


def _write_manifest(path: str, text: str) -> None:
    """Create ``path`` (never an existing file, never through a link), mode 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(
            f"--manifest {path} exists (vmsniff never overwrites it nor follows a link there)",
            hint="give another --manifest path, or remove the old file",
        ) from None
    except OSError as exc:
        raise FileError(f"cannot create --manifest {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def mirror_many(
    env: Env,
    vms: tuple[str, ...],
    opts: Any,
    selectors: dict[str, str | None],
    kw: dict[str, Any],
    *,
    manifest: str | None,
    shared: bool | None,
    detach: bool,
    dry_run: bool,
    duration: float | None,
    as_json: bool,
    via: str = "auto",
    ovn_nb: str | None = None,
) -> None:
    """Resolve, plan, start, hold and stop one session over several VMs and hosts."""
    from vmsniff.mirror_many import Selection, SpreadSession, choose_via, remotes_of, select_members
    from vmsniff.pipeline.run import StopFlag, stop_on_signals

    base = resolve_options_from("", kw)
    selection = Selection(vms=vms, host=base.host, **selectors)
    members, remotes, warnings = select_members(selection, base)
    for warning in warnings:
        env.warn(warning)
    via, nb_remote = choose_via(via, members, ovn_nb)
    flag = StopFlag()
    made_manifest: str | None = None
    session: Any
    if via == "ovn":
        from vmsniff.mirror_ovn import NbSession

        assert nb_remote is not None
        session = NbSession(nb_remote, chassis=remotes_of(members, remotes))
    else:
        session = SpreadSession(remotes_of(members, remotes))
    with stop_on_signals(flag):
        with session as spread:
            plan = spread.prepare(members, opts, shared=shared)
            removed_by_host = spread.removed if via == "ovs" else {"OVN Northbound": spread.removed}
            for host, removed in removed_by_host.items():
                for sid in removed:
                    env.info(f"removed expired vmsniff session {sid} on {host}")
            path = manifest or f"session-{plan.session[:8]}.json"
            if dry_run:
                spread.detach = True
                if via == "ovn":
                    command = plan.ovn_nbctl_command(nb_remote)
                    if as_json:
                        env.json({**plan.to_dict(), "dry_run": True, "ovn_nbctl": command})
                    else:
                        env.out.print(f"would create {len(plan.mirrors)} OVN Northbound mirrors:")
                        env.stdout.write(command + "\n")
                    return
                if as_json:
                    env.json({**plan.to_dict(), "dry_run": True,
                              "ovs_vsctl": {h: p.vsctl_command(remotes[h])
                                            for h, p in plan.plans.items()}})  # fmt: skip
                else:
                    for host, host_plan in plan.plans.items():
                        env.out.print(f"would mirror on {host} ({len(host_plan.mirrors)} mirrors):")
                        env.stdout.write(host_plan.vsctl_command(remotes[host]) + "\n")
                return
            if flag():
                raise KeyboardInterrupt
            _write_manifest(path, plan.manifest.to_json())
            made_manifest = path
            try:
                spread.start(plan, members, opts.snaplen, detach=detach, stopped=flag)
            except BaseException:
                os.unlink(path)  # ours, just made: the session it describes does not exist
                raise
            _started(env, plan, path, as_json=as_json, detach=detach)
            if detach:
                if as_json:
                    env.json({**plan.to_dict(), "manifest_file": made_manifest, "detached": True})
                return
            began = time.monotonic()
            reason = hold_with_progress(env, spread, duration, flag)
            packets, bytes_ = spread.stats()
            lasted = time.monotonic() - began
        hosts = len(plan.manifest.hosts)
        removed = (
            "OVN Northbound mirrors removed (OVN removes the chassis ports and mirrors itself)"
            if via == "ovn"
            else f"mirrors removed on {hosts} hosts"
        )
        if packets == 0 and lasted < OVS_STATS_INTERVAL_S + 1:
            env.info(f"stopped ({reason}); {removed}; OVS had not counted their packets yet "
                     f"(it updates mirror counters every {OVS_STATS_INTERVAL_S} s)")  # fmt: skip
        else:
            env.info(f"stopped ({reason}); {removed}; {packets} packets, {bytes_} bytes "
                     "mirrored")  # fmt: skip
        if as_json:
            env.json({**plan.to_dict(), "manifest_file": made_manifest, "stopped": reason,
                      "packets": packets, "bytes": bytes_})  # fmt: skip


def _started(env: Env, plan: Any, path: str, *, as_json: bool, detach: bool) -> None:
    """The session id, what runs where, and the receiving host's command (even with -q)."""
    m = plan.manifest
    lines = [f"session {plan.session}: {len(m.nics)} NICs of "
             f"{len({n.vm_id for n in m.nics})} VMs on {len(m.hosts)} hosts"]  # fmt: skip
    for host in m.hosts:
        nics = [n.name for n in m.nics if n.host == host]
        streams = [s for s in m.streams if s.host == host]
        how = "shared mirrors" if plan.shared[host] else f"{len(streams)} mirrors"
        keys = sorted(s.key for s in streams)
        lines.append(f"  {host}: {', '.join(nics)} ({how}, keys {keys[0]}-{keys[-1]})")
    if m.via == "ovn":
        lines.append("  as OVN Northbound mirrors (they follow the ports if the VMs move)")
    lines.append(f"manifest: {path}")
    lines.append(f"on {m.to} run:  {m.receive_command(os.path.basename(path))}")
    if detach:
        lines.append(f"session {plan.session} expires {m.expires}")
        lines.append(f"remove it with:  vmsniff cleanup {plan.session}  (on each host)")
    stream = env.stderr if as_json else env.stdout
    stream.write("".join(line + "\n" for line in lines))
    stream.flush()
