"""What the fuzzer feeds, and what counts as a crash.

Each :class:`Target` names one decoder that reads bytes from outside, builds its seeds, and
runs one input. The contract (STYLE.md) is that arbitrary bytes give a value or
:class:`~vmsniff.errors.MalformedPacket`; any other exception, a broken invariant (an
``AssertionError`` raised here) or a hang is a crash.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fuzz.ringblock import BLOCK_SIZE, build_block, reference_walk
from fuzz.seeds import built_frames, built_pcap, built_pcapng, capture_files, capture_frames
from vmsniff.errors import MalformedPacket
from vmsniff.formats.capture import LINKTYPE_ETHERNET, LINKTYPE_RAW
from vmsniff.pcap.encoder import new_encoder
from vmsniff.pcap.reader import MAX_RECORD, CaptureReader
from vmsniff.pipeline.inplace import BlockRecords
from vmsniff.pipeline.ring import Ring
from vmsniff.wire.decap import decap_linktype
from vmsniff.wire.erspan import parse_erspan_ii, parse_erspan_iii
from vmsniff.wire.ethernet import parse_ethernet, strip_vlan
from vmsniff.wire.gre import encode_gre, parse_gre
from vmsniff.wire.ipv4 import Reassembler, encode_ipv4, parse_ipv4

__all__ = ["TARGETS", "Target"]

# link types decap_linktype takes, and a few it refuses; byte 0 of a decap input picks one
LINKTYPES = (1, 101, 1, 228, 229, 0, 108, 113, 1, 101, 147)
HV = bytes([10, 250, 0, 1])
RX = bytes([10, 250, 0, 2])


@dataclass
class Target:
    """One decoder: ``seeds(rng)`` the corpus, ``run(data)`` one input (raises on a crash),
    ``mutate(rng, data)`` an optional structure-aware mutation used for part of the inputs."""

    name: str
    what: str
    seeds: Callable[[random.Random], list[bytes]]
    run: Callable[[bytes], None]
    mutate: Callable[[random.Random, bytes], bytes] | None = None
    notes: list[str] = field(default_factory=list)


# -- pcap / pcapng reader --------------------------------------------------------------------


def _run_reader(data: bytes) -> None:
    """Feed the file in chunks cut where its own bytes say (so every split is tried over
    the campaign), then close; check what the records claim."""
    reader = CaptureReader()
    cuts = sorted({0, len(data), *(b * 7 % (len(data) + 1) for b in data[-3:])})
    records = []
    try:
        for a, b in zip(cuts, cuts[1:], strict=False):
            records += reader.feed(data[a:b])
        reader.close()
    except MalformedPacket as exc:
        # feed() turns a stray struct.error/IndexError into MalformedPacket ("belt and
        # braces"): that would be a length the reader forgot to check, so it counts here
        assert exc.__cause__ is None, f"unchecked {type(exc.__cause__).__name__} in the reader"
    for r in records:
        assert len(r.data) <= MAX_RECORD, "record longer than MAX_RECORD"
        assert r.origlen >= len(r.data), "origlen below caplen"
    # a failed reader stays failed, with MalformedPacket
    if reader._failed is not None:
        try:
            reader.feed(b"")
        except MalformedPacket:
            pass
        else:
            raise AssertionError("failed reader accepted more bytes")


def _pcap_seeds(rng: random.Random) -> list[bytes]:
    frames = [f for _, f in built_frames(rng)]
    return capture_files(".pcap") + built_pcap([(1, f) for f in frames], rng)


def _pcapng_seeds(rng: random.Random) -> list[bytes]:
    frames = [(1, f) for _, f in built_frames(rng)]
    return capture_files(".pcapng") + built_pcapng(frames, rng)


# -- GRE / ERSPAN decap ----------------------------------------------------------------------


def _run_decap(data: bytes) -> None:
    if not data:
        return
    linktype = LINKTYPES[data[0] % len(LINKTYPES)]
    frame = data[1:]
    reasm = Reassembler(max_datagrams=4)
    try:
        d = decap_linktype(linktype, frame, reasm, 1.0)
    except MalformedPacket:
        d = None
    if d is not None:
        assert len(d.inner) == d.caplen, "caplen is not the inner frame's length"
        assert 0 <= d.caplen <= d.origlen, "caplen above origlen"
        assert d.linktype in (LINKTYPE_ETHERNET, LINKTYPE_RAW)
        assert (d.key is None or 0 <= d.key < 1 << 32) and len(d.outer_src) in (4, 16)
        if linktype == LINKTYPE_RAW and frame[0] >> 4 == 4:
            _agrees(frame, d)
    # the layer parsers on every header-sized step of the same bytes
    for parse, at in ((parse_ethernet, 0), (strip_vlan, 0), (parse_ipv4, 0), (parse_ipv4, 14),
                      (parse_gre, 20), (parse_gre, 34), (parse_erspan_ii, 28),
                      (parse_erspan_iii, 24), (parse_erspan_iii, 42)):  # fmt: skip
        try:
            parse(frame[at:])  # type: ignore[operator]
        except MalformedPacket:
            pass


def _agrees(frame: bytes, d: object) -> None:
    """decap's inline decoding says what the layer parsers say (outer IPv4, no fragment)."""
    ip, payload, _ = parse_ipv4(frame)
    if ip.is_fragment:
        return
    g = parse_gre(payload)
    assert (g.key, g.seq, g.proto) == (d.key, d.seq, d.proto), "decap and parse_gre disagree"  # type: ignore[attr-defined]
    if d.erspan_type == 2:  # type: ignore[attr-defined]
        e = parse_erspan_ii(payload[g.header_len :])
        assert e.session_id == d.erspan_session and e.vlan == d.erspan_vlan  # type: ignore[attr-defined]
    if d.erspan_type == 3:  # type: ignore[attr-defined]
        e3 = parse_erspan_iii(payload[g.header_len :])
        assert e3.session_id == d.erspan_session and e3.d == d.erspan_direction  # type: ignore[attr-defined]


