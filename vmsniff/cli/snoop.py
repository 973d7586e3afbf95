"""``vmsniff snoop``: relay OpenFlow (or any TCP control channel) and record it to pcap.

Parses options and hands over to :mod:`vmsniff.snoop` (listeners, TLS, the loop, ``--ovs``);
no relay or packet logic lives here.
"""

from __future__ import annotations

from typing import Any

import click

from vmsniff.cli._context import Env
from vmsniff.cli._options import DURATION, stop_and_file_options
from vmsniff.errors import UsageError


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--listen",
    metavar="[ADDR:]PORT",
    help="Where switches connect (ADDR defaults to 127.0.0.1; [::]:PORT for every address).",
)
@click.option("--upstream", metavar="HOST:PORT", help="The controller to relay to.")
@click.option(
    "--ovs",
    "bridge",
    metavar="BRIDGE",
    help="Point BRIDGE's controllers through the relay; restored on exit.",
)
@click.option(
    "--ovsdb",
    envvar="VMSNIFF_OVSDB",
    metavar="REMOTE",
    help="--ovs: the switch's OVSDB [env VMSNIFF_OVSDB; default "
    "unix:/var/run/openvswitch/db.sock].",
)
@click.option(
    "--ttl",
    type=DURATION,
    default="1h",
    show_default=True,
    metavar="T",
    help="--ovs: expiry marked on changed controllers (cleanup after a crash).",
)
@click.option(
    "-w",
    "--write",
    "write_file",
    metavar="FILE|-",
    help="Write the synthesized capture here; '-' is stdout.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pcap", "pcapng"]),
    default="pcap",
    show_default=True,
    help="Output format.",
)
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--tls-cert", metavar="PEM", help="TLS towards switches: our certificate.")
@click.option("--tls-key", metavar="PEM", help="TLS towards switches: its private key.")
@click.option("--tls-ca", metavar="PEM", help="TLS towards switches: CA of their certificates.")
@click.option("--upstream-tls", is_flag=True, help="Connect to the controller with TLS.")
@click.option("--upstream-cert", metavar="PEM", help="--upstream-tls: our cert [--tls-cert].")
@click.option("--upstream-key", metavar="PEM", help="--upstream-tls: its private key [--tls-key].")
@click.option(
    "--upstream-ca", metavar="PEM", help="--upstream-tls: CA of the controller's [--tls-ca]."
)
@click.option(
    "--mtu",
    type=click.IntRange(576, 65535),
    default=65535,
    show_default=True,
    help="Largest IP packet in the capture (TCP segments are split to fit): "
    "loopback's by default, 1500 for an Ethernet look.",
)
@stop_and_file_options
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="--print as JSON lines; final stats as JSON (stdout; stderr when -w -).",
)
@click.pass_obj
def snoop(env: Env, /, **opts: Any) -> None:  # fmt: skip
    """Relay a switch's controller connections and record them to pcap.

    Every connection to --listen is relayed byte for byte to --upstream, and written to one
    capture as a TCP conversation between the switch's and the controller's addresses, with
    synthesized Ethernet/IP/TCP headers that Wireshark reads as the wire. With certificates
    (ovs-pki's work unchanged) TLS is terminated on both sides, so the capture is plaintext.
    --ovs BRIDGE does the plumbing: each controller target of the bridge goes through the
    relay while it runs and is restored on exit (and by `vmsniff cleanup` after a crash).
    --print shows one line per OpenFlow message (or JSON-RPC method for an OVSDB channel).
    """
    from vmsniff.pipeline.run import StopFlag, stop_on_signals
    from vmsniff.snoop.session import message_lines, serve

    write, print_, as_json = opts["write_file"], opts["print_"], opts["as_json"]
    print_ = print_ or write is None  # without -w the messages are printed, as tcpdump would
    if write == "-" and print_:
        raise UsageError("-w - and --print both want stdout; pick one")
    accept_tls, connect_tls = _tls(opts)
    flag = StopFlag()
    printer = None
    if print_:

        def printer(conn: Any, decoded: Any) -> None:
            lines = message_lines(conn, decoded, as_json=as_json)
            env.stdout.write("".join(line + "\n" for line in lines))
            env.stdout.flush()

    # Signals are caught from before any controller is redirected, so that none of them can
    # end the process between a redirection and its restore.
    with stop_on_signals(flag):
        routes, redirect = _routes(env, opts, accept_tls, connect_tls)
        stats, sink = serve(
            routes,
            lambda: _sink(opts, write, flag),  # after the listeners: a busy port leaves no file
            stop=flag,
            redirect=redirect,
            printer=printer,
            log=lambda msg: _say(env, msg),
            mtu=opts["mtu"],
            count=opts["count"],
            duration=opts["duration"],
        )
    _report(env, stats, sink, as_json=as_json, to_stderr=write == "-")


