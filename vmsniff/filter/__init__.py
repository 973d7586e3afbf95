"""tcpdump filter expressions compiled by libpcap (through pcapy-ng) and run in C.

The receiver filters the *inner* frame, whose link type is Ethernet (GRE 0x6558, ERSPAN) or
raw IP (GRE 0x0800/0x86DD, ERSPAN III frame type 2). :class:`InnerFilter` compiles the
expression once per link type before capture starts; a bad expression is the caller's fault
and becomes a :class:`~vmsniff.errors.UsageError` carrying libpcap's own message. Each frame is
then judged by ``BPFProgram.filter`` (libpcap's ``bpf_filter`` in C, ~0.3 µs, FACTS.md):
no per-packet Python interpreter of BPF.

pcapy is imported inside the functions, so that ``vmsniff --help`` never loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vmsniff.errors import MissingDependency, UsageError
from vmsniff.formats.capture import LINKTYPE_ETHERNET, LINKTYPE_RAW
from vmsniff.formats.packet import MAX_SNAPLEN

__all__ = ["InnerFilter", "bpf_instructions", "compile_program"]

#: pcap LINKTYPE_* (in files) -> libpcap DLT_* (what pcap_compile wants); they differ for RAW.
_DLT = {LINKTYPE_ETHERNET: 1, LINKTYPE_RAW: 12}


def compile_program(expression: str, linktype: int) -> Any:
    """Compile ``expression`` for frames of ``linktype``; a ``pcapy.BPFProgram``.

    Raises :class:`UsageError` with libpcap's message when the expression does not compile.
    """
    try:
        import pcapy
    except ImportError as exc:  # pragma: no cover - pcapy-ng is a dependency
        raise MissingDependency(
            "pcapy-ng is not installed", hint="pip install pcapy-ng (needs libpcap)"
        ) from exc
    dlt = _DLT.get(linktype, linktype)
    try:
        return pcapy.compile(dlt, MAX_SNAPLEN, expression, 1, 0xFFFFFFFF)
    except pcapy.PcapError as exc:
        raise UsageError(
            f"bad filter {expression!r}: {exc}",
            hint="the filter is tcpdump's syntax (man pcap-filter), applied to the inner frame",
        ) from None


def bpf_instructions(expression: str, linktype: int) -> list[tuple[int, int, int, int]]:
    """The classic BPF instructions ``(code, jt, jf, k)`` of ``expression`` (to attach to a
    socket with ``SO_ATTACH_FILTER``)."""
    program = compile_program(expression, linktype)
    return [tuple(i) for i in program.get_bpf()]


class InnerFilter:
    """A filter expression compiled for both inner link types.

    The expression must compile for Ethernet (what OVS mirrors carry); if it does not compile
    for raw IP as well (``ether host …``), raw-IP inner frames never match it.
    """

    __slots__ = ("_by_linktype", "expression", "raw_error")

    def __init__(self, expression: str) -> None:
        self.expression = expression
        eth = compile_program(expression, LINKTYPE_ETHERNET)
        self._by_linktype: dict[int, Callable[[bytes], int] | None] = {
            LINKTYPE_ETHERNET: eth.filter
        }
        self.raw_error: str | None = None
        try:
            self._by_linktype[LINKTYPE_RAW] = compile_program(expression, LINKTYPE_RAW).filter
        except UsageError as exc:
            self._by_linktype[LINKTYPE_RAW] = None
            self.raw_error = exc.message

    def matcher(self, linktype: int) -> Callable[[bytes], int] | None:
        """The C filter function for ``linktype`` (returns non-zero to accept), or None when the
        expression cannot apply to that link type (such frames are rejected)."""
        return self._by_linktype.get(linktype)

    def match(self, linktype: int, frame: bytes | bytearray | memoryview) -> bool:
        """True when ``frame`` (of ``linktype``) passes the filter."""
        fn = self._by_linktype.get(linktype)
        return fn is not None and fn(bytes(frame)) != 0