def _decap_seeds(kind: str) -> Callable[[random.Random], list[bytes]]:
    def seeds(rng: random.Random) -> list[bytes]:
        frames = built_frames(rng) + capture_frames((kind, "malformed", "mixed"))
        out = []
        for lt, f in frames:
            out.append(bytes([LINKTYPES.index(lt) if lt in LINKTYPES else 0]) + f)
        if kind == "erspan":
            out = [s for s in out if b"\x88\xbe" in s[:80] or b"\x22\xeb" in s[:80]] or out
        return out

    return seeds


# -- IPv4 / IPv6 reassembly ------------------------------------------------------------------
# An input is a run of fragments: per fragment 1 byte of clock step (x 0.5 s) and a 2-byte
# length, then the packet. The reassembler is small, so that eviction and expiry happen.

_MAX_DATAGRAMS = 4


def _frames_of(data: bytes) -> list[tuple[float, bytes]]:
    out, pos = [], 0
    while pos + 3 <= len(data):
        dt, n = data[pos], data[pos + 1] << 8 | data[pos + 2]
        out.append((dt * 0.5, data[pos + 3 : pos + 3 + n]))
        pos += 3 + n
    return out


def _pack(frags: list[tuple[float, bytes]]) -> bytes:
    return b"".join(bytes([int(dt * 2)]) + len(f).to_bytes(2, "big") + f for dt, f in frags)


def _run_reassembly(data: bytes) -> None:
    reasm = Reassembler(max_datagrams=_MAX_DATAGRAMS, timeout=5.0)
    now = 0.0
    for dt, pkt in _frames_of(data):
        now += dt
        try:
            d = decap_linktype(LINKTYPE_RAW, pkt, reasm, now)
        except MalformedPacket:
            d = None
        if d is not None:
            assert len(d.inner) == d.caplen <= d.origlen
        # the limits: datagrams held, bytes held, age of what is held
        table = reasm._table
        assert len(table) <= _MAX_DATAGRAMS, "reassembly table above max_datagrams"
        held = sum(len(p) for pend in table.values() for p in pend.parts.values())
        assert held <= _MAX_DATAGRAMS * 0xFFFF, f"reassembler holds {held} bytes"
        for pend in table.values():
            assert len(pend.parts) <= reasm.max_fragments, "more pieces than max_fragments"
    # expiry is lazy (each fragment pushed first drops what is older than the timeout), so
    # everything held is gone once the clock has moved past it
    reasm.expire(now + reasm.timeout + 1)
    assert not reasm._table, "a datagram outlived its timeout"


