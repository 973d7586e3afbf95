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
    print_options_from,
    printing_options,
    resolve_options,
    resolve_options_from,
    stop_and_file_options,
)
from vmsniff.errors import UsageError, VmsniffError

#: The counters capture reports (receive's names; there is nothing to decapsulate here).
FIELDS = ("received", "filtered_out", "written", "kernel_dropped")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("vm", required=False)
@click.option("-D", "--list-interfaces", "list_only", is_flag=True,
              help="List the VMs' NICs that can be captured on this host, then exit.")  # fmt: skip
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
@printing_options
@click.option("--flows", "flows", is_flag=True,
              help="Count the packets into a table of flows, drawn live on a terminal and "
              "printed at the end (with --json: in the document); see vmsniff flows.")  # fmt: skip
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
def capture(  # one parameter per option; the shared resolve group stays **resolve
    env: Env,
    /,
    vm: str | None,
    list_only: bool,
    at: str | None,
    write_file: str | None,
    fmt: str,
    force: bool,
    direction: str,
    filter_opt: str | None,
    snaplen: int,
    buffer_size: int,
    count: int | None,
    duration: float | None,
    file_size: float | None,
    rotate_seconds: int | None,
    file_count: int | None,
    packet_buffered: bool,
    print_: bool,
    link_header: bool,
    hex_dump: int,
    hex_ascii: int,
    ascii_dump: bool,
    absolute_seq: bool,
    time_format: int,
    line_buffered: bool,
    numeric: int,
    flows: bool,
    ttl: float,
    reason: str | None,
    bridge: str | None,
    as_json: bool,
    expression: tuple[str, ...],
    **resolve: Any,
) -> None:
    """Capture VM's traffic on this host, from its tap or a local OVS mirror.

    The VM must run on this host (`vmsniff mirror` sends a remote VM's traffic here). --at
    tap reads the VM's tap device; the tcpdump filter is compiled by libpcap and attached in
    the kernel; what the VM sends is from-vm, what it receives to-vm (pcapng epb_flags).
    --at ovs mirrors the NIC's OVS port into vmsniff-owned internal ports (for vhost-user
    NICs, or the switch's view), removed at the end like `vmsniff mirror`'s rows. --nic all
    writes every NIC into one pcapng, one interface per NIC. Stats go to stderr at the end
    (Ctrl-C, SIGTERM, SIGHUP, -c, --duration). Needs CAP_NET_RAW (and root for --at ovs).
    """
    from datetime import timedelta

    from vmsniff.capture import CaptureOptions
    from vmsniff.capture.session import open_capture_run, plan_capture
    from vmsniff.cli._render_receive import (
        flows_extra,
        progress,
        render_failed_run,
        render_stats,
    )
    from vmsniff.model import Direction
    from vmsniff.pipeline.run import StopFlag, stop_on_signals
    from vmsniff.pipeline.sinks import OutputOptions, Rotation, flow_table

    if list_only:
        _list(env, resolve.get("libvirt"), as_json)
        return
    if vm is None:
        raise UsageError("which VM? vmsniff capture VM [FILTER] (-D lists them)")
    joined = " ".join(expression).strip()
    if filter_opt and joined:
        raise UsageError("give the filter either with -f or as arguments, not both")
    rotation = Rotation(size=int(file_size * 1_000_000) if file_size else None,
                        seconds=rotate_seconds, files=file_count)  # fmt: skip
    # With --json, stdout holds the one JSON document: --print lines go to stderr.
    # Without -w the packets are printed, as tcpdump does; --print prints them beside -w.
    printing = print_ or (write_file is None and not flows)
    print_to = (env.stderr if as_json else env.stdout) if printing else None
    output = OutputOptions(write=write_file, print_to=print_to, fmt=fmt, force=force,
                           rotation=rotation, packet_buffered=packet_buffered,
                           print_options=print_options_from(link_header, hex_dump, hex_ascii,
                                                            ascii_dump, time_format,
                                                            max(0, env.verbosity),
                                                            absolute_seq),
                           json_lines=as_json, flows=flows)  # fmt: skip
    if duration is not None:
        ttl = max(ttl, duration + 60)  # the rows must outlive the capture they serve
    copts = CaptureOptions(
        at=at, direction=Direction(direction), filter=filter_opt or joined, snaplen=snaplen,
        ttl=timedelta(seconds=ttl), reason=reason, bridge=bridge, buffer_kib=buffer_size,
    )  # fmt: skip
    all_nics = (resolve.get("nic") or "").lower() == "all"
    planned = plan_capture(resolve_options_from(vm, resolve), copts, all_nics=all_nics)
    for warning in planned.target.warnings:
        env.warn(warning)
    if fmt == "pcap" and (len(planned.points) > 1 or write_file == "-"):
        env.warn("pcap keeps neither the direction nor which NIC a frame came from; use pcapng")
    flag = StopFlag()
    with stop_on_signals(flag), open_capture_run(planned, copts, output, stop=flag,
                                                 duration=duration) as run:  # fmt: skip
        for sid in run.cap.removed_expired:
            env.info(f"removed expired vmsniff session {sid}")
        at_names = "/".join(sorted({p.at for p in planned.points}))
        env.info(f"capturing {planned.target.server.name} ({at_names}) on "
                 f"{', '.join(run.cap.devices)}")  # fmt: skip
        try:
            with progress(
                env,
                flow_table(run.sink),
                as_json=as_json,
                lines_on_stdout=print_to is env.stdout,
                fields=FIELDS,
            ) as on_tick:
                stats = run.run(count=count, on_tick=on_tick)
        except VmsniffError:
            # Disk full, an I/O error, a rotation file refused: the counts so far, then the
            # error (exit 11 for the disk); leaving the run removes the --at ovs rows.
            render_failed_run(env, run.stats, FIELDS)
            raise
        sessions = [plan.session for plan in run.cap.sessions]
        devices_of = run.cap.devices_of
        files = run.files
        table = flow_table(run.sink)
    if sessions:
        env.info(f"removed the capture's mirror rows (session {', '.join(sessions)})")
    extra: dict[str, object] = {
        "vm": planned.target.server.name,
        "nics": [
            {"mac": p.nic.mac, "interface": p.name, "at": p.at, "devices": devices_of[p.name]}
            for p in planned.points
        ],
        "sessions": sessions,
    }
    extra.update(flows_extra(env, table, as_json))
    render_stats(env, stats, as_json=as_json, json_to_stderr=write_file == "-", files=files,
                 fields=FIELDS, extra=extra)  # fmt: skip


# --nic is shared with every resolving command; capture also takes "all".
for _param in capture.params:
    if _param.name == "nic" and isinstance(_param, click.Option):
        _param.metavar = "MAC|PORT|NET|all"
        _param.help = "One NIC (MAC, Neutron port id, network), or 'all' into one pcapng."


def _list(env: Env, libvirt_flag: str | None, as_json: bool) -> None:
    """-D: the VMs' NICs libvirt runs on this host."""
    from vmsniff.capture.listing import vm_nics
    from vmsniff.resolve.endpoints import endpoints_for

    uri = endpoints_for(None, libvirt_flag=libvirt_flag).libvirt
    assert uri is not None  # this host always has one (a default)
    found = vm_nics(uri)
    if as_json:
        env.json({"nics": [c.to_dict() for c in found]})
        return
    for i, c in enumerate(found, 1):
        env.stdout.write(f"{i}.{c.name} ({c.detail}) [{c.state}]\n")
