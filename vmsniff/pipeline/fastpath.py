"""Receive's fast path: a whole TPACKET_V3 block decapsulated and encoded at once (numpy).

A Python loop over packets costs about 2 µs each (FACTS.md), over ten times what tcpdump
spends. Here numpy works on the whole block; Python touches single packets only where sizes
keep changing (:mod:`.inplace` follows the ``tp_next_offset`` chain by guessing strides):

1. read every packet's ``tpacket3_hdr`` fields and outer headers into arrays;
2. pick the packets of *the fast shape* (:mod:`vmsniff.filter.kernel`: IPv4 without options or
   fragments, GRE version 0 with any of C/K/S carrying Ethernet, not link-padded, not cut by
   the ring). Every other packet goes through :class:`~.core.Pipeline` one by one, in order;
3. apply ``--from``, ``--key`` (and the direction it gives), ``--strip-vlan`` and ``-s``;
   the filter ran in the kernel when ``kernel_filtered`` (the receive program, which shares
   the fast-shape definition), else it runs here through libpcap, packet by packet;
4. write each record's pcap header (or pcapng EPB head and trailer) into the block itself,
   right before and after the inner frame, over outer headers already read, so a record is one
   contiguous stretch of the block (:mod:`.inplace`, shared with ``capture``), written from
   there by ``writev`` or, for runs of same-sized records, one strided copy.

The output equals what :class:`~.core.Pipeline` plus the sink's :class:`~.encode.Encoder`
would produce for the same packets, byte for byte (tests compare the two), and the stats
count the same way.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

from vmsniff.filter.kernel import FAST_GRE_FLAGS, GRE_AT
from vmsniff.formats.capture import LINKTYPE_ETHERNET, LINKTYPE_RAW
from vmsniff.formats.ethernet import (
    ETH_ADDRS_LEN,
    ETH_HEADER_LEN,
    ETHERTYPE_TEB,
    TPIDS,
    VLAN_TAG_LEN,
    VLAN_VID_MASK,
)
from vmsniff.formats.gre import FLAG_C, FLAG_K, FLAG_S, GRE_FIXED_LEN, GRE_PROTO_OFFSET
from vmsniff.formats.ip import (
    IPPROTO_GRE,
    IPV4_FLAGS_OFFSET,
    IPV4_FRAGMENT_MASK,
    IPV4_NO_OPTIONS,
    IPV4_PROTO_OFFSET,
    IPV4_SRC_OFFSET,
    IPV4_TOTAL_LENGTH_OFFSET,
)
from vmsniff.formats.packet import PACKET_OUTGOING
from vmsniff.model import Direction
from vmsniff.pcap.encoder import Encoder
from vmsniff.pipeline.core import Pipeline
from vmsniff.pipeline.inplace import Array, BlockRecords

__all__ = ["FastPath"]

_NIC_CODE = 1 << 33  #: codes from here on name a shared stream's NIC (keys + 1 stay below)


def _mac48(text: str) -> int:
    return int(text.replace(":", "").replace("-", ""), 16)


# The fast shape's GRE flag words are exactly the words with no bit outside C, K and S.
_FLAG_MASK = 0xFFFF ^ (FLAG_C | FLAG_K | FLAG_S)
assert all(f & _FLAG_MASK == 0 for f in FAST_GRE_FLAGS) and len(FAST_GRE_FLAGS) == 8
# Offsets from the start of the outer IPv4 header, in the fast shape.
_GRE_FLAGS_AT = GRE_AT
_GRE_PROTO_AT = GRE_AT + GRE_PROTO_OFFSET
_GRE_OPTIONAL_AT = GRE_AT + GRE_FIXED_LEN  # checksum word if C, then key if K
_SHORTEST = GRE_AT + GRE_FIXED_LEN  # outer IPv4 and a bare GRE header


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
        self.block_size = block_size
        self.pipeline = pipeline
        self.encoder = encoder
        self.kernel_filtered = kernel_filtered
        cfg = pipeline.config
        keys = pipeline.config.key_directions()
        # receive --manifest: a dedicated stream's key names its NIC (the pcapng interface)
        # and the VLAN tag to take off. In a shared stream the NIC is the one whose MAC is the
        # frame's source (from-vm) or destination (to-vm), looked up here for a whole block;
        # what no NIC's MAC names (a to-vm broadcast, a stranger) goes to the pipeline, one
        # by one, which floods or files it as unattributed (vmsniff.pipeline.attribute).
        names: dict[int, str] = {}
        tags: dict[int, int] = {}
        self._shared_tables: list[tuple[int, bool, Array, Array]] = []
        nic_names: list[str] = []
        nic_tags: list[int] = []
        if cfg.manifest is not None:
            index = {n.name: i for i, n in enumerate(cfg.manifest.nics)}
            nic_names = [n.name for n in cfg.manifest.nics]
            nic_tags = [-1 if n.tag is None else n.tag for n in cfg.manifest.nics]
            for stream in cfg.manifest.streams:
                if stream.shared:
                    macs = {_mac48(cfg.manifest.nic(n).mac): index[n] for n in stream.nics}
                    order = sorted(macs)
                    self._shared_tables.append((
                        stream.key, stream.direction is Direction.FROM_VM,
                        np.array(order, dtype=np.int64),
                        np.array([macs[m] for m in order], dtype=np.int64),
                    ))  # fmt: skip
                    continue
                nic = cfg.manifest.nic(stream.nics[0])
                names[stream.key] = nic.name
                if nic.tag is not None:
                    tags[stream.key] = nic.tag
        self._manifest = cfg.manifest is not None
        self._shared = np.array(sorted(t[0] for t in self._shared_tables), dtype=np.int64)
        self._key_tags = np.array([tags.get(k, -1) for k in sorted(keys)], dtype=np.int64)
        self._nic_tags = np.array(nic_tags or [-1], dtype=np.int64)

        def describe(code: int) -> tuple[int | None, int, bool, str | None]:
            """code 0 = no key, key + 1, or _NIC_CODE + a shared stream's NIC index."""
            if code >= _NIC_CODE:
                return None, LINKTYPE_ETHERNET, False, nic_names[code - _NIC_CODE]
            key = None if code == 0 else code - 1
            return key, LINKTYPE_ETHERNET, False, None if key is None else names.get(key)

        self.writer = BlockRecords(memory, block_size, encoder, describe)
        self._view = self.writer.view
        self._a = self.writer.a
        self._key_values = np.array(sorted(keys), dtype=np.int64)
        self._key_dirs = np.array([keys[k] for k in sorted(keys)], dtype=np.int64)
        self._sources = [
            (int(net.netmask), int(net.network_address)) for net in cfg.sources if net.version == 4
        ]
        self._only_v6_sources = bool(cfg.sources) and not self._sources
        flt = cfg.filter
        self._matcher = None if flt is None or kernel_filtered else flt.matcher(LINKTYPE_ETHERNET)

    @property
    def copied(self) -> int:
        """Records encoded the ordinary way because they did not fit in their slot."""
        return self.writer.copied

    def close(self) -> None:
        """Let go of the buffer (so that the ring can be unmapped)."""
        del self._a, self._view
        self.writer.close()

    # -- one block ----------------------------------------------------------------------------

    def process(self, base: int, count: int, first: int, limit: int | None = None) -> list[Any]:
        """The records (bytes-like, in arrival order) for the block at ``base`` holding
        ``count`` packets from ``base + first``; at most ``limit`` of them."""
        if count == 0 or limit == 0:
            return []
        stats = self.pipeline.stats
        a = self._a
        writer = self.writer
        offs = writer.offsets(base, count, first)
        ts, snap, wire, mac, pkttype = writer.header_fields(offs)
        incoming = pkttype != PACKET_OUTGOING
        ip = offs + mac

        def at(k: Any) -> Array:  # the byte at ip + k (clipped: past the ring is never used)
            return np.take(a, ip + k, mode="clip").astype(np.int64)  # type: ignore[no-any-return]

        def be16(k: Any) -> Array:
            return at(k) << 8 | at(k + 1)

        iplen = be16(IPV4_TOTAL_LENGTH_OFFSET)
        gflags = be16(_GRE_FLAGS_AT)
        has_csum = gflags & FLAG_C != 0
        has_key = gflags & FLAG_K != 0
        has_seq = gflags & FLAG_S != 0
        outer = _SHORTEST + 4 * (has_csum.astype(np.int64) + has_key + has_seq)
        fast = (  # the fast shape (vmsniff.filter.kernel), packet by packet
            incoming
            & (snap == wire)
            & (snap >= _SHORTEST)
            & (at(0) == IPV4_NO_OPTIONS)
            & (at(IPV4_PROTO_OFFSET) == IPPROTO_GRE)
            & (be16(IPV4_FLAGS_OFFSET) & IPV4_FRAGMENT_MASK == 0)
            & (wire <= iplen)
            & (be16(_GRE_PROTO_AT) == ETHERTYPE_TEB)
            & (gflags & _FLAG_MASK == 0)
            & (snap >= outer)
        )
        key_at = _GRE_OPTIONAL_AT + 4 * has_csum.astype(np.int64)
        key = be16(key_at) << 16 | be16(key_at + 2)
        key = np.where(has_key, key, -1)
        nic_of = None
        if len(self._shared):
            nic_of = self._attribute(fast, has_key, key, ip, outer, snap)
            fast &= ~(has_key & np.isin(key, self._shared)) | (nic_of >= 0)
        n_in = int(incoming.sum())
        n_fast = int(fast.sum())
        stats.received += n_fast
        stats.decapsulated += n_fast

        # --from (the kernel checks it too; this keeps the fast path right on its own)
        ok = fast.copy()
        if self._sources or self._only_v6_sources:
            src = be16(IPV4_SRC_OFFSET) << 16 | be16(IPV4_SRC_OFFSET + 2)
            hit = np.zeros(count, dtype=bool)
            for mask, net in self._sources:
                hit |= src & mask == net
            ok &= hit
        # --key: the session and the direction it gives
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
        if cfg.strip_vlan or self._manifest:
            tpid_at = np.minimum(start + ETH_ADDRS_LEN, len(a) - 2)
            tpid = a[tpid_at].astype(np.int64) << 8 | a[tpid_at + 1]
            tag = ok & (cap >= ETH_HEADER_LEN + VLAN_TAG_LEN) & np.isin(tpid, TPIDS)
            want: Any = self._key_tags[pos] if self._manifest else cfg.vlan_id
            if nic_of is not None:  # a shared stream's NIC: its own tag
                want = np.where(nic_of >= 0, self._nic_tags[np.maximum(nic_of, 0)], want)
            if want is not None:  # --strip-vlan ID, or the NIC's tag (-1: none)
                tci = a[tpid_at + 2].astype(np.int64) << 8 | a[tpid_at + 3]
                tag &= tci & VLAN_VID_MASK == want
            tagged = np.flatnonzero(tag)
            if len(tagged):
                # the addresses move up over the tag; the frame then starts 4 bytes later
                addrs = start[tagged][:, None] + np.arange(ETH_ADDRS_LEN)
                a[addrs + VLAN_TAG_LEN] = a[addrs]
                start[tagged] += VLAN_TAG_LEN
                cap[tagged] -= VLAN_TAG_LEN
                orig[tagged] -= VLAN_TAG_LEN
        if self._matcher is not None:
            view = self._view
            match = self._matcher
            for i in np.flatnonzero(ok).tolist():
                s = int(start[i])
                if not match(bytes(view[s : s + int(cap[i])])):
                    ok[i] = False
        stats.filtered_out += n_fast - int(ok.sum())
        cap = np.minimum(cap, cfg.snaplen)

        sel = np.flatnonzero(ok)
        codes = key + 1
        if nic_of is not None:
            codes = np.where(nic_of >= 0, _NIC_CODE + nic_of, codes)
        args = (base, offs, sel, start, cap, orig, ts, codes, direction)
        if n_fast == n_in:
            if limit is not None and len(sel) > limit:
                sel = sel[:limit]  # what -c cuts is neither written nor filtered out
                args = (base, offs, sel, *args[3:])
            stats.written += len(sel)
            prefix, pieces = writer.encode(*args, joined=True)
            return prefix + pieces
        prefix, records = writer.encode(*args)
        return prefix + self._merge(records, sel, fast, incoming, offs, ip, snap, ts, limit)

    def _attribute(
        self, fast: Array, has_key: Array, key: Array, ip: Array, outer: Array, snap: Array
    ) -> Array:
        """Each packet's NIC index in a shared stream, by MAC (-1: not shared, too short, or
        no NIC's MAC: the pipeline decides those one by one)."""
        nic_of = np.full(len(key), -1, dtype=np.int64)
        whole = fast & has_key & (snap >= outer + ETH_HEADER_LEN)
        for stream_key, from_vm, macs, nics in self._shared_tables:
            idx = np.flatnonzero(whole & (key == stream_key))
            if not len(idx):
                continue
            # the source (from-vm) or destination (to-vm) address of the inner frame
            first = ip[idx] + outer[idx] + (ETH_ADDRS_LEN // 2 if from_vm else 0)
            mac = np.zeros(len(idx), dtype=np.int64)
            for i in range(ETH_ADDRS_LEN // 2):
                mac = mac << 8 | np.take(self._a, first + i, mode="clip").astype(np.int64)
            pos = np.minimum(np.searchsorted(macs, mac), len(macs) - 1)
            hit = macs[pos] == mac
            nic_of[idx[hit]] = nics[pos[hit]]
        return nic_of

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