def _fragment4(rng: random.Random, payload: bytes, ident: int, options: bytes) -> list[bytes]:
    out, off = [], 0
    while off < len(payload):
        n = rng.choice((8, 16, 24, 512, 1480, 1480, 4000)) if off + 8 < len(payload) else 8
        part = payload[off : off + n]
        more = off + len(part) < len(payload)
        out.append(
            encode_ipv4(
                HV,
                RX,
                47,
                part,
                ident=ident,
                mf=more,
                frag_offset=off,
                options=options if off == 0 or rng.random() < 0.5 else b"",
            )
        )
        off += len(part)
    return out  # fmt: skip


def _ipv4_seeds(rng: random.Random) -> list[bytes]:
    seeds = []
    for i in range(24):
        inner = rng.randbytes(rng.choice((64, 1500, 3000, 9000)))
        gre = encode_gre(0x6558, inner, key=rng.choice((None, 7)))
        opts = rng.choice((b"", b"\x01\x01\x01\x01", b"\x94\x04\x00\x00" * 10))
        frags = _fragment4(rng, gre, 1000 + i, opts)
        if rng.random() < 0.5:
            rng.shuffle(frags)
        if rng.random() < 0.3:
            frags.append(rng.choice(frags))  # a duplicate
        other = _fragment4(rng, encode_gre(0x6558, rng.randbytes(2000)), 7, b"")
        mixed = frags + other
        if rng.random() < 0.5:
            rng.shuffle(mixed)
        seeds.append(_pack([(rng.choice((0, 0, 0.5, 6)), f) for f in mixed]))
    # more datagrams in flight than the table holds: eviction
    many = [
        f
        for i in range(_MAX_DATAGRAMS + 2)
        for f in _fragment4(rng, encode_gre(0x6558, rng.randbytes(100)), 500 + i, b"")
    ]
    seeds.append(_pack([(0, f) for f in sorted(many, key=lambda f: f[6:8])]))  # fmt: skip
    # boundary sizes: datagrams ending at the largest offsets the reassembler accepts
    for end in (0xFFFF - 20, 0xFFFF - 24, 0xFFFF - 60):
        body = encode_gre(0x6558, bytes(end - 4))
        for opts in (b"", b"\x01\x01\x01\x01"):
            frags = [f for f in _fragment4(random.Random(end), body, 9, opts)]
            seeds.append(_pack([(0, f) for f in frags]))
    return seeds


def _ipv6(src: bytes, dst: bytes, nh: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nh, 64, src, dst) + payload


def _fragment6(rng: random.Random, body: bytes, ident: int, hbh: bool) -> list[bytes]:
    src, dst = b"\xfd" + bytes(14) + b"\x01", b"\xfd" + bytes(14) + b"\x02"
    out, off = [], 0
    while off < len(body):
        n = rng.choice((8, 16, 1232, 1232, 4000)) if off + 8 < len(body) else 8
        part = body[off : off + n]
        more = off + len(part) < len(body)
        frag = struct.pack("!BBHI", 47, 0, off | more, ident) + part
        if hbh:
            out.append(_ipv6(src, dst, 0, bytes([44, 0]) + bytes(6) + frag))
        else:
            out.append(_ipv6(src, dst, 44, frag))
        off += len(part)
    return out


def _ipv6_seeds(rng: random.Random) -> list[bytes]:
    seeds = []
    for i in range(24):
        body = encode_gre(0x6558, rng.randbytes(rng.choice((64, 1500, 3000, 9000))), key=i)
        frags = _fragment6(rng, body, i, rng.random() < 0.3)
        if rng.random() < 0.5:
            rng.shuffle(frags)
        if rng.random() < 0.3:
            frags.append(rng.choice(frags))
        seeds.append(_pack([(rng.choice((0, 0, 0.5, 6)), f) for f in frags]))
    for end in (0xFFFF, 0xFFFF - 8, 0xFFFF - 40):
        body = encode_gre(0x6558, bytes(end - 4))
        seeds.append(_pack([(0, f) for f in _fragment6(random.Random(end), body, 5, True)]))
    return seeds


def _mutate_fragments(rng: random.Random, data: bytes) -> bytes:
    """Structure-aware: drop, repeat, reorder or re-time whole fragments."""
    frags = _frames_of(data)
    if not frags:
        return data
    op = rng.randrange(5)
    i = rng.randrange(len(frags))
    if op == 0:
        del frags[i]
    elif op == 1:
        frags.insert(rng.randrange(len(frags) + 1), frags[i])
    elif op == 2:
        rng.shuffle(frags)
    elif op == 3:
        frags[i] = (rng.choice((0, 4.5, 5.5, 127.5)), frags[i][1])
    else:
        j = rng.randrange(len(frags))
        frags[i], frags[j] = frags[j], frags[i]
    return _pack(frags)


