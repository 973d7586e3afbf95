"""Options shared by every command that resolves a VM (resolve, capture, mirror, …)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

from vmsniff.formats.packet import MAX_SNAPLEN

__all__ = [
    "DURATION",
    "print_options_from",
    "printing_options",
    "json_option",
    "resolve_options",
    "resolve_options_from",
    "frame_options",
    "stop_and_file_options",
]

F = TypeVar("F", bound=Callable[..., Any])


class _Duration(click.ParamType[float]):
    """``30``, ``30s``, ``10m``, ``1h30m`` -> seconds (float), the same for every command."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        from vmsniff.durations import parse_duration
        from vmsniff.errors import UsageError

        option = param.opts[0] if param is not None and param.opts else "duration"
        try:
            return parse_duration(str(value), option).total_seconds()
        except UsageError as exc:
            self.fail(exc.message + (f" ({exc.hint})" if exc.hint else ""), param, ctx)


DURATION = _Duration()

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def resolve_options(func: F) -> F:
    """Add the VM-resolution options (cloud, host endpoints, NIC choice) to a command."""
    option = click.option
    options = [
        option("--nic", metavar="MAC|PORT|NET", help="One NIC: MAC, Neutron port id, network."),
        option("--os-cloud", envvar="OS_CLOUD", metavar="NAME", help="clouds.yaml entry."),
        option("--all-projects", is_flag=True, help="Search every project's servers (admin)."),
        option("--offline", is_flag=True, help="Do not ask the cloud; libvirt and OVSDB only."),
        option("--host", metavar="HOST", help="The VM's compute host if the cloud hides it."),
        option(
            "--ovsdb",
            metavar="REMOTE",
            help="OVSDB of the VM's host [env VMSNIFF_OVSDB; default "
            "unix:/var/run/openvswitch/db.sock].",
        ),
        option(
            "--libvirt",
            metavar="URI",
            help="libvirt of the VM's host [env LIBVIRT_DEFAULT_URI; default qemu:///system].",
        ),
        option("--no-libvirt", is_flag=True, help="Do not ask libvirt."),
    ]
    decorated: Any = func
    for decorator in reversed(options):
        decorated = decorator(decorated)
    return cast(F, decorated)


def frame_options(
    filter_help: str, frame: str, buffer_kib: int, buffer_what: str
) -> Callable[[F], F]:
    """``-f``, ``-s`` and tcpdump's ``-B`` (the kernel ring's size in KiB), as ``receive`` and
    ``capture`` word them: ``frame`` is what ``-s`` cuts, ``buffer_what`` how the ring is
    used."""
    option = click.option
    options = [
        option("-f", "--filter", "filter_opt", metavar="FILTER", help=filter_help),
        option("-s", "--snaplen", type=click.IntRange(1, MAX_SNAPLEN), default=MAX_SNAPLEN,
               show_default=True, help=f"Keep at most this many bytes of each {frame}."),
        option("-B", "--buffer-size", type=click.IntRange(1024, 1 << 21), default=buffer_kib,
               show_default=True, metavar="KIB",
               help=f"Size of the kernel ring in KiB ({buffer_what}, rounded to whole MiB); "
               "counts in peak memory."),
    ]  # fmt: skip

    def decorate(func: F) -> F:
        decorated: Any = func
        for decorator in reversed(options):
            decorated = decorator(decorated)
        return cast(F, decorated)

    return decorate


