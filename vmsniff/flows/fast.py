"""The flow table's block path: a classic pcap file counted a chunk at a time with numpy.

A Python loop costs ~4 µs a packet here (read the record, :func:`~vmsniff.dissect.flow_key`,
:meth:`~.table.FlowTable.add`); tshark's conversation tables cost ~9 µs. For the packets of
the common shape (Ethernet without a VLAN tag, or raw IP; IPv4 not fragmented; TCP or UDP not
carrying a tunnel) numpy reads the fields of a whole chunk at once, groups the packets by flow
with one sort, and sums them; every other packet goes through
:func:`~vmsniff.dissect.flow_key` and :meth:`~.table.FlowTable.add` one by one, as on the
ordinary path. Both feed the same table,
and a test holds the two paths to the same flows on the same file.

Within one chunk a flow's packets of the common shape are merged before its others; so a flow
whose *first* packet has another shape (an IP fragment, say) and whose next ones in the same
chunk have the common shape may be named from its second packet's sender. First and last
times are minimum and maximum, whatever the order.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

import numpy as np

from vmsniff.dissect.flow import flow_key
from vmsniff.errors import MalformedPacket
from vmsniff.flows.table import FlowTable, letters_of
from vmsniff.formats.capture import (
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    PCAP_FILE_HEADER,
    PCAP_MAGIC_MICROSECONDS,
    PCAP_MAGIC_NANOSECONDS,
    PCAP_RECORD_HEADER,
)
from vmsniff.formats.ethernet import ETH_HEADER_LEN, ETHERTYPE_IPV4
from vmsniff.formats.ip import GENEVE_PORT, GRE_UDP_PORT, VXLAN_PORT
from vmsniff.pcap.reader import MAX_RECORD

__all__ = ["CHUNK", "pcap_header", "table_of_pcap"]

CHUNK = 8 << 20  #: bytes of the file counted at once
Array = np.ndarray[Any, Any]
_TCP, _UDP = 6, 17
_TUNNEL_PORTS = np.array([VXLAN_PORT, GENEVE_PORT, GRE_UDP_PORT])


def pcap_header(head: bytes) -> tuple[str, int, int] | None:
    """``(byte order, ns per timestamp unit, link type)`` of a classic pcap file header whose
    link type this path reads, else None (pcapng, other link types: the ordinary path)."""
    if len(head) < PCAP_FILE_HEADER.size:
        return None
    for order in "<>":
        magic = struct.unpack_from(order + "I", head)[0]
        if magic in (PCAP_MAGIC_MICROSECONDS, PCAP_MAGIC_NANOSECONDS):
            linktype = struct.unpack_from(order + "I", head, 20)[0] & 0xFFFF
            if linktype not in (LINKTYPE_ETHERNET, LINKTYPE_RAW):
                return None
            return order, 1000 if magic == PCAP_MAGIC_MICROSECONDS else 1, linktype
    return None


def table_of_pcap(
    fh: BinaryIO, header: tuple[str, int, int], table: FlowTable, chunk: int | None = None
) -> None:
    """Count the records after the file header (already read) of ``fh`` into ``table``,
    ``chunk`` bytes at a time (default :data:`CHUNK`)."""
    order, unit, linktype = header
    caplen_of = struct.Struct(order + "I").unpack_from
    buf = bytearray(chunk or CHUNK)
    held = 0  # bytes at the start of buf: a record the last chunk cut
    while True:
        if held == len(buf):  # one record bigger than the buffer: grow it
            buf.extend(bytes(len(buf)))
        got = fh.readinto(memoryview(buf)[held:])  # type: ignore[attr-defined]
        n = held + (got or 0)
        if n == 0:
            return
        offs: list[int] = []
        append = offs.append
        pos = 0
        while pos + 16 <= n:
            cap = caplen_of(buf, pos + 8)[0]
            end = pos + 16 + cap
            if end > n:
                if cap > MAX_RECORD:
                    raise MalformedPacket(f"pcap record of {cap} bytes: damaged, or not pcap")
                break
            append(pos)
            pos = end
        if offs:
            _count(buf, np.array(offs, dtype=np.int64), order, unit, linktype, table, n)
        held = n - pos
        buf[:held] = buf[pos:n]
        if not got:
            if held:
                raise MalformedPacket(f"the last pcap record is cut short ({held} bytes)")
            return


# What the common shape's fields are, from the frame's start (Ethernet; raw IP: minus 14),
# for an IPv4 header without options: numpy gathers this many bytes of each record at once.
_IP = ETH_HEADER_LEN
_L4 = _IP + 20
_SPAN = _L4 + 14  # up to the TCP flags


def _count(
    buf: bytearray, offs: Array, order: str, unit: int, linktype: int, table: FlowTable, n: int
) -> None:
    a = np.frombuffer(buf, dtype=np.uint8, count=n)
    count = len(offs)
    last = len(a) - 1
    # The record headers and the first bytes of each frame, column by column (one gather of
    # ``count`` bytes each: the index arrays stay small), as uint8 rows.
    head = np.empty((count, PCAP_RECORD_HEADER.size), dtype=np.uint8)
    for col in range(PCAP_RECORD_HEADER.size):
        head[:, col] = a[offs + col]
    words = head.view(order + "u4").astype(np.int64)
    ts = words[:, 0] * 1_000_000_000 + words[:, 1] * unit
    caplen, origlen = words[:, 2], words[:, 3]
    frame = offs + PCAP_RECORD_HEADER.size
    shift = 0 if linktype == LINKTYPE_ETHERNET else _IP  # raw IP: no Ethernet header
    rows8 = np.zeros((count, _SPAN), dtype=np.uint8)
    if shift:  # raw IP frames get the Ethernet columns' positions, EtherType IPv4
        rows8[:, 12], rows8[:, 13] = ETHERTYPE_IPV4 >> 8, ETHERTYPE_IPV4 & 0xFF
    for col in range(shift, _SPAN):
        rows8[:, col] = a[np.minimum(frame + col - shift, last)]  # past the end: never used
    b = rows8

    def be16(col: int) -> Array:
        out: Array = b[:, col].astype(np.int64) << 8 | b[:, col + 1]
        return out

    proto = b[:, _IP + 9].astype(np.int64)
    dport = be16(_L4 + 2)
    ok = (be16(12) == ETHERTYPE_IPV4) & (b[:, _IP] == 0x45) & (be16(_IP + 6) & 0x3FFF == 0)
    ok &= ((proto == _TCP) & (caplen >= _L4 + 20 - shift)) | (
        (proto == _UDP) & (caplen >= _L4 + 8 - shift) & ~np.isin(dport, _TUNNEL_PORTS)
    )
    sel = np.flatnonzero(ok)
    if len(sel):
        rows = b[sel]

        def field(k: int) -> Array:
            out: Array = rows[:, k].astype(np.int64)
            return out

        src = field(_IP + 12) << 24 | field(_IP + 13) << 16 | field(_IP + 14) << 8 | field(_IP + 15)
        dst = field(_IP + 16) << 24 | field(_IP + 17) << 16 | field(_IP + 18) << 8 | field(_IP + 19)
        tcp = proto[sel] == _TCP
        flags = np.where(tcp, field(_L4 + 13), 0)
        iplen = field(_IP + 2) << 8 | field(_IP + 3)
        payload = np.where(tcp, np.maximum(0, iplen - 20 - (field(_L4 + 12) >> 4) * 4), 0)
        sport = field(_L4) << 8 | field(_L4 + 1)
        _merge(table, ts[sel], origlen[sel], src, dst, sport, dport[sel], proto[sel], flags,
               payload)  # fmt: skip
    for i in np.flatnonzero(~ok).tolist():  # every other packet, one by one, in order
        start = int(frame[i])
        data = memoryview(buf)[start : start + int(caplen[i])]
        table.add(int(ts[i]), flow_key(data, linktype, int(origlen[i])))


def _merge(
    table: FlowTable,
    ts: Array,
    origlen: Array,
    src: Array,
    dst: Array,
    sport: Array,
    dport: Array,
    proto: Array,
    flags: Array,
    payload: Array,
) -> None:
    """Group packets of the common shape (in time order) by flow; add each flow's sums."""
    # the flow's ends in a fixed order (a <= b, as FlowTable keys them): forward = src is a
    forward = (src < dst) | ((src == dst) & (sport <= dport))
    lo_addr, hi_addr = np.where(forward, src, dst), np.where(forward, dst, src)
    lo_port, hi_port = np.where(forward, sport, dport), np.where(forward, dport, sport)
    # the flow's key, as FlowTable packs a plain IPv4 flow's: two unsigned 64-bit integers
    u64 = np.uint64
    addrs = lo_addr.astype(u64) << u64(32) | hi_addr.astype(u64)
    rest = proto.astype(u64) << u64(32) | lo_port.astype(u64) << u64(16) | hi_port.astype(u64)
    order = np.lexsort((rest, addrs))  # stable: in time order within a flow
    addrs_s, rest_s = addrs[order], rest[order]
    new = np.empty(len(order), dtype=bool)
    new[0] = True
    new[1:] = (addrs_s[1:] != addrs_s[:-1]) | (rest_s[1:] != rest_s[:-1])
    starts = np.flatnonzero(new)
    group = np.cumsum(new) - 1  # each sorted packet's flow
    first = order[starts]  # each flow's first packet
    last = order[np.append(starts[1:], len(order)) - 1]
    fwd_s = forward[order]
    len_s = origlen[order]
    groups = len(starts)
    pkts_ab = np.bincount(group, weights=fwd_s, minlength=groups).astype(np.int64)
    bytes_ab = np.bincount(group, weights=len_s * fwd_s, minlength=groups).astype(np.int64)
    pkts_ba = np.bincount(group, minlength=groups) - pkts_ab
    bytes_ba = np.bincount(group, weights=len_s, minlength=groups).astype(np.int64) - bytes_ab
    keys = list(zip(addrs_s[starts].tolist(), rest_s[starts].tolist(), strict=True))
    synack = flags[first] & 0x12 == 0x12
    ids, orig_is_a = table.merge_block(keys, ts[first], ts[last], forward[first] != synack,
                                       pkts_ab, bytes_ab, pkts_ba, bytes_ba)  # fmt: skip
    # history: each flow's letters (per side) it shows here for the first time, in order
    bits_s = letters_of(flags, payload)[order]
    side_orig = fwd_s == orig_is_a[group]
    shifted = np.where(side_orig, bits_s, bits_s << 8)
    shown = np.bitwise_or.reduceat(shifted, starts)
    fresh = table.new_letters(ids, shown)
    if not fresh.any():
        return
    news = np.flatnonzero(fresh)
    firsts: dict[int, list[tuple[int, int, bool]]] = {f: [] for f in news.tolist()}
    lettered = np.flatnonzero((bits_s != 0) & (fresh[group] != 0))
    for bit in (1, 2, 4, 8, 16, 32):
        has = bits_s[lettered] & bit != 0
        for is_orig in (True, False):
            where = lettered[has & (side_orig[lettered] == is_orig)]
            if not len(where):
                continue
            g, at = np.unique(group[where], return_index=True)
            for flow, pos in zip(g.tolist(), where[at].tolist(), strict=True):
                firsts[flow].append((pos, bit, is_orig))
    for f, letters in firsts.items():
        table.add_letters(int(ids[f]), sorted(letters))