# -- the TPACKET_V3 ring block walker --------------------------------------------------------

_MEM = bytearray(BLOCK_SIZE)
_WRITERS = [
    BlockRecords(_MEM, BLOCK_SIZE, new_encoder(fmt, 262144), lambda code: (None, 1, False, None))
    for fmt in ("pcap", "pcapng")
]
_MEM_AT = np.frombuffer(_MEM, dtype=np.uint8).ctypes.data


def _run_ring(data: bytes) -> None:
    """Walk the block's chain with :meth:`BlockRecords.offsets`: a corrupted block must give
    MalformedPacket or (only where the block is valid) exactly the reference walker's slots;
    then encode its packets in place, pcap or pcapng (``num_pkts`` picks), and check every
    record stays inside the block."""
    block = data[:BLOCK_SIZE].ljust(BLOCK_SIZE, b"\x00")
    _MEM[:] = block
    _status, count, first = struct.unpack_from("=III", _MEM, 8)
    if count == 0:
        return  # every caller returns before walking an empty block
    ref, valid = reference_walk(_MEM, 0, BLOCK_SIZE, count, first)
    w = _WRITERS[count & 1]
    try:
        offs = w.offsets(0, count, first)
    except MalformedPacket:
        assert not valid, f"a valid block of {count} packets refused"
        return
    assert valid, f"an invalid block walked: {count} packets from {first}"
    assert offs.tolist() == ref, "offsets() and the reference walker disagree"
    ts, snap, wire, mac, pkttype = w.header_fields(offs)
    start = offs + mac
    assert (start + snap <= BLOCK_SIZE).all() and (offs >= 48).all()
    n = len(offs)
    sel = np.arange(n) if count & 4 else np.flatnonzero(pkttype != 4)  # all, or incoming only
    # direction from the packet type: 0 (none) for what is neither host nor outgoing
    direction = np.where(pkttype == 4, 1, np.where(pkttype == 0, 2, 0)).astype(np.int64)
    code = (pkttype % 3).astype(np.int64)  # a few pcapng interfaces
    cap = np.minimum(snap, 262144)
    args = (0, offs, sel, start, cap, wire, ts, code, direction)
    if count & 2:
        _idbs, pieces = w.encode(*args, joined=True)
        for piece in pieces:
            if hasattr(piece, "iov") and len(piece.iov):  # a Scatter: records in the block
                at = piece.iov[:, 0].astype(np.int64) - _MEM_AT
                assert (at >= 0).all() and (at + piece.iov[:, 1] <= BLOCK_SIZE).all()
    else:
        _idbs, heads, ends, copies = w.place(*args)
        for j in range(len(heads)):
            if j not in copies:
                assert 0 <= heads[j] < ends[j] <= BLOCK_SIZE, "record outside the block"
    _MEM[:] = block


class _NoPoll:
    """Stands in for the ring's poll object: nothing more ever arrives."""

    def poll(self, timeout: int) -> list[tuple[int, int]]:
        return []


_PY_MEM = bytearray(2 * BLOCK_SIZE)  # the block, then one more the walker must not reach
_PY_BASE = np.frombuffer(_PY_MEM, dtype=np.uint8).ctypes.data


def _py_ring() -> Ring:
    """A :class:`Ring` over :data:`_PY_MEM` with no socket: its Python walkers only."""
    ring = Ring.__new__(Ring)
    ring._view = memoryview(_PY_MEM)
    ring.block_size = BLOCK_SIZE
    ring.block_count = 1
    ring._next = 0
    ring._poll = _NoPoll()  # type: ignore[assignment]
    return ring