def _say(env: Env, message: str) -> None:
    """A progress line on stderr as is (addresses like [::1]:6653 are not rich markup)."""
    if env.verbosity >= 0:
        env.stderr.write(message + "\n")
        env.stderr.flush()


def _routes(env: Env, opts: dict[str, Any], accept_tls: Any, connect_tls: Any) -> Any:
    """The listeners, and the bridge redirection they need (``--ovs``) or None."""
    if not opts["bridge"]:
        return [_route(opts, accept_tls, connect_tls)], None
    if opts["listen"] or opts["upstream"]:
        raise UsageError("--ovs chooses where to listen and connect; drop --listen/--upstream")
    if opts["duration"] is not None and opts["ttl"] < opts["duration"]:
        raise UsageError("--ttl must be at least --duration")
    from vmsniff.snoop.ovs import redirect_bridge

    return redirect_bridge(
        opts["bridge"], opts["ovsdb"], accept_tls, connect_tls, ttl=opts["ttl"],
        log=lambda msg: _say(env, f"warning: {msg}"),
    )  # fmt: skip


def _route(opts: dict[str, Any], accept_tls: Any, connect_tls: Any) -> Any:
    from vmsniff.snoop.session import parse_endpoint, route

    if not opts["listen"] or not opts["upstream"]:
        raise UsageError("give --listen [ADDR:]PORT and --upstream HOST:PORT")
    listen = parse_endpoint(opts["listen"], "--listen", need_host=False)
    upstream = parse_endpoint(opts["upstream"], "--upstream", need_host=True)
    return route(listen, upstream, accept_tls=accept_tls, connect_tls=connect_tls)


def _tls(opts: dict[str, Any]) -> tuple[Any, Any]:
    """The TLS contexts towards switches and towards the controller (None: plain TCP)."""
    from vmsniff.snoop.session import TlsFiles, client_context, server_context

    mine = (opts["tls_cert"], opts["tls_key"], opts["tls_ca"])
    accept = None
    if any(mine):
        if not all(mine):
            raise UsageError("TLS towards switches needs --tls-cert, --tls-key and --tls-ca")
        accept = server_context(TlsFiles(*mine))
    up = (
        opts["upstream_cert"] or opts["tls_cert"],
        opts["upstream_key"] or opts["tls_key"],
        opts["upstream_ca"] or opts["tls_ca"],
    )
    connect = None
    if opts["upstream_tls"]:
        if not all(up):
            raise UsageError(
                "--upstream-tls needs a certificate, key and CA "
                "(--upstream-cert/--upstream-key/--upstream-ca or --tls-*)"
            )
        connect = client_context(TlsFiles(*up))
    elif any((opts["upstream_cert"], opts["upstream_key"], opts["upstream_ca"])):
        raise UsageError("--upstream-cert/-key/-ca need --upstream-tls")
    return accept, connect


def _sink(opts: dict[str, Any], write: str | None, stop: Any) -> Any:
    """The -w file; ``stop`` (the run's flag) ends a wait for a FIFO's reader, so that the
    bridge redirected by --ovs is never left pointing at a relay that does not run."""
    from vmsniff.formats.packet import MAX_SNAPLEN
    from vmsniff.pipeline.sinks import FileSink, Rotation

    rotation = Rotation(
        size=int(opts["file_size"] * 1_000_000) if opts["file_size"] else None,
        seconds=opts["rotate_seconds"],
        files=opts["file_count"],
    )
    if write is None:
        if rotation.active:
            raise UsageError("-C/-G/-W need -w FILE")
        return None
    return FileSink(
        write,
        opts["fmt"],
        MAX_SNAPLEN,
        rotation=rotation,
        flush_each=opts["packet_buffered"],
        force=opts["force"],
        application="vmsniff snoop",
        stop=stop,
    )


def _report(env: Env, stats: Any, sink: Any, *, as_json: bool, to_stderr: bool) -> None:
    from dataclasses import asdict

    from vmsniff.pipeline.sinks import written_files

    data = {**asdict(stats), "files": written_files(sink) if sink is not None else []}
    if as_json:
        import json

        stream = env.stderr if to_stderr else env.stdout
        stream.write(json.dumps(data) + "\n")
        stream.flush()
        return
    if env.verbosity >= 0:
        env.err.print(
            f"{stats.accepted} connections ({stats.failed} failed), "
            f"{stats.bytes_from_switch} bytes from switches, "
            f"{stats.bytes_from_controller} from controllers, {stats.frames} frames written"
        )
