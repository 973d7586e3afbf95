"""``vmsniff receive``: decapsulate mirrored GRE/ERSPAN traffic, filter it, write pcap/pcapng.

Parses options, builds the pipeline (:mod:`vmsniff.pipeline`) and renders the stats; no
packet logic lives here.
"""

from __future__ import annotations

from typing import Any

import click

from vmsniff.cli._context import Env
from vmsniff.cli._options import frame_options, stop_and_file_options
from vmsniff.errors import UsageError, VmsniffError


def _strip_vlan(value: str | None) -> tuple[bool, int | None]:
    if value is None:
        return False, None
    if value in ("", "any"):
        return True, None
    try:
        vid = int(value)
    except ValueError:
        raise UsageError(f"--strip-vlan {value!r}: a VLAN id (0-4095) or 'any'") from None
    if not 0 <= vid <= 4095:
        raise UsageError(f"--strip-vlan {value}: a VLAN id is 0-4095")
    return True, vid


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
    help="Write inner frames here; '-' is stdout; '{key}' in FILE writes one file per session key.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pcap", "pcapng"]),
    help="Output format [default: pcapng with --direction, else pcap].",
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
@click.argument("expression", nargs=-1)
@click.pass_obj
def receive(env: Env, /, **opts: Any) -> None:  # fmt: skip
    """Decapsulate mirrored GRE/ERSPAN traffic and write the VM's own frames.

    Run it on the node a mirror sends to (`vmsniff mirror --to`). Frames are taken out of their
    GRE (RFC 2784/2890) or ERSPAN I/II/III envelope, optionally untagged, filtered with
    tcpdump's syntax on the inner frame, and written as pcap or pcapng. Stats go to stderr at
    the end (Ctrl-C, SIGTERM, -c, --duration). Live capture needs CAP_NET_RAW.
    """
    # Imported before -Z, as everything the run's end needs (see _errors.py).
    from vmsniff.cli._render_receive import render_failed_run, render_stats
    from vmsniff.pipeline.core import Pipeline, PipelineConfig, parse_sources
    from vmsniff.pipeline.run import StopFlag, drive, stop_on_signals

    expression = " ".join(opts["expression"]).strip()
    if opts["filter_opt"] and expression:
        raise UsageError("give the filter either with -f or as arguments, not both")
    expression = opts["filter_opt"] or expression
    write, print_, as_json = opts["write_file"], opts["print_"], opts["as_json"]
    if write is None and not print_:
        raise UsageError("nothing to do: give -w FILE, -w - or --print")
    if write == "-" and print_:
        raise UsageError("-w - and --print both want stdout; pick one")
    if opts["read_file"] and (opts["interface"] or opts["user"]):
        raise UsageError("-r reads a file: -i and -Z do not apply")
    strip, vlan_id = _strip_vlan(opts["strip_vlan"])
    in_filter = None
    if expression:
        from vmsniff.filter import InnerFilter

        in_filter = InnerFilter(expression)  # a bad filter fails here, before any capture
    config = PipelineConfig(
        keys=tuple(opts["keys"]),
        direction=opts["direction"],
        strip_vlan=strip,
        vlan_id=vlan_id,
        filter=in_filter,
        snaplen=opts["snaplen"],
        sources=parse_sources(opts["sources"]),
    )
    fmt = opts["fmt"] or ("pcapng" if config.marks_direction else "pcap")
    source: Any
    # The fast path (whole ring blocks, numpy) writes one plain file: not for --print, {key}
    # templates or rotation, which take the packet-by-packet path.
    blocks = not (print_ or opts["file_size"] or opts["rotate_seconds"] or "{key}" in write)
    if opts["read_file"]:
        from vmsniff.pipeline.sources import FileSource

        source = FileSource(opts["read_file"])
    else:
        from vmsniff.pipeline.sources import LiveSource

        inner = None
        if expression:
            from vmsniff.filter import bpf_instructions
            from vmsniff.formats.capture import LINKTYPE_ETHERNET

            inner = bpf_instructions(expression, LINKTYPE_ETHERNET)
        source = LiveSource(
            opts["interface"],
            [str(n) for n in config.sources],
            inner=inner,
            strip_vlan=strip,
            vlan_id=vlan_id,
            blocks=blocks,
            block_count=max(1, round(opts["buffer_size"] / 1024)),
        )
    flag = StopFlag()
    fast = None
    if getattr(source, "blocks", False):
        # Before -Z: after it the interpreter may no longer read numpy's files (or the stdlib).
        from vmsniff.pipeline.fastpath import FastPath
    try:
        if opts["user"]:
            from vmsniff.pipeline.sources import drop_privileges

            drop_privileges(opts["user"])
        identity = getattr(source, "identity", None)
        keep = frozenset() if identity is None else frozenset({identity})
        sink = _sink(env, opts, fmt, write, print_, as_json, keep)
        pipeline = Pipeline(config)
        if getattr(source, "blocks", False):
            fast = FastPath(
                source.ring.memory,
                source.ring.block_size,
                pipeline,
                sink.encoder,
                kernel_filtered=source.kernel_filtered,
            )
        on_tick = None
        if env.stderr.isatty() and not as_json and env.verbosity >= 0:
            from vmsniff.cli._render_receive import live_line

            on_tick = live_line(env)
        try:
            with stop_on_signals(flag):
                stats = drive(
                    source,
                    pipeline,
                    sink,
                    fast=fast,
                    count=opts["count"],
                    duration=opts["duration"],
                    stop=flag,
                    on_tick=on_tick,
                )
        except VmsniffError:
            # Disk full, an I/O error, a rotation file refused: the counts so far, then the
            # error (exit 11 for the disk).
            render_failed_run(env, pipeline.stats)
            raise
        finally:
            sink.close()
    finally:
        if fast is not None:
            fast.close()
        source.close()
    damage = getattr(source, "damage", None)
    if damage:
        env.warn(f"{opts['read_file']}: {damage}; the records before it were processed")
    from vmsniff.pipeline.sinks import written_files

    render_stats(
        env, stats, as_json=as_json, json_to_stderr=write == "-", files=written_files(sink)
    )


def _sink(
    env: Env,
    opts: dict[str, Any],
    fmt: str,
    write: str | None,
    print_: bool,
    as_json: bool,
    keep: frozenset[tuple[int, int]] = frozenset(),
) -> Any:
    from vmsniff.pipeline.sinks import FileSink, KeyedSink, PrintSink, Rotation, Sink, TeeSink

    rotation = Rotation(
        size=int(opts["file_size"] * 1_000_000) if opts["file_size"] else None,
        seconds=opts["rotate_seconds"],
        files=opts["file_count"],
    )
    sinks: list[Sink] = []
    if write is not None:

        def factory(path: str) -> FileSink:
            return FileSink(
                path,
                fmt,
                opts["snaplen"],
                rotation=rotation,
                flush_each=opts["packet_buffered"],
                force=opts["force"],
                keep=keep,
            )

        if "{key}" in write:
            sinks.append(KeyedSink(write, factory))
        else:
            sinks.append(factory(write))
    elif rotation.active:
        raise UsageError("-C/-G/-W need -w FILE")
    if print_:
        # With --json, stdout holds the one JSON document: the packet lines go to stderr,
        # as tcpdump's own messages do.
        sinks.append(PrintSink(env.stderr if as_json else env.stdout, flush_each=True))
    return sinks[0] if len(sinks) == 1 else TeeSink(sinks)
