"""Encode packets of a TPACKET_V3 ring block into pcap/pcapng records *inside the block*.

Shared by the fast paths of ``receive`` (:mod:`.fastpath`) and ``capture``
(:mod:`.framepath`). They work out, with numpy over the whole block, where each packet's frame
starts, how much of it to keep and how to file it; :class:`BlockRecords` then writes each
record's pcap header (16 bytes), or pcapng Enhanced Packet Block head (28 bytes), right before
the frame and the EPB's padding, ``epb_flags`` option and length right after it, so that a
record is one contiguous stretch of the ring. No Python object is made per record: a run of
records of one length at one distance (same-sized packets) leaves as one strided numpy copy,
the others as a :class:`~.scatter.Scatter` that ``writev`` sends straight from the ring.

What may be overwritten: a packet's slot runs from its ``tpacket3_hdr`` to the next packet's;
every field was read into arrays before anything is written, so a record may use its slot
from 48 bytes in (the previous record's trailer may have used the first 48) up to 48 bytes into
the next slot (the next record's head starts further in: the frame sits at ``tp_mac`` >= 68);
the block's last record stops at the block's end. A record that would not fit is encoded the
ordinary way by the sink's :class:`~.encode.Encoder` (counted in :attr:`BlockRecords.copied`).
The block is the reader's until it is handed back to the kernel, so writing into it is safe.
"""

from __future__ import annotations

import itertools
import mmap
from collections.abc import Callable
from typing import Any

import numpy as np

from vmsniff.errors import MalformedPacket
from vmsniff.formats.capture import (
    BT_EPB,
    EPB_FLAGS,
    EPB_FLAGS_OPTION,
    EPB_HEAD,
    EPB_TRAILER_LEN,
    PCAP_RECORD_HEADER,
)
from vmsniff.formats.packet import (
    BLOCK_HEADER,
    BLOCK_LEN_OFFSET,
    SLL_PKTTYPE_OFFSET,
    SLOT_HEADER,
    SLOT_READ,
    TP_LEN_WORD,
    TP_MAC_WORD,
    TP_NSEC_WORD,
    TP_SEC_WORD,
    TP_SNAPLEN_WORD,
)
from vmsniff.pcap.encoder import Encoder, Packet, PcapEncoder, PcapngEncoder
from vmsniff.pipeline.scatter import Scatter

__all__ = ["Array", "BlockRecords", "Describe", "groups"]

