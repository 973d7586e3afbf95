"""``vmsniff receive``: decapsulate mirrored GRE/ERSPAN traffic, filter it, write pcap/pcapng.

Parses options, builds the pipeline (:mod:`vmsniff.pipeline`) and renders the stats; no
packet logic lives here.
"""

from __future__ import annotations

import click

from vmsniff.cli._context import Env
from vmsniff.cli._options import (
    frame_options,
    print_options_from,
    printing_options,
    stop_and_file_options,
)
from vmsniff.errors import UsageError, VmsniffError


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-i", "--interface", metavar="IFACE", help="Listen on IFACE only [default: all].")
@click.option(
    "-r",
    "--read",
    "read_file",
    metavar="FILE|-",
    help="Read a pcap/pcapng capture of encapsulated traffic instead of the network.",
)
@click.option(
    "-w",
    "--write",
    "write_file",
    metavar="FILE|-",
    help="Write inner frames here; '-' is stdout; '{key}' in FILE writes one file per session "
    "key ('{nic}': per NIC, with --manifest).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pcap", "pcapng"]),
    help="Output format [default: pcapng with --direction or --manifest, else pcap].",
)
@click.option(
    "--force",
    is_flag=True,
    help="Truncate an existing regular output file (its owner and mode stay); "
    "FIFOs and devices such as /dev/null need no --force. Links are never followed.",
)
@click.option(
    "--from",
    "sources",
    multiple=True,
    metavar="ADDR[/LEN]",
    help="Accept GRE only from these outer source addresses (repeatable).",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    type=click.IntRange(0, 0xFFFFFFFF),
    metavar="K",
    help="Accept only these GRE keys / ERSPAN session ids (repeatable).",
)
@click.option(
    "--direction",
    type=click.Choice(["from-vm", "to-vm", "both"]),
    help="Mark direction by key: 'both' means each K is from-vm and K+1 to-vm.",
)
@click.option(
    "--manifest",
    metavar="FILE",
    help="A multi-VM session's manifest (vmsniff mirror VM... --manifest FILE): every frame is "
    "filed under its VM NIC (pcapng interface c-private/eth0), with its direction; '{nic}' "
    "in -w writes one file per NIC.",
)
@click.option(
    "--strip-vlan",
    "strip_vlan",
    metavar="[ID]",
    is_flag=False,
    flag_value="any",
    default=None,
    help="Remove the outer 802.1Q tag (only tag ID if given) the access port added.",
)
@frame_options(
    "tcpdump filter on the inner frame (or give it as arguments).", "inner frame", 16384, "one ring"
)
@stop_and_file_options
@printing_options
@click.option("--flows", "flows", is_flag=True,
              help="Count the packets into a table of flows, drawn live on a terminal and "
              "printed at the end (with --json: in the document); see vmsniff flows.")  # fmt: skip
@click.option(
    "-Z",
    "--relinquish-privileges",
    "user",
    metavar="USER",
    help="Drop privileges to USER after opening the sockets.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the final stats as one JSON document on stdout (stderr when -w -); "
    "--print lines then go to stderr.",
)
@click.option("-D", "--list-interfaces", "list_only", is_flag=True,
              help="List the interfaces receive can listen on, then exit.")  # fmt: skip
@click.argument("expression", nargs=-1)
@click.pass_obj
def receive(  # one parameter per option, as click passes them
    env: Env,
    /,
    interface: str | None,
    read_file: str | None,
    write_file: str | None,
    fmt: str | None,
    force: bool,
    sources: tuple[str, ...],
    keys: tuple[int, ...],
    direction: str | None,
    manifest: str | None,
    strip_vlan: str | None,
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
    user: str | None,
    as_json: bool,
    list_only: bool,
    expression: tuple[str, ...],
) -> None:
    """Decapsulate mirrored GRE/ERSPAN traffic and write the VM's own frames.

    Run it on the node a mirror sends to (`vmsniff mirror --to`). Frames are taken out of their
    GRE (RFC 2784/2890) or ERSPAN I/II/III envelope, optionally untagged, filtered with
    tcpdump's syntax on the inner frame, and written as pcap or pcapng. Stats go to stderr at
    the end (Ctrl-C, SIGTERM, -c, --duration). Live capture needs CAP_NET_RAW.
    """
    # Imported before -Z, as everything the run's end needs (see _errors.py).
    from vmsniff.cli._render_receive import (
        flows_extra,
        progress,
        render_failed_run,
        render_stats,
    )
    from vmsniff.model import Direction
    from vmsniff.pipeline.run import StopFlag, stop_on_signals
    from vmsniff.pipeline.sinks import OutputOptions, Rotation, flow_table
    from vmsniff.receive import ReceiveOptions, open_receive, parse_strip_vlan, read_manifest

    if list_only:
        from vmsniff.capture.listing import interfaces

        found = interfaces()
        if as_json:
            env.json({"interfaces": [c.to_dict() for c in found]})
            return
        for i, c in enumerate(found, 1):
            env.stdout.write(f"{i}.{c.name} [{c.state}{', ' + c.detail if c.detail else ''}]\n")
        return
    joined = " ".join(expression).strip()
    if filter_opt and joined:
        raise UsageError("give the filter either with -f or as arguments, not both")
    strip, vlan_id = parse_strip_vlan(strip_vlan)
    # With --json, stdout holds the one JSON document: --print lines go to stderr, as
    # tcpdump's own messages do.
    # Without -w the packets are printed, as tcpdump does; --print prints them beside -w.
    printing = print_ or (write_file is None and not flows)
    print_to = (env.stderr if as_json else env.stdout) if printing else None
    rotation = Rotation(size=int(file_size * 1_000_000) if file_size else None,
                        seconds=rotate_seconds, files=file_count)  # fmt: skip
    output = OutputOptions(write=write_file, print_to=print_to, fmt=fmt, force=force,
                           rotation=rotation, packet_buffered=packet_buffered,
                           print_options=print_options_from(link_header, hex_dump, hex_ascii,
                                                            ascii_dump, time_format,
                                                            max(0, env.verbosity),
                                                            absolute_seq),
                           json_lines=as_json, flows=flows)  # fmt: skip
    opts = ReceiveOptions(
        output, interface=interface, read_file=read_file, keys=keys,
        direction=None if direction is None else Direction(direction),
        strip_vlan=strip, vlan_id=vlan_id, sources=sources, expression=filter_opt or joined,
        snaplen=snaplen, buffer_kib=buffer_size, user=user,
        manifest=read_manifest(manifest) if manifest else None,
    )  # fmt: skip
    flag = StopFlag()
    # Signals are caught from the start: one during the wait for a FIFO's reader ends it.
    with stop_on_signals(flag), open_receive(opts, stop=flag) as rx:
        try:
            with progress(env, flow_table(rx.sink), as_json=as_json,
                          lines_on_stdout=print_to is env.stdout) as on_tick:  # fmt: skip
                stats = rx.run(count=count, duration=duration, stop=flag, on_tick=on_tick)
        except VmsniffError:
            # Disk full, an I/O error, a rotation file refused: the counts so far, then the
            # error (exit 11 for the disk).
            render_failed_run(env, rx.stats)
            raise
        files = rx.files
        table = flow_table(rx.sink)
        damage = rx.damage
    if damage:
        env.warn(f"{read_file}: {damage}; the records before it were processed")
    extra = flows_extra(env, table, as_json)
    render_stats(env, stats, as_json=as_json, json_to_stderr=write_file == "-", files=files,
                 extra=extra)  # fmt: skip
