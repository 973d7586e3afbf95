"""Receive's fast path: a whole TPACKET_V3 block decapsulated and encoded at once (numpy).

A Python loop over packets costs about 2 µs each (FACTS.md), over ten times what tcpdump
spends. Here Python touches each packet twice, to follow the block's ``tp_next_offset`` chain
and to slice the finished record out; everything else is numpy over the whole block:

1. read every packet's ``tpacket3_hdr`` fields and outer headers into arrays;
2. pick the packets of *the fast shape* (:mod:`vmsniff.filter.kernel`: IPv4 without options or
   fragments, GRE version 0 with any of C/K/S carrying Ethernet, not link-padded, not cut by
   the ring). Every other packet goes through :class:`~.core.Pipeline` one by one, in order;
3. apply ``--from``, ``--key`` (and the direction it gives), ``--strip-vlan`` and ``-s``;
   the filter ran in the kernel when ``kernel_filtered`` (the receive program, which shares
   the fast-shape definition), else it runs here through libpcap, packet by packet;
4. write each record's pcap header (or pcapng EPB head and trailer) into the block itself,
   right before and after the inner frame, over outer headers already read, so a record is one
   contiguous slice of the block. The block is ours until it goes back to the kernel.

Writes stay inside the packet's own slot (from 48 bytes into its ``tpacket3_hdr`` up to 48
bytes into the next packet's, whose fields were read already; the last packet stops at the
block's end): a record that would not fit is encoded the ordinary way instead.

The output equals what :class:`~.core.Pipeline` plus the sink's :class:`~.encode.Encoder`
would produce for the same packets, byte for byte (tests compare the two), and the stats
count the same way.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

from vmsniff.filter.kernel import FAST_GRE_FLAGS
from vmsniff.pcap.linktypes import LINKTYPE_ETHERNET, LINKTYPE_RAW
from vmsniff.pipeline.core import Packet, Pipeline
from vmsniff.pipeline.encode import Encoder, PcapEncoder, PcapngEncoder

__all__ = ["FastPath"]

Array = np.ndarray[Any, Any]

_OUTGOING = 4
_HDR = 48  # sizeof(tpacket3_hdr) rounded as the kernel does (TPACKET_ALIGN)
_OUTER = 40  # bytes of outer header read per packet (IPv4 20 + GRE up to 16, + spare)
_FLAG_MASK = 0xFFFF ^ 0xB000
assert all(f & _FLAG_MASK == 0 for f in FAST_GRE_FLAGS) and len(FAST_GRE_FLAGS) == 8
_TPIDS = (0x8100, 0x88A8, 0x9100)
_OPT_FLAGS = 2 | 4 << 16  # epb_flags option: code 2, length 4 (pcapng section 4.3.1)


class FastPath:
    """Process blocks of a TPACKET_V3 ring in ``memory`` (a writable buffer: the ring's mmap,
    or a bytearray in tests) for ``pipeline`` into records of ``encoder``."""

    def __init__(
        self,
        memory: mmap.mmap | bytearray,
        block_size: int,
        pipeline: Pipeline,
        encoder: Encoder,
        *,
        kernel_filtered: bool,
    ) -> None:
        if not isinstance(encoder, PcapEncoder | PcapngEncoder):
            raise TypeError("the fast path writes pcap or pcapng")
        self.block_size = block_size
        self.pipeline = pipeline
        self.encoder = encoder
        self.kernel_filtered = kernel_filtered
        self._mem = memory
        self._view = memoryview(memory)
        self._words = self._view.cast("I")
        self._a = np.frombuffer(memory, dtype=np.uint8)
        self._u32 = np.frombuffer(memory, dtype=np.uint32)
        cfg = pipeline.config
        keys = pipeline.config.key_directions()
        self._key_values = np.array(sorted(keys), dtype=np.int64)
        self._key_dirs = np.array([keys[k] for k in sorted(keys)], dtype=np.int64)
        self._sources = [
            (int(net.netmask), int(net.network_address)) for net in cfg.sources if net.version == 4
        ]
        self._only_v6_sources = bool(cfg.sources) and not self._sources
        flt = cfg.filter
        self._matcher = None if flt is None or kernel_filtered else flt.matcher(LINKTYPE_ETHERNET)
        self._pcapng = isinstance(encoder, PcapngEncoder)
        self._new_idbs: list[bytes] = []
        self.copied = 0
        """Records encoded the ordinary way because they did not fit in their slot."""

    def close(self) -> None:
        """Let go of the buffer (so that the ring can be unmapped)."""
        del self._a, self._u32
        self._words.release()
        self._view.release()

    # -- one block ----------------------------------------------------------------------------

    def _offsets(self, base: int, count: int, first: int) -> list[int]:
        words = self._words
        out = [0] * count
        off = base + first
        for i in range(count):
            out[i] = off
            off += words[off >> 2]
        return out

    def process(self, base: int, count: int, first: int, limit: int | None = None) -> list[Any]:
        """The records (bytes-like, in arrival order) for the block at ``base`` holding
        ``count`` packets from ``base + first``; at most ``limit`` of them."""
        if count == 0 or limit == 0:
            return []
        stats = self.pipeline.stats
        a = self._a
        u32 = self._u32
        offs = np.fromiter(self._offsets(base, count, first), dtype=np.int64, count=count)
        o4 = offs >> 2
        sec = u32[o4 + 1].astype(np.int64)
        nsec = u32[o4 + 2].astype(np.int64)
        snap = u32[o4 + 3].astype(np.int64)
        wire = u32[o4 + 4].astype(np.int64)
        mac = (u32[o4 + 6] & 0xFFFF).astype(np.int64)
        incoming = a[offs + 58] != _OUTGOING
        ip = offs + mac

        def at(k: Any) -> Array:  # the byte at ip + k (clipped: past the ring is never used)
            return np.take(a, ip + k, mode="clip").astype(np.int64)  # type: ignore[no-any-return]

        def be16(k: Any) -> Array:
            return at(k) << 8 | at(k + 1)

        iplen = be16(2)
        gflags = be16(20)
        glen = 4 + 4 * ((gflags >> 15 & 1) + (gflags >> 13 & 1) + (gflags >> 12 & 1))
        outer = 20 + glen
        fast = (
            incoming
            & (snap == wire)
            & (snap >= 24)
            & (at(0) == 0x45)
            & (at(9) == 47)
            & (be16(6) & 0x3FFF == 0)
            & (wire <= iplen)
            & (be16(22) == 0x6558)
            & (gflags & _FLAG_MASK == 0)
            & (snap >= outer)
        )
        n_in = int(incoming.sum())
        n_fast = int(fast.sum())
        stats.received += n_fast
        stats.decapsulated += n_fast

        # --from (the kernel checks it too; this keeps the fast path right on its own)
        ok = fast.copy()
        if self._sources or self._only_v6_sources:
            src = be16(12) << 16 | be16(14)
            hit = np.zeros(count, dtype=bool)
            for mask, net in self._sources:
                hit |= src & mask == net
            ok &= hit
        # --key: the session and the direction it gives
        has_key = gflags & 0x2000 != 0
        koff = 24 + 4 * (gflags >> 15 & 1)
        key = be16(koff) << 16 | be16(koff + 2)
        key = np.where(has_key, key, -1)
        direction = np.zeros(count, dtype=np.int64)
        if len(self._key_values):
            pos = np.searchsorted(self._key_values, key)
            pos = np.minimum(pos, len(self._key_values) - 1)
            known = has_key & (self._key_values[pos] == key)
            ok &= known
            direction = np.where(known, self._key_dirs[pos], 0)

        start = ip + outer
        cap = snap - outer
        orig = iplen - outer
        cfg = self.pipeline.config
        if cfg.strip_vlan:
            s12 = np.minimum(start + 12, len(a) - 2)
            tpid = a[s12].astype(np.int64) << 8 | a[s12 + 1]
            tag = ok & (cap >= 18) & np.isin(tpid, _TPIDS)
            if cfg.vlan_id is not None:
                vid = (a[s12 + 2].astype(np.int64) << 8 | a[s12 + 3]) & 0x0FFF
                tag &= vid == cfg.vlan_id
            t = np.flatnonzero(tag)
            if len(t):
                src12 = start[t][:, None] + np.arange(12)
                macs = a[src12]
                a[src12 + 4] = macs
                start[t] += 4
                cap[t] -= 4
                orig[t] -= 4
        if self._matcher is not None:
            view = self._view
            match = self._matcher
            for i in np.flatnonzero(ok).tolist():
                s = int(start[i])
                if not match(bytes(view[s : s + int(cap[i])])):
                    ok[i] = False
        stats.filtered_out += n_fast - int(ok.sum())
        cap = np.minimum(cap, cfg.snaplen)
        orig = np.maximum(orig, cap)
        ts = sec * 1_000_000_000 + nsec

        sel = np.flatnonzero(ok)
        prefix: list[Any] = []
        if self._pcapng:
            heads, tails, ends = self._pcapng_records(sel, start, cap, orig, ts, key, direction)
            for idb in self._new_idbs:
                prefix.append(idb)
        else:
            heads, tails, ends = self._pcap_records(sel, start, cap, orig, sec, nsec)
        # each record must stay in its packet's slot
        nxt = np.empty(count, dtype=np.int64)
        nxt[:-1] = offs[1:] + _HDR
        nxt[-1] = base + self.block_size
        fits = (heads >= offs[sel] + _HDR) & (ends <= nxt[sel])
        copies = {}
        for j in np.flatnonzero(~fits).tolist():
            i = int(sel[j])
            copies[j] = self._copy_record(i, start, cap, orig, ts, key, direction)
            self.copied += 1
        tails(fits)
        mem = self._mem
        hl = heads.tolist()
        el = ends.tolist()
        records = [mem[x:y] for x, y in zip(hl, el, strict=True)]
        for j, rec in copies.items():
            records[j] = rec
        if n_fast == n_in:
            if limit is not None and len(records) > limit:
                del records[limit:]
            stats.written += len(records)
            return prefix + records
        return prefix + self._merge(records, sel, fast, incoming, offs, ip, snap, ts, limit)

    def _merge(
        self,
        records: list[Any],
        sel: Array,
        fast: Array,
        incoming: Array,
        offs: Array,
        ip: Array,
        snap: Array,
        ts: Array,
        limit: int | None,
    ) -> list[Any]:
        """Interleave the fast records with the other packets, run one by one, in order."""
        stats = self.pipeline.stats
        push = self.pipeline.push
        encode = self.encoder.encode
        view = self._view
        by_index = dict(zip(sel.tolist(), records, strict=True))
        out: list[Any] = []
        fast_written = 0
        fast_l = fast.tolist()
        inc_l = incoming.tolist()
        ip_l = ip.tolist()
        snap_l = snap.tolist()
        ts_l = ts.tolist()
        for i in range(len(fast_l)):
            if limit is not None and len(out) >= limit:
                break
            if not inc_l[i]:
                continue
            if fast_l[i]:
                rec = by_index.get(i)
                if rec is not None:
                    out.append(rec)
                    fast_written += 1
                continue
            frame = view[ip_l[i] : ip_l[i] + snap_l[i]]
            for pkt in push([(ts_l[i], frame)], LINKTYPE_RAW):  # counts what it writes
                if limit is not None and len(out) >= limit:
                    stats.written -= 1
                    continue
                out.append(encode(pkt))
            frame.release()
        stats.written += fast_written
        return out

    # -- record layouts -------------------------------------------------------------------------

    def _pcap_records(
        self,
        sel: Array,
        start: Array,
        cap: Array,
        orig: Array,
        sec: Array,
        nsec: Array,
    ) -> tuple[Array, Any, Array]:
        """pcap: a 16-byte record header right before the frame, nothing after."""
        s = start[sel]
        c = cap[sel]
        heads = s - 16
        ends = s + c

        def write(fits: Array) -> None:
            k = np.flatnonzero(fits)
            if not len(k):
                return
            i = sel[k]
            self._put_words(heads[k], (sec[i], nsec[i], c[k], orig[i]))

        return heads, write, ends

    def _pcapng_records(
        self,
        sel: Array,
        start: Array,
        cap: Array,
        orig: Array,
        ts: Array,
        key: Array,
        direction: Array,
    ) -> tuple[Array, Any, Array]:
        """pcapng: the Enhanced Packet Block's 28-byte head before the frame; padding, the
        ``epb_flags`` option (when there is a direction) and the length after it."""
        assert isinstance(self.encoder, PcapngEncoder)
        s = start[sel]
        c = cap[sel]
        k_ = key[sel]
        d = direction[sel]
        self._new_idbs = []
        ifidx = np.zeros(len(sel), dtype=np.int64)
        if len(sel):
            combo = (k_ + 1) * 4 + d
            for code, where in _groups(combo):  # in order of first appearance
                session = code // 4 - 1
                i, idb = self.encoder.interface(
                    None if session < 0 else session, code % 4, LINKTYPE_ETHERNET, False, None
                )
                ifidx[where] = i
                if idb:
                    self._new_idbs.append(idb)
        pad = -c % 4
        opt = np.where(d != 0, 12, 0)
        total = 32 + c + pad + opt
        heads = s - 28
        ends = s + c + pad + opt + 4
        a = self._a
        t = ts[sel]

        def write(fits: Array) -> None:
            k = np.flatnonzero(fits)
            if not len(k):
                return
            tk = t[k]
            tot = total[k]
            self._put_words(
                heads[k], (6, tot, ifidx[k], tk >> 32, tk & 0xFFFFFFFF, c[k], orig[sel[k]])
            )
            end = s[k] + c[k]
            for j in range(3):
                a[end + j] = 0
            tail_at = end + pad[k]
            dk = d[k]
            w = np.flatnonzero(dk != 0)
            if len(w) == len(k):
                self._put_words(tail_at, (_OPT_FLAGS, dk, 0, tot))
            elif len(w):
                self._put_words(tail_at[w], (_OPT_FLAGS, dk[w], 0, tot[w]))
            if len(w) != len(k):
                w = np.flatnonzero(dk == 0)
                self._put_words(tail_at[w], (tot[w],))

        return heads, write, ends

    def _put_words(self, pos: Array, words: tuple[Any, ...]) -> None:
        """Write consecutive little-endian 32-bit ``words`` (arrays or ints) at byte offsets
        ``pos``: one store per word when every offset is 4-aligned (the usual case)."""
        if not len(pos):
            return
        if not (pos & 3).any():
            w = pos >> 2
            for j, col in enumerate(words):
                self._u32[w + j] = col
            return
        block = np.empty((len(pos), len(words)), dtype="<u4")
        for j, col in enumerate(words):
            block[:, j] = col
        self._a[pos[:, None] + np.arange(4 * len(words))] = block.view(np.uint8)

    def _copy_record(
        self,
        i: int,
        start: Array,
        cap: Array,
        orig: Array,
        ts: Array,
        key: Array,
        direction: Array,
    ) -> bytes:
        """Encode packet ``i`` the ordinary way (its record would not fit in its slot)."""
        s = int(start[i])
        data = bytes(self._view[s : s + int(cap[i])])
        k = int(key[i])
        pkt = Packet(
            int(ts[i]),
            data,
            int(orig[i]),
            LINKTYPE_ETHERNET,
            None if k < 0 else k,
            int(direction[i]),
            False,
        )
        # The interface is known already: its block, if new, is in this batch's prefix.
        return self.encoder.encode(pkt)


def _groups(values: Array) -> list[tuple[int, Any]]:
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
