"""Build TPACKET_V3 blocks in memory, laid out as the kernel lays them (linux/if_packet.h)."""

from __future__ import annotations

import struct

from vmsniff.formats.packet import BLOCK_HEADER


def block(
    packets: list[tuple[int, bytes]] | list[tuple[int, bytes, int]],
    *,
    size: int = 1 << 16,
    mac: int = 96,
    base: int = 0,
    total: int | None = None,
    blk_len: bool = True,
    into: bytearray | None = None,
) -> tuple[bytearray, int, int, int]:
    """``(memory, base, count, first)``: ``packets`` of ``(timestamp_ns, bytes[, pkttype])``
    written from ``base`` into a block of ``size`` bytes inside ``memory`` (``total`` bytes,
    default ``base + size``), each at ``mac`` bytes into its slot, slots 8-aligned. The block
    header says how much of the block is used (``blk_len``) unless ``blk_len`` is false.

    ``into``: write over that memory instead, as the kernel refills a block handed back: the
    bytes it does not write (between a slot's header and its frame, after the last slot)
    keep what an earlier fill left there."""
    mem = into if into is not None else bytearray(total if total is not None else base + size)
    off = BLOCK_HEADER
    for n, item in enumerate(packets):
        ts, data = item[0], item[1]
        pkttype = item[2] if len(item) == 3 else 0
        step = (mac + len(data) + 7) & ~7
        if off + mac + len(data) > size:
            raise ValueError("packets do not fit in the block")
        sec, nsec = divmod(ts, 1_000_000_000)
        nxt = step if n + 1 < len(packets) else 0  # the kernel ends the chain with 0
        # tpacket3_hdr (all 48 bytes), then sockaddr_ll (20): what the kernel writes
        struct.pack_into("=IIIIIIHH20x", mem, base + off, nxt, sec, nsec, len(data), len(data),
                         1, mac, mac)  # fmt: skip
        struct.pack_into("=HHiHBB8s", mem, base + off + 48, 17, 8, 1, 1, pkttype, 6,
                         bytes(data[6:12]))  # fmt: skip
        mem[base + off + mac : base + off + mac + len(data)] = data
        off += step
    struct.pack_into("=IIII", mem, base + 8, 1, len(packets), BLOCK_HEADER, off if blk_len else 0)
    return mem, base, len(packets), BLOCK_HEADER
