"""``vmsniff flows``: what a VM talks to, as a table of bidirectional flows."""

from __future__ import annotations

import os

import click

from vmsniff.cli._context import Env
from vmsniff.errors import UsageError

_SORTS = ("bytes", "packets", "duration", "start")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--top", type=click.IntRange(1), metavar="N", help="Only the N first flows.")
@click.option(
    "--sort",
    type=click.Choice(_SORTS),
    default="bytes",
    show_default=True,
    help="Largest first (start: earliest first).",
)
@click.option("-f", "--filter", "filter_opt", metavar="FILTER", help="tcpdump filter.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--list-fields", is_flag=True,
              help="List every layer's fields and the named constants of the packet API "
              "(docs/packet-api.md), then exit.")  # fmt: skip
@click.argument("args", nargs=-1, metavar="FILE... [FILTER]")
@click.pass_obj
def flows(
    env: Env, /, top: int | None, sort: str, filter_opt: str | None, as_json: bool,
    list_fields: bool, args: tuple[str, ...],
) -> None:  # fmt: skip
    """Bidirectional flows of pcap/pcapng FILEs: ends, packets and bytes each way, times, and
    TCP state and history as Zeek's conn.log names them (S0, SF, REJ, RSTO...).

    The leading arguments that name files are read, in order, as one stream (vmsniff's own
    captures or anyone's, any link type vmsniff reads); the rest is a tcpdump filter. Memory
    grows with the number of flows, not of packets.
    """
    from vmsniff.cli._render import flows_table
    from vmsniff.flows.files import table_of_files
    from vmsniff.flows.report import report

    if list_fields:
        from vmsniff.dissect.reference import fields_document, render

        if as_json:
            env.json(fields_document())
        else:
            env.stdout.write(render())
        return
    files: list[str] = []
    rest = list(args)
    while rest and (os.path.exists(rest[0]) or rest[0] == "-" and not files):
        files.append(rest.pop(0))
    if not files:
        if rest:
            raise UsageError(f"{rest[0]}: no such file", hint="vmsniff flows FILE... [FILTER]")
        raise UsageError("no capture file given", hint="vmsniff flows FILE... [FILTER]")
    expression = " ".join(rest).strip()
    if filter_opt and expression:
        raise UsageError("give the filter either with -f or after the files, not both")
    keep = _filter(filter_opt or expression) if (filter_opt or expression) else None
    table = table_of_files(files, keep=keep)
    result = report(table.flows(), packets=table.packets, not_flows=table.not_flows, sort=sort,
                    top=top)  # fmt: skip
    if as_json:
        env.json(result.to_dict())
        return
    flows_table(env, result)


def _filter(expression: str):  # type: ignore[no-untyped-def]
    """A record filter for every link type: compiled by libpcap once per link type seen."""
    from vmsniff.filter import compile_program

    compiled: dict[int, object] = {}

    def keep(frame: bytes, linktype: int) -> bool:
        program = compiled.get(linktype)
        if program is None:
            program = compiled[linktype] = compile_program(expression, linktype).filter
        return bool(program(bytes(frame)))  # type: ignore[operator]

    compile_program(expression, 1)  # a bad expression fails before any file is read
    return keep
