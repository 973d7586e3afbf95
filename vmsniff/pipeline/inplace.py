"""Encode packets of a TPACKET_V3 ring block into pcap/pcapng records *inside the block*.

Shared by the fast paths of ``receive`` (:mod:`.fastpath`) and ``capture``
(:mod:`.framepath`). They work out, with numpy over the whole block, where each packet's frame
starts, how much of it to keep and how to file it; :class:`BlockRecords` then writes each
record's pcap header (16 bytes), or pcapng Enhanced Packet Block head (28 bytes), right before
the frame and the EPB's padding, ``epb_flags`` option and length right after it, so that a
record is one contiguous slice of the ring: Python creates one object per packet, the slice.

What may be overwritten: a packet's slot runs from its ``tpacket3_hdr`` to the next packet's;
every field was read into arrays before anything is written, so a record may use its slot
from 48 bytes in (the previous record's trailer may have used the first 48) up to 48 bytes into
the next slot (the next record's head starts further in: the frame sits at ``tp_mac`` >= 68);
the block's last record stops at the block's end. A record that would not fit is encoded the
ordinary way by the sink's :class:`~.encode.Encoder` (counted in :attr:`BlockRecords.copied`).
The block is the reader's until it is handed back to the kernel, so writing into it is safe.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from typing import Any

import numpy as np

from vmsniff.pipeline.core import Packet
from vmsniff.pipeline.encode import Encoder, PcapEncoder, PcapngEncoder

__all__ = ["Array", "BlockRecords", "Describe", "groups"]

Array = np.ndarray[Any, Any]
#: code -> (session, link type, erspan, interface name): how packets of one code are filed.
Describe = Callable[[int], tuple[int | None, int, bool, str | None]]
SLOT_HEADER = 48  # sizeof(tpacket3_hdr), TPACKET_ALIGN'ed
_OPT_FLAGS = 2 | 4 << 16  # epb_flags option: code 2, length 4 (pcapng section 4.3.1)


class BlockRecords:
    """In-place record writer over ``memory`` (the ring's mmap, or a bytearray in tests)."""

    def __init__(
        self,
        memory: mmap.mmap | bytearray,
        block_size: int,
        encoder: Encoder,
        describe: Describe,
    ) -> None:
        if not isinstance(encoder, PcapEncoder | PcapngEncoder):
            raise TypeError("records in place are pcap or pcapng")
        self.block_size = block_size
        self.encoder = encoder
        self.describe = describe
        self.pcapng = isinstance(encoder, PcapngEncoder)
        self.mem = memory
        self.view = memoryview(memory)
        self.words = self.view.cast("I")
        self.a = np.frombuffer(memory, dtype=np.uint8)
        self.u32 = np.frombuffer(memory, dtype=np.uint32)
        self.copied = 0
        """Records encoded the ordinary way because they did not fit in their slot."""

    def close(self) -> None:
        """Let go of the buffer (so that the ring can be unmapped)."""
        del self.a, self.u32
        self.words.release()
        self.view.release()

    def offsets(self, base: int, count: int, first: int) -> Array:
        """Where each of the block's packets starts: the ``tp_next_offset`` chain (the one
        per-packet Python loop; ~0.1 µs a packet)."""
        words = self.words
        out = [0] * count
        off = base + first
        for i in range(count):
            out[i] = off
            off += words[off >> 2]
        return np.fromiter(out, dtype=np.int64, count=count)

    def header_fields(self, offs: Array) -> tuple[Array, Array, Array, Array, Array]:
        """``(timestamp_ns, snaplen, len, mac, pkttype)`` of each packet."""
        u32 = self.u32
        o4 = offs >> 2
        ts = u32[o4 + 1].astype(np.int64) * 1_000_000_000 + u32[o4 + 2]
        snap = u32[o4 + 3].astype(np.int64)
        wire = u32[o4 + 4].astype(np.int64)
        mac = (u32[o4 + 6] & 0xFFFF).astype(np.int64)
        pkttype = self.a[offs + 58]
        return ts, snap, wire, mac, pkttype

    def encode(
        self,
        base: int,
        offs: Array,
        sel: Array,
        start: Array,
        cap: Array,
        orig: Array,
        ts: Array,
        code: Array,
        direction: Array,
    ) -> tuple[list[bytes], list[Any]]:
        """``(interface blocks, records)`` for the packets ``sel`` (indices into the block's
        arrays, in order): frame at ``start``, ``cap`` bytes kept of ``orig``, filed by
        ``code`` (see :data:`Describe`) with ``direction`` as ``epb_flags``. The interface
        blocks (pcapng, new interfaces only) must be written before the records."""
        s = start[sel]
        c = cap[sel]
        o = np.maximum(orig[sel], c)
        t = ts[sel]
        d = direction[sel]
        idbs: list[bytes] = []
        if self.pcapng:
            ifidx = np.zeros(len(sel), dtype=np.int64)
            enc = self.encoder
            assert isinstance(enc, PcapngEncoder)
            for value, where in groups(code[sel] * 4 + d):
                session, linktype, erspan, name = self.describe(value // 4)
                index, idb = enc.interface(session, value % 4, linktype, erspan, name)
                ifidx[where] = index
                if idb:
                    idbs.append(idb)
            pad = -c % 4
            opt = np.where(d != 0, 12, 0)
            total = 32 + c + pad + opt
            heads = s - 28
            ends = s + c + pad + opt + 4
        else:
            heads = s - 16
            ends = s + c
        limit = np.empty(len(offs), dtype=np.int64)
        limit[:-1] = offs[1:] + SLOT_HEADER
        limit[-1] = base + self.block_size
        fits = (heads >= offs[sel] + SLOT_HEADER) & (ends <= limit[sel])
        copies: dict[int, bytes] = {}
        if not fits.all():
            for j in np.flatnonzero(~fits).tolist():
                copies[j] = self._copy(int(s[j]), int(c[j]), int(o[j]), int(t[j]),
                                       int(code[sel[j]]), int(d[j]))  # fmt: skip
            self.copied += len(copies)
        k = np.flatnonzero(fits) if copies else slice(None)
        if self.pcapng:
            tk = t[k]
            tot = total[k]
            self._put(heads[k], (6, tot, ifidx[k], tk >> 32, tk & 0xFFFFFFFF, c[k], o[k]))
            end = s[k] + c[k]
            a = self.a
            for j in range(3):  # padding: zero, the trailer overwrites what is not padding
                a[end + j] = 0
            at = end + pad[k]
            dk = d[k]
            marked = dk != 0
            if marked.all():
                self._put(at, (_OPT_FLAGS, dk, 0, tot))
            else:
                w = np.flatnonzero(marked)
                self._put(at[w], (_OPT_FLAGS, dk[w], 0, tot[w]))
                w = np.flatnonzero(~marked)
                self._put(at[w], (tot[w],))
        else:
            tk = t[k]
            self._put(heads[k], (tk // 1_000_000_000, tk % 1_000_000_000, c[k], o[k]))
        mem = self.mem
        records: list[Any] = [mem[x:y] for x, y in zip(heads.tolist(), ends.tolist(), strict=True)]
        for j, rec in copies.items():
            records[j] = rec
        return idbs, records

    def _put(self, pos: Array, words: tuple[Any, ...]) -> None:
        """Write consecutive little-endian 32-bit ``words`` (arrays or ints) at byte offsets
        ``pos``: one store per word when every offset is 4-aligned (the usual case)."""
        if not len(pos):
            return
        if not (pos & 3).any():
            w = pos >> 2
            for j, col in enumerate(words):
                self.u32[w + j] = col
            return
        block = np.empty((len(pos), len(words)), dtype="<u4")
        for j, col in enumerate(words):
            block[:, j] = col
        self.a[pos[:, None] + np.arange(4 * len(words))] = block.view(np.uint8)

    def _copy(self, start: int, cap: int, orig: int, ts: int, code: int, direction: int) -> bytes:
        session, linktype, erspan, name = self.describe(code)
        data = bytes(self.view[start : start + cap])
        pkt = Packet(ts, data, orig, linktype, session, direction, erspan, name)
        # Its interface is known already (its block, if new, is among this batch's).
        return self.encoder.encode(pkt)


def groups(values: Array) -> list[tuple[int, Any]]:
    """``(value, where)`` for each distinct value, in order of first appearance; ``where``
    selects its elements. A few passes when there are few values (the usual case: one session
    and its two directions), a sort otherwise."""
    out: list[tuple[int, Any]] = []
    rest = np.ones(len(values), dtype=bool)
    for _ in range(4):
        left = np.flatnonzero(rest)
        if not len(left):
            return out
        v = values[left[0]]
        where = rest & (values == v)
        out.append((int(v), where))
        rest &= ~where
    left = np.flatnonzero(rest)
    if len(left):
        uniq, first, inverse = np.unique(values[left], return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        for u in np.argsort(first).tolist():
            out.append((int(uniq[u]), left[inverse == u]))
    return out