def stop_and_file_options(func: F) -> F:
    """``-c``, ``--duration``, tcpdump's ``-C``/``-G``/``-W``, ``-U`` and ``--print``: when a
    capture stops and how its files roll (``receive`` and ``capture``)."""
    option = click.option
    options = [
        option("-c", "--count", type=click.IntRange(1), help="Stop after writing COUNT packets."),
        option("--duration", type=DURATION, metavar="D", help="Stop after D (30, 30s, 10m, 1h)."),
        option(
            "-C",
            "file_size",
            type=click.FloatRange(0, min_open=True),
            metavar="MB",
            help="Rotate when a file reaches MB million bytes (FILE, FILE1, ...).",
        ),
        option(
            "-G",
            "rotate_seconds",
            type=click.IntRange(1),
            metavar="SECONDS",
            help="Rotate every SECONDS; strftime patterns in FILE.",
        ),
        option(
            "-W",
            "file_count",
            type=click.IntRange(1),
            metavar="FILES",
            help="With -C: wrap around after FILES files; with -G: stop after FILES files.",
        ),
        option(
            "-U", "--packet-buffered", is_flag=True, help="Flush the output after every packet."
        ),
        option(
            "--print", "print_", is_flag=True, help="Print a one-line summary per packet on stdout."
        ),
    ]
    decorated: Any = func
    for decorator in reversed(options):
        decorated = decorator(decorated)
    return cast(F, decorated)


def printing_options(func: F) -> F:
    """tcpdump's printing flags, for the lines printed when there is no ``-w`` (or with
    ``--print``): ``-e``, ``-x``/``-xx``, ``-X``/``-XX``, ``-A``, ``-S``, ``-t`` to ``-ttttt``,
    ``-l``, ``-n``/``-nn``."""
    option = click.option
    options = [
        option("-e", "link_header", is_flag=True, help="Print the link-level header."),
        option("-x", "hex_dump", count=True, help="Print the bytes in hex (-xx: with the "
               "link header)."),
        option("-X", "hex_ascii", count=True, help="Print the bytes in hex and ASCII (-XX: "
               "with the link header)."),
        option("-A", "ascii_dump", is_flag=True, help="Print the bytes in ASCII."),
        option("-S", "--absolute-tcp-sequence-numbers", "absolute_seq", is_flag=True,
               help="Print absolute TCP sequence numbers, not relative to the connection's."),
        option("-t", "time_format", count=True, help="-t no time, -tt seconds since the epoch, "
               "-ttt since the previous packet, -tttt with the date, -ttttt since the first."),
        option("-l", "line_buffered", is_flag=True, help="Line-buffered output (always so)."),
        option("-n", "numeric", count=True, help="Accepted for tcpdump's sake: vmsniff never "
               "looks names up."),
    ]  # fmt: skip
    decorated: Any = func
    for decorator in reversed(options):
        decorated = decorator(decorated)
    return cast(F, decorated)


def print_options_from(
    link_header: bool,
    hex_dump: int,
    hex_ascii: int,
    ascii_dump: bool,
    time_format: int,
    verbose: int = 0,
    absolute_seq: bool = False,
) -> Any:
    """:class:`vmsniff.dissect.printer.PrintOptions` from :func:`printing_options`' values
    (``verbose``: vmsniff's ``-v`` count, which also adds tcpdump's ``-v`` detail)."""
    from vmsniff.dissect.printer import PrintOptions

    return PrintOptions(link=link_header, hex=hex_dump, hex_ascii=hex_ascii, ascii=ascii_dump,
                        timestamps=min(time_format, 5), verbose=verbose,
                        absolute_seq=absolute_seq)  # fmt: skip


def resolve_options_from(vm: str, kwargs: dict[str, Any]) -> Any:
    """Build :class:`vmsniff.resolve.ResolveOptions` from a command's keyword arguments."""
    from vmsniff.resolve import ResolveOptions

    return ResolveOptions(
        query=vm,
        nic=kwargs.pop("nic"),
        os_cloud=kwargs.pop("os_cloud"),
        all_projects=kwargs.pop("all_projects"),
        offline=kwargs.pop("offline"),
        host=kwargs.pop("host"),
        ovsdb=kwargs.pop("ovsdb"),
        libvirt=kwargs.pop("libvirt"),
        use_libvirt=not kwargs.pop("no_libvirt"),
    )