Array = np.ndarray[Any, Any]
#: code -> (session, link type, erspan, interface name): how packets of one code are filed.
Describe = Callable[[int], tuple[int | None, int, bool, str | None]]
_SLOT_READ = SLOT_READ  # what header_fields reads of a slot: up to sockaddr_ll's end
_SCAN = 64  # packets in a block from which :meth:`BlockRecords._scan` pays off
_RUN = 16  # packets a guessed stride (or a run of same-shaped records) must cover to pay off
_WALK = 64  # packets walked one by one after a stride guess failed
_TAIL = 4  # equal steps at the end of a walk that make a stride worth guessing again
_OPT_FLAGS = EPB_FLAGS | 4 << 16  # the epb_flags option's code and length, as one LE word
# A pcapng record around its frame: the EPB head before it; after it the padding, then the
# epb_flags option and opt_endofopt (marked packets only) and the trailing total length.
_EPB_BEFORE = EPB_HEAD.size
_EPB_OPTION = EPB_FLAGS_OPTION.size
_EPB_FIXED = EPB_HEAD.size + EPB_TRAILER_LEN  # the block's length but for frame, pad, option
_PCAP_BEFORE = PCAP_RECORD_HEADER.size
# The 32-bit words of a tpacket3_hdr that header_fields reads, from the slot's first word.
_NEXT, _SEC, _NSEC, _SNAP, _LEN, _MAC = (
    0,
    TP_SEC_WORD,
    TP_NSEC_WORD,
    TP_SNAPLEN_WORD,
    TP_LEN_WORD,
    TP_MAC_WORD,
)


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
        self.address = self.a.ctypes.data
        self._shifted: dict[int, Array] = {0: self.u32}
        empty = np.empty(0, dtype=np.int64)
        self._checked: tuple[Array, Array, Array] = (empty, empty, empty)
        self.copied = 0
        """Records encoded the ordinary way because they did not fit in their slot."""

    def close(self) -> None:
        """Let go of the buffer (so that the ring can be unmapped)."""
        del self.a, self.u32, self._shifted
        self.words.release()
        self.view.release()

    def offsets(self, base: int, count: int, first: int) -> Array:
        """Where each of the block's packets starts: the ``tp_next_offset`` chain.

        Following the chain is inherently one packet at a time, so when there are many
        packets it is found another way: by :meth:`_stride` when they are all the same size,
        else by :meth:`_scan`; by :meth:`_follow` for a few packets, or when neither answer
        holds. Each way is there because it was measured to pay (``bench/ring_offsets.py``,
        full 1 MiB blocks, µs per packet; a plain Python walk of the chain is 0.068 for
        64-byte frames and 0.079 for IMIX): 64 B: ``_stride`` 0.003, ``_follow`` 0.006,
        ``_scan`` 0.023; IMIX: ``_scan`` 0.050, ``_follow`` 0.127 (its guesses keep failing),
        ``_stride`` declines. Next to receive's whole cost per packet (~0.3 µs for 64 B, ~0.6
        for IMIX) the gains are a few per cent; the checks of :meth:`_inside` cost as much.

        The kernel wrote the block, but a chain that leaves it would have every later step
        read and write outside it: a block whose slots or frames do not all lie inside it (or
        that claims more packets than it can hold) raises :class:`MalformedPacket`."""
        if not count:
            return np.empty(0, dtype=np.int64)
        if (
            first < BLOCK_HEADER
            or first & 7
            or count > (self.block_size - first - _SLOT_READ) // 8 + 1
        ):
            raise MalformedPacket(f"ring block: {count} packets from offset {first} cannot fit")
        found = None
        if count >= _SCAN:
            found = self._stride(base, count, first)
            if found is None:
                found = self._scan(base, count, first)
        if found is None:
            try:
                found = self._follow(base, count, first)
            except IndexError:  # a link pointed past the ring's memory
                found = None
        if found is None or not self._inside(base, found):
            raise MalformedPacket("ring block: a packet lies outside the block")
        return found

    def _inside(self, base: int, offs: Array) -> bool:
        """Every slot is 8 bytes past the one before or more (a ``tp_next_offset`` of 0 ends
        the chain early), and its header and frame end inside the block."""
        end = base + self.block_size
        if int(offs[-1]) + _SLOT_READ > end:
            return False
        if len(offs) > 1:
            steps = np.diff(offs)
            if (steps <= 0).any() or (steps & 7).any():
                return False
        words = offs >> 2
        snap = self.u32[words + _SNAP].astype(np.int64)
        mac = (self.u32[words + _MAC] & 0xFFFF).astype(np.int64)
        self._checked = (offs, snap, mac)  # header_fields reads them again: hand them over
        return not (offs + mac + snap > end).any()

    def _stride(self, base: int, count: int, first: int) -> Array | None:
        """The chain when every packet of the block is the same size (a flood, a bulk
        transfer): then the slots are evenly spaced, and one numpy read of their
        ``tp_next_offset`` checks it (the first :data:`_RUN` first, which mixed sizes seldom
        pass). Cheaper than :meth:`_scan`, which reads the whole block."""
        start = base + first
        step = int(self.words[start >> 2])
        if (
            not step
            or step & 3
            or start & 3
            or start + (count - 1) * step >= base + self.block_size
        ):
            return None
        u32 = self.u32
        slots = np.arange(start, start + count * step, step, dtype=np.int64)
        if (u32[slots[: _RUN - 1] >> 2] != step).any():
            return None
        if (u32[slots[_RUN - 1 : -1] >> 2] != step).any():
            return None
        return slots

    def _scan(self, base: int, count: int, first: int) -> Array | None:
        """The chain read off the block at once, or None when it cannot be.

        Every slot starts a multiple of 8 bytes after the first (the kernel aligns
        ``tp_next_offset`` to 8), holds the same ``tp_mac``/``tp_net`` pair as every other
        slot of the socket, and, but for the last, says ``tp_next_offset = align8(tp_mac +
        tp_snaplen)``. So the slots but the last are among the 8-aligned places, up to the
        block's used length (``blk_len``), where that pair and that sum hold: one numpy
        comparison over the block and one over what it found. (The sum weeds out what earlier
        fills of the block left in the bytes the kernel skips between a slot's header and its
        frame: an old slot's ``tp_mac`` sits there once in a while.)

        The first ``count - 1`` places found are the chain exactly when each is the one before
        plus its ``tp_next_offset``: by induction from the first, they are its first links,
        and the last slot is where the one before it points. Anything else that looks like a
        slot (a frame's bytes: a VM can send anything) makes that check fail, and
        :meth:`_follow` walks instead: never a wrong answer, at worst the walk's cost."""
        start = base + first
        if start & 3 or base & 3 or count < 2:
            return None
        u32 = self.u32
        used = int(u32[(base + BLOCK_LEN_OFFSET) >> 2])  # tpacket_hdr_v1.blk_len
        end = base + (used if first < used <= self.block_size else self.block_size)
        mac_at = 4 * _MAC  # tp_mac/tp_net: bytes 24..27 of a slot
        places = (end - (mac_at + 4) - start) // 8 + 1  # 8-aligned places with room for them
        if places < count:
            return None
        at = (start + mac_at) >> 2
        marks = u32[at : at + 2 * places : 2]
        mark = int(marks[0])
        hits = np.flatnonzero(marks == mark) * 8 + start
        word = hits >> 2
        nxt = u32[word]
        hits = hits[nxt == ((mark & 0xFFFF) + u32[word + _SNAP] + 7) & 0xFFFFFFF8]
        if len(hits) < count - 1:
            return None
        slots = np.empty(count, dtype=np.int64)
        slots[:-1] = hits[: count - 1]
        steps = u32[slots[:-1] >> 2]
        slots[-1] = slots[-2] + steps[-1]
        if slots[0] != start or (np.diff(slots[:-1]) != steps[:-1]).any():
            return None
        return slots

    def _follow(self, base: int, count: int, first: int) -> Array:
        """The chain, guessed and walked.

        From a packet whose slot is ``step`` bytes, the next ones are taken to be ``step``
        apart, and one numpy read of their ``tp_next_offset`` checks it (packet ``j+1`` is where
        the guess says exactly when packets ``0..j`` say ``step``). A run of equal-sized
        packets costs a few numpy calls; where sizes change all the time (IMIX) the guess soon
        fails and the next :data:`_WALK` packets are walked in Python (~0.15 µs a packet here)
        before guessing again."""
        words = self.words
        u32 = self.u32
        end = base + self.block_size
        out = np.empty(count, dtype=np.int64)
        pos = base + first
        i = 0
        guessing = True
        while i < count:
            if pos >= end:
                raise IndexError("the chain left the block")
            step = words[pos >> 2]
            guess = _RUN
            while guessing and step and count - i >= _RUN and pos < end:
                # guess the next `guess` packets (inside the block), growing while it holds
                k = min(count - i, guess, (end - 1 - pos) // step + 1)
                cand = np.arange(pos, pos + k * step, step, dtype=np.int64)
                nxt = u32[cand >> 2]
                bad = np.flatnonzero(nxt[:-1] != step)
                m = int(bad[0]) if len(bad) else k - 1  # cand[:m + 1] are packets
                out[i : i + m + 1] = cand[: m + 1]
                i += m + 1
                pos = int(cand[m]) + int(nxt[m])
                if m + 1 < k:
                    break
                guess *= 4
            if i >= count:
                break
            if pos >= end:
                raise IndexError("the chain left the block")
            walked = []
            for _ in range(min(_WALK, count - i)):
                walked.append(pos)
                pos += words[pos >> 2]
            out[i : i + len(walked)] = walked
            i += len(walked)
            # guess again only after a few equal steps in a row
            tail = walked[-_TAIL:] + [pos]
            guessing = len(tail) > _TAIL and len({b - a for a, b in itertools.pairwise(tail)}) == 1
        return out

    def header_fields(self, offs: Array) -> tuple[Array, Array, Array, Array, Array]:
        """``(timestamp_ns, snaplen, len, mac, pkttype)`` of each packet."""
        u32 = self.u32
        words = offs >> 2
        ts = u32[words + _SEC].astype(np.int64) * 1_000_000_000 + u32[words + _NSEC]
        checked, snap, mac = self._checked
        if checked is not offs:  # not the answer of the last offsets(): read them
            snap = u32[words + _SNAP].astype(np.int64)
            mac = (u32[words + _MAC] & 0xFFFF).astype(np.int64)
        wire = u32[words + _LEN].astype(np.int64)
        pkttype = self.a[offs + SLL_PKTTYPE_OFFSET]
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
        *,
        joined: bool = False,
    ) -> tuple[list[bytes], list[Any]]:
        """``(interface blocks, records)`` for the packets ``sel`` (indices into the block's
        arrays, in order): frame at ``start``, ``cap`` bytes kept of ``orig``, filed by
        ``code`` (see :data:`Describe`) with ``direction`` as ``epb_flags``. The interface
        blocks (pcapng, new interfaces only) must be written before the records.

        ``records`` has one bytes-like per packet; with ``joined``, it is only the records'
        bytes in order, in as few pieces as :meth:`_pieces` makes."""
        idbs, heads, ends, copies = self.place(base, offs, sel, start, cap, orig, ts, code,
                                               direction)  # fmt: skip
        if joined and not copies:
            return idbs, self._pieces(heads, ends)
        mem = self.mem
        records: list[Any] = [mem[x:y] for x, y in zip(heads.tolist(), ends.tolist(), strict=True)]
        for j, rec in copies.items():
            records[j] = rec
        return idbs, records

    def place(
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
    ) -> tuple[list[bytes], Array, Array, dict[int, bytes]]:
        """Write the records of :meth:`encode` in place: ``(interface blocks, heads, ends,
        copies)``, record ``j`` being ``memory[heads[j]:ends[j]]``, or ``copies[j]`` when it
        did not fit in its slot (encoded the ordinary way)."""
        whole = len(sel) == len(offs)  # every packet (sel is sorted): no need to pick
        pick: Any = slice(None) if whole else sel
        # per record, in order: where its frame starts, the bytes kept and the original length
        frame_at = start[pick]
        kept = cap[pick]
        orig_len = np.maximum(orig[pick], kept)
        stamp = ts[pick]
        flags = direction[pick]  # epb_flags direction bits (0: unmarked, no option)
        codes = code[pick]
        idbs: list[bytes] = []
        if self.pcapng:
            ifidx = self._interfaces(codes, flags, idbs)
            pad = -kept % 4
            option = np.where(flags != 0, _EPB_OPTION, 0)
            total = _EPB_FIXED + kept + pad + option
            heads = frame_at - _EPB_BEFORE
            ends = frame_at + kept + pad + option + EPB_TRAILER_LEN
        else:
            heads = frame_at - _PCAP_BEFORE
            ends = frame_at + kept
        # a record may use its slot from SLOT_HEADER in, up to SLOT_HEADER into the next one
        room = np.empty(len(offs), dtype=np.int64)
        room[:-1] = offs[1:]
        room[-1] = base + self.block_size - SLOT_HEADER
        slot = offs[pick]
        fits = (heads >= slot + SLOT_HEADER) & (ends <= room[pick] + SLOT_HEADER)
        copies: dict[int, bytes] = {}
        if not fits.all():
            for j in np.flatnonzero(~fits).tolist():
                copies[j] = self._copy(int(frame_at[j]), int(kept[j]), int(orig_len[j]),
                                       int(stamp[j]), int(codes[j]), int(flags[j]))  # fmt: skip
            self.copied += len(copies)
        # the records written in place: those that fit
        inplace = np.flatnonzero(fits) if copies else slice(None)
        if self.pcapng:
            ts_in = stamp[inplace]
            total_in = total[inplace]
            ifidx_in = ifidx[inplace] if isinstance(ifidx, np.ndarray) else ifidx
            head = (BT_EPB, total_in, ifidx_in, ts_in >> 32, ts_in & 0xFFFFFFFF, kept[inplace],
                    orig_len[inplace])  # fmt: skip
            self._put(heads[inplace], head)
            frame_end = frame_at[inplace] + kept[inplace]
            a = self.a
            for j in range(3):  # padding: zero, the trailer overwrites what is not padding
                a[frame_end + j] = 0
            after = frame_end + pad[inplace]
            flags_in = flags[inplace]
            marked = flags_in != 0
            if marked.all():
                self._put(after, (_OPT_FLAGS, flags_in, 0, total_in))
            else:
                which = np.flatnonzero(marked)
                self._put(after[which], (_OPT_FLAGS, flags_in[which], 0, total_in[which]))
                which = np.flatnonzero(~marked)
                self._put(after[which], (total_in[which],))
        else:
            ts_in = stamp[inplace]
            self._put(heads[inplace], (ts_in // 1_000_000_000, ts_in % 1_000_000_000,
                                       kept[inplace], orig_len[inplace]))  # fmt: skip
        return idbs, heads, ends, copies

    def _interfaces(self, codes: Array, direction: Array, idbs: list[bytes]) -> Array | int:
        """Each record's pcapng interface index (one int when all share one), appending the
        Interface Description Blocks of interfaces new to the file to ``idbs``. A named
        interface (capture's NIC) holds both directions, so one code means one interface."""
        enc = self.encoder
        assert isinstance(enc, PcapngEncoder)
        if len(codes) and not (codes != codes[0]).any():
            session, linktype, erspan, name = self.describe(int(codes[0]))
            if name is not None:
                index, idb = enc.interface(session, 0, linktype, erspan, name)
                if idb:
                    idbs.append(idb)
                return index
        ifidx = np.zeros(len(codes), dtype=np.int64)
        for value, where in groups(codes * 4 + direction):
            session, linktype, erspan, name = self.describe(value // 4)
            index, idb = enc.interface(session, value % 4, linktype, erspan, name)
            ifidx[where] = index
            if idb:
                idbs.append(idb)
        return ifidx

    def _pieces(self, heads: Array, ends: Array) -> list[Any]:
        """The bytes from each head to its end, in order, as few objects: a run of records of
        one length at one distance from each other (same-sized packets) is one strided numpy
        copy; records in shorter runs (mixed sizes) stay where they are, as a
        :class:`~.scatter.Scatter` for ``writev``."""
        n = len(heads)
        lens = ends - heads
        if n < _RUN:
            return [self._scatter(heads, lens)]
        steps = np.diff(heads)
        new = np.empty(n, dtype=bool)  # a run starts here: another length or another step
        new[0] = True
        new[1:] = lens[1:] != lens[:-1]
        new[2:] |= steps[1:] != steps[:-1]
        starts = np.flatnonzero(new)
        if len(starts) * _RUN > n:
            return [self._scatter(heads, lens)]
        sizes = np.diff(starts, append=n)
        long = sizes >= _RUN
        out: list[Any] = []
        loose = 0  # first record not yet in a piece
        for r in np.flatnonzero(long).tolist():
            s, count = int(starts[r]), int(sizes[r])
            if loose < s:
                out.append(self._scatter(heads[loose:s], lens[loose:s]))
            h = int(heads[s])
            shape = (count, int(lens[s]))
            out.append(np.ndarray(shape, np.uint8, self.mem, h, (int(steps[s]), 1)).tobytes())
            loose = s + count
        if loose < n:
            out.append(self._scatter(heads[loose:], lens[loose:]))
        return out

    def _scatter(self, heads: Array, lens: Array) -> Scatter:
        iov = np.empty((len(heads), 2), dtype=np.uint64)
        iov[:, 0] = heads
        iov[:, 0] += self.address
        iov[:, 1] = lens
        return Scatter(iov, int(lens.sum()))

    def _put(self, pos: Array, words: tuple[Any, ...]) -> None:
        """Write consecutive little-endian 32-bit ``words`` (arrays or ints) at byte offsets
        ``pos``. Evenly spaced offsets (same-sized packets) are one strided store per word;
        others one indexed store per word, through a 32-bit view of the buffer shifted to
        their alignment (one view per alignment present; usually a single one)."""
        n = len(pos)
        if not n:
            return
        if n > 2:
            step = int(pos[1] - pos[0])
            if step > 0 and not (np.diff(pos) != step).any():
                first = int(pos[0])
                for j, col in enumerate(words):
                    np.ndarray((n,), "<u4", self.mem, first + 4 * j, (step,))[:] = col
                return
        rem = pos & 3
        shifts = [int(rem[0])] if not (rem != rem[0]).any() else np.unique(rem).tolist()
        for r in shifts:
            if len(shifts) == 1:
                w = (pos - r) >> 2
                cols = words
            else:
                pick = rem == r
                w = (pos[pick] - r) >> 2
                cols = tuple(c[pick] if isinstance(c, np.ndarray) else c for c in words)
            u32 = self._u32_at(r)
            for j, col in enumerate(cols):
                u32[w + j] = col

    def _u32_at(self, shift: int) -> Array:
        """The buffer as 32-bit words starting ``shift`` bytes in."""
        view = self._shifted.get(shift)
        if view is None:
            count = (len(self.a) - shift) // 4
            view = self._shifted[shift] = self.a[shift : shift + 4 * count].view("<u4")
        return view

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
