"""``vmsniff capture``: a local VM's traffic from its tap (or a local OVS mirror) to a file.

Parses options (receive's names and tcpdump's letters), resolves the VM, and hands over to
:mod:`vmsniff.capture` and receive's drive loop, sinks and stats rendering.
"""

from __future__ import annotations

from typing import Any

import click

from vmsniff.cli._context import Env
from vmsniff.cli._options import (
    DURATION,
    frame_options,
    resolve_options,
    resolve_options_from,
    stop_and_file_options,
)
from vmsniff.errors import UsageError, VmsniffError

#: The counters capture reports (receive's names; there is nothing to decapsulate here).
FIELDS = ("received", "filtered_out", "written", "kernel_dropped")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("vm")
@click.option(
    "--at",
    type=click.Choice(["tap", "ovs"]),
    help="Where to read: the VM's tap, or a local OVS mirror of its port "
    "[default: tap where it exists, else ovs].",
)
@click.option(
    "-w",
    "--write",
    "write_file",
    metavar="FILE|-",
    help="Write the frames here; '-' is stdout.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pcap", "pcapng"]),
    default="pcapng",
    show_default=True,
    help="Output format (pcap has no direction marks and no per-NIC interfaces).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Truncate an existing regular output file (its owner and mode stay); "
    "FIFOs and devices such as /dev/null need no --force. Links are never followed.",
)
@click.option(
    "--direction",
    type=click.Choice(["both", "from-vm", "to-vm"]),
    default="both",
    show_default=True,
    help="From the VM's point of view.",
)
@frame_options(
    "tcpdump filter, run in the kernel (or give it as arguments).",
    "frame",
    32768,
    "shared by the rings of several NICs or directions",
)
@stop_and_file_options
@click.option(
    "--ttl",
    type=DURATION,
    default="1h",
    show_default=True,
    metavar="T",
    help="--at ovs: expiry of the mirror rows (at least --duration).",
)
@click.option("--reason", metavar="TEXT", help="--at ovs: recorded on the rows.")
@click.option("--bridge", metavar="BR", help="--at ovs: bridge to mirror on [the NIC's].")
@resolve_options
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the final stats as one JSON document on stdout (stderr when -w -); "
    "--print lines then go to stderr.",
)
@click.argument("expression", nargs=-1)
@click.pass_obj
def capture(env: Env, /, vm: str, **opts: Any) -> None:  # fmt: skip
    """Capture VM's traffic on this host, from its tap or a local OVS mirror.

    The VM must run on this host (`vmsniff mirror` sends a remote VM's traffic here). --at
    tap reads the VM's tap device; the tcpdump filter is compiled by libpcap and attached in
    the kernel; what the VM sends is from-vm, what it receives to-vm (pcapng epb_flags).
    --at ovs mirrors the NIC's OVS port into vmsniff-owned internal ports (for vhost-user
    NICs, or the switch's view), removed at the end like `vmsniff mirror`'s rows. --nic all
    writes every NIC into one pcapng, one interface per NIC. Stats go to stderr at the end
    (Ctrl-C, SIGTERM, SIGHUP, -c, --duration). Needs CAP_NET_RAW (and root for --at ovs).
    """
    from dataclasses import replace
    from datetime import timedelta

    from vmsniff.capture import CaptureOptions, plan_points, require_local
    from vmsniff.capture.live import (
        capture_stage,
        compile_filter,
        open_capture,
        require_packet_sockets,
    )
    from vmsniff.capture.netdev import link_exists
    from vmsniff.cli._render_receive import render_failed_run, render_stats
    from vmsniff.model import Direction
    from vmsniff.pipeline.run import StopFlag, drive, stop_on_signals
    from vmsniff.pipeline.sinks import Rotation, open_sink
    from vmsniff.resolve import resolve, single_nic
    from vmsniff.resolve.endpoints import local_host

    expression = " ".join(opts.pop("expression")).strip()
    filter_opt = opts.pop("filter_opt")
    if filter_opt and expression:
        raise UsageError("give the filter either with -f or as arguments, not both")
    expression = filter_opt or expression
    write, print_, as_json = opts.pop("write_file"), opts.pop("print_"), opts.pop("as_json")
    if write is None and not print_:
        raise UsageError("nothing to do: give -w FILE, -w - or --print")
    if write == "-" and print_:
        raise UsageError("-w - and --print both want stdout; pick one")
    duration: float | None = opts.pop("duration")
    ttl = opts.pop("ttl")
    if duration is not None:
        ttl = max(ttl, duration + 60)  # the rows must outlive the capture they serve
    copts = CaptureOptions(
        at=opts.pop("at"),
        direction=Direction(opts.pop("direction")),
        filter=expression,
        snaplen=opts["snaplen"],
        ttl=timedelta(seconds=ttl),
        reason=opts.pop("reason"),
        bridge=opts.pop("bridge"),
        buffer_kib=opts.pop("buffer_size"),
    )
    compile_filter(expression)  # a bad filter fails here, before anything is resolved or made
    require_packet_sockets()  # and so does a missing CAP_NET_RAW
    all_nics = (opts.get("nic") or "").lower() == "all"
    if all_nics:
        opts["nic"] = None
    target = resolve(resolve_options_from(vm, opts))
    require_local(target, local_host())
    if not all_nics:
        target = replace(target, nics=(single_nic(target.nics),))
    for warning in target.warnings:
        env.warn(warning)
    points = plan_points(target, copts, me=local_host(), device_exists=link_exists)
    if opts["fmt"] == "pcap" and (len(points) > 1 or write == "-"):
        env.warn("pcap keeps neither the direction nor which NIC a frame came from; use pcapng")
    flag = StopFlag()
    with stop_on_signals(flag), open_capture(target, points, copts, stop=flag) as cap:
        for sid in cap.removed_expired:
            env.info(f"removed expired vmsniff session {sid}")
        # Opened once the points are: a refused point leaves no file. A FIFO's reader is
        # waited for with the rows renewed and watched, and a signal ends the wait.
        sink = open_sink(
            write, opts["fmt"], opts["snaplen"], application="vmsniff capture",
            rotation=Rotation(size=int(opts["file_size"] * 1_000_000) if opts["file_size"]
                              else None, seconds=opts["rotate_seconds"],
                              files=opts["file_count"]),
            flush_each=opts["packet_buffered"], force=opts["force"],
            print_to=(env.stderr if as_json else env.stdout) if print_ else None, stop=flag,
        )  # fmt: skip
        try:
            import time

            if duration is not None:
                cap.source.deadline = time.monotonic() + duration
            at = "/".join(sorted({p.at for p in points}))
            env.info(f"capturing {target.server.name} ({at}) on {', '.join(cap.devices)}")
            on_tick = None
            if env.stderr.isatty() and not as_json and env.verbosity >= 0:
                from vmsniff.cli._render_receive import live_line

                on_tick = live_line(env, FIELDS)
            stage = capture_stage(cap, sink, copts.direction)
            try:
                stats = drive(cap.source, stage, sink, count=opts["count"],
                              stop=cap.source.drained_flag, on_tick=on_tick)  # fmt: skip
            except VmsniffError:
                # Disk full, an I/O error, a rotation file refused: the counts so far, then
                # the error (exit 11 for the disk);
                # leaving open_capture's block removes the --at ovs rows on the way out.
                render_failed_run(env, cap.stage.stats, FIELDS)
                raise
            finally:
                stage.close()
        finally:
            sink.close()
        sessions = [plan.session for plan in cap.sessions]
        devices_of = cap.devices_of
    if sessions:
        env.info(f"removed the capture's mirror rows (session {', '.join(sessions)})")
    from vmsniff.pipeline.sinks import written_files

    extra = {
        "vm": target.server.name,
        "nics": [
            {"mac": p.nic.mac, "interface": p.name, "at": p.at, "devices": devices_of[p.name]}
            for p in points
        ],
        "sessions": sessions,
    }
    render_stats(
        env, stats, as_json=as_json, json_to_stderr=write == "-", files=written_files(sink),
        fields=FIELDS, extra=extra,
    )  # fmt: skip


# --nic is shared with every resolving command; capture also takes "all".
for _param in capture.params:
    if _param.name == "nic" and isinstance(_param, click.Option):
        _param.metavar = "MAC|PORT|NET|all"
        _param.help = "One NIC (MAC, Neutron port id, network), or 'all' into one pcapng."
