"""TPACKET_V3 blocks for the ring walker target: a builder (the kernel's layout, as
``linux/if_packet.h`` and ``net/packet/af_packet.c`` write it) and the slow reference walker.
"""

from __future__ import annotations

import random
import struct

__all__ = ["BLOCK_HEADER", "BLOCK_SIZE", "build_block", "reference_walk"]

BLOCK_HEADER = 48  # tpacket_block_desc + tpacket_hdr_v1, aligned to 8: offset_to_first_pkt
BLOCK_SIZE = 16384
_PKT = struct.Struct("=IIIIIIHH")  # next_offset, sec, nsec, snaplen, len, status, mac, net
_SLOT_MIN = 48 + 20  # tpacket3_hdr (aligned) + sockaddr_ll: what header_fields reads


def build_block(rng: random.Random, size: int = BLOCK_SIZE) -> bytes:
    """A block as the kernel fills it: packets of IMIX-like sizes, 8-aligned slots, frames at
    one ``tp_mac`` for the socket, the chain ended by 0, ``blk_len`` set (or not), some
    packets outgoing; sometimes over the leftovers of an earlier fill."""
    mem = bytearray(rng.randbytes(size) if rng.random() < 0.3 else size)
    mac = rng.choice((68, 80, 96, 98))
    sizes = rng.choice(([60] * 7 + [590] * 4 + [1514], [64], [60, 61, 62, 63, 64], [200, 1400]))
    many = rng.random() < 0.5  # >= 64 packets: the stride and scan shortcuts
    packets: list[bytes] = []
    used = BLOCK_HEADER
    while True:
        n = rng.choice(sizes) if not many else rng.choice(sizes[:2] if len(sizes) > 2 else sizes)
        if many:
            n = min(n, 100)
        step = (mac + n + 7) & ~7
        if used + step > size or (not many and len(packets) >= rng.randrange(1, 40)):
            break
        packets.append(rng.randbytes(n))
        used += step
    off = BLOCK_HEADER
    for i, data in enumerate(packets):
        step = (mac + len(data) + 7) & ~7
        nxt = step if i + 1 < len(packets) else 0
        struct.pack_into("=IIIIIIHH20x", mem, off, nxt, 1_700_000_000 + i, i * 1000,
                         len(data), len(data) + rng.choice((0, 0, 0, 40)), 1, mac, mac)  # fmt: skip
        pkttype = 4 if rng.random() < 0.2 else 0
        struct.pack_into("=HHiHBB8s", mem, off + 48, 17, 8, 1, 1, pkttype, 6, data[:8])
        mem[off + mac : off + mac + len(data)] = data
        off += step
    blk_len = off if rng.random() < 0.8 else 0
    struct.pack_into("=IIIIII", mem, 0, 1, 0, 1, len(packets), BLOCK_HEADER, blk_len)
    return bytes(mem)


def reference_walk(mem: bytes | bytearray, base: int, size: int, count: int, first: int
                   ) -> tuple[list[int], bool]:  # fmt: skip
    """``(slots, valid)``: the ``tp_next_offset`` chain walked one packet at a time with
    ``struct`` at the exact offsets, as far as it stays in the block, and whether the block
    is one the kernel could have written: ``count`` slots, each 8-aligned, after the block
    descriptor, with its header and its frame inside the block."""
    end = base + size
    out: list[int] = []
    pos = base + first
    valid = first >= BLOCK_HEADER
    for i in range(count):
        if pos + _SLOT_MIN > end or pos < base:
            return out, False
        nxt, _s, _n, snap, _l, _st, mac, _net = _PKT.unpack_from(mem, pos)
        out.append(pos)
        if (pos - base) % 8 or pos + mac + snap > end:
            valid = False
        if i + 1 < count:
            if nxt == 0:
                return out, False
            pos += nxt
    return out, valid