def _run_ring_py(data: bytes) -> None:
    """Ring.blocks() and Ring.typed_blocks(), the per-packet walkers, over the same block:
    MalformedPacket, or frames that lie inside the block with their claimed lengths and,
    where the block is valid, the reference walker's packets."""
    block = data[:BLOCK_SIZE].ljust(BLOCK_SIZE, b"\x00")
    _status, count, first = struct.unpack_from("=III", block, 8)
    ref, valid = reference_walk(block, 0, BLOCK_SIZE, min(count, 1 << 16), first)
    for typed in (False, True):
        _PY_MEM[:BLOCK_SIZE] = block
        _PY_MEM[8] |= 1  # TP_STATUS_USER: the block is ours
        ring = _py_ring()
        gen = ring.typed_blocks(0) if typed else ring.blocks(0)
        try:
            frames = next(gen)
        except MalformedPacket:
            gen.close()
            continue
        try:
            got = []
            for item in frames:
                mv = item[1]
                addr = np.frombuffer(mv, dtype=np.uint8).ctypes.data - _PY_BASE if len(mv) else 0
                assert 0 <= addr and addr + len(mv) <= BLOCK_SIZE, "a frame outside the block"
                got.append((addr, len(mv)))
            if valid and count <= 1 << 16:
                want = []
                for slot in ref:
                    (snap,) = struct.unpack_from("=I", block, slot + 12)
                    (mac,) = struct.unpack_from("=H", block, slot + 24)
                    if typed or block[slot + 58] != 4:
                        want.append((slot + mac if snap else 0, snap))
                assert got == want, "the per-packet walker and the reference disagree"
        finally:
            gen.close()


def _ring_seeds(rng: random.Random) -> list[bytes]:
    return [build_block(rng) for _ in range(64)]


def _mutate_ring(rng: random.Random, data: bytes) -> bytes:
    """Structure-aware: set one field of the block descriptor or of one slot header to a
    boundary value (the chain's links, frame offsets and lengths, the packet count)."""
    mem = bytearray(data[:BLOCK_SIZE].ljust(BLOCK_SIZE, b"\x00"))
    count, first = struct.unpack_from("=II", mem, 12)
    slots, _ = reference_walk(mem, 0, BLOCK_SIZE, min(count, 4096), first)
    values = (0, 1, 4, 7, 8, 12, 48, 68, 0xFFFF, 0x10000, BLOCK_SIZE - 48, BLOCK_SIZE,
              BLOCK_SIZE + 8, 0x7FFFFFFF, 0xFFFFFFF8, 0xFFFFFFFF)  # fmt: skip
    if not slots or rng.random() < 0.25:
        field_at = rng.choice((12, 16, 20))  # num_pkts, offset_to_first_pkt, blk_len
        v = rng.choice(values + (count + 1, count - 1, count * 2, first + 8, first - 8))
        struct.pack_into("=I", mem, field_at, v % (1 << 32))
        return bytes(mem)
    slot = rng.choice(slots)
    which = rng.choice((0, 0, 0, 12, 12, 24))  # tp_next_offset, tp_snaplen, tp_mac
    if which == 24:
        struct.pack_into("=H", mem, slot + 24, rng.choice(values) & 0xFFFF)
        return bytes(mem)
    old = struct.unpack_from("=I", mem, slot + which)[0]
    v = rng.choice(values + (old + 4, old - 4, old + 8, old - 8, old * 2))
    struct.pack_into("=I", mem, slot + which, v % (1 << 32))
    return bytes(mem)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("pcap", "CaptureReader on pcap files", _pcap_seeds, _run_reader),
        Target("pcapng", "CaptureReader on pcapng files", _pcapng_seeds, _run_reader),
        Target("gre", "decap_linktype (GRE) + layer parsers", _decap_seeds("gre"), _run_decap),
        Target(
            "erspan", "decap_linktype (ERSPAN) + layer parsers", _decap_seeds("erspan"), _run_decap
        ),
        Target(
            "ipv4-reasm",
            "IPv4 fragments through decap + Reassembler",
            _ipv4_seeds,
            _run_reassembly,
            _mutate_fragments,
        ),
        Target(
            "ipv6-reasm",
            "IPv6 fragments through decap + Reassembler.push_ipv6",
            _ipv6_seeds,
            _run_reassembly,
            _mutate_fragments,
        ),
        Target(
            "ring-py",
            "Ring.blocks/typed_blocks on TPACKET_V3 blocks",
            _ring_seeds,
            _run_ring_py,
            _mutate_ring,
        ),
        Target(
            "ring",
            "BlockRecords.offsets/header_fields/place on TPACKET_V3 blocks",
            _ring_seeds,
            _run_ring,
            _mutate_ring,
        ),
    )  # fmt: skip
}
