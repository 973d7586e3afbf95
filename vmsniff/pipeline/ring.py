"""An AF_PACKET TPACKET_V3 receive ring, read a block at a time (Linux packet(7)).

The kernel fills fixed-size blocks of the mmap'ed ring with packets and hands a block over when
it is full or ``retire_ms`` passed; we walk every packet of the block (no system call per
packet), then give the block back. A classic BPF program attached with ``SO_ATTACH_FILTER``
drops unwanted packets in the kernel before they take room in the ring.

Usable by any command that reads an interface: ``receive`` opens it ``SOCK_DGRAM`` (IP packets
from every interface, or one), a ``capture`` on a tap would open it ``SOCK_RAW`` (Ethernet).
Layouts are ``linux/if_packet.h``: ``tpacket_req3``, ``tpacket_block_desc`` with
``tpacket_hdr_v1``, ``tpacket3_hdr`` followed (at ``TPACKET_ALIGN(sizeof)`` = 48) by a
``sockaddr_ll``.
"""

from __future__ import annotations

import ctypes
import mmap
import select
import socket
import struct
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing
from typing import NoReturn

from vmsniff.errors import MalformedPacket, NotFound, PermissionDenied, VmsniffError
from vmsniff.formats.packet import (
    BLOCK_HEADER,
    ETH_P_ALL,
    PACKET_OUTGOING,
    SLL_PKTTYPE_OFFSET,
    SLOT_READ,
    TPACKET3_HDR,
)

__all__ = ["Ring", "attach_filter"]

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
SO_ATTACH_FILTER = 26

_REQ3 = struct.Struct("=7I")
_BLOCK = struct.Struct("=III")  # block_status, num_pkts, offset_to_first_pkt (at offset 8)
_PKT = TPACKET3_HDR
_PKTTYPE_OFFSET = SLL_PKTTYPE_OFFSET
_BLOCK_HEADER = BLOCK_HEADER
_SLOT_READ = SLOT_READ
_STATS = struct.Struct("=III")  # tp_packets, tp_drops, tp_freeze_q_cnt


def _check_block(base: int, count: int, first: int, block_size: int) -> int:
    """The block's end, once its descriptor is believable: the first packet after the
    descriptor and no more packets than 8-byte steps (the kernel's alignment) fit."""
    if first < _BLOCK_HEADER or count > (block_size - first) // 8 + 1:
        raise MalformedPacket(f"ring block: {count} packets from offset {first} cannot fit")
    return base + block_size


def _outside(frames: Sequence[tuple[object, memoryview] | tuple[object, memoryview, int, int]]
             ) -> NoReturn:  # fmt: skip
    """A packet of the block lies (partly) outside it: let go of the frames and refuse."""
    for frame in frames:
        frame[1].release()
    raise MalformedPacket("ring block: a packet lies outside the block")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def attach_filter(sock: socket.socket, program: Sequence[tuple[int, int, int, int]]) -> None:
    """Attach a classic BPF program (``(code, jt, jf, k)`` tuples) with ``SO_ATTACH_FILTER``."""
    raw = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(raw)
    prog = _SockFprog(len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(prog))


class Ring:
    """A TPACKET_V3 ring on ``interface`` (None: every interface).

    ``kind`` is ``socket.SOCK_DGRAM`` (frames start at the network header) or
    ``socket.SOCK_RAW`` (frames start at the link header).
    """

    def __init__(
        self,
        interface: str | None = None,
        *,
        kind: int = socket.SOCK_DGRAM,
        block_size: int = 1 << 20,
        block_count: int = 32,
        retire_ms: int = 50,
        program: Sequence[tuple[int, int, int, int]] | None = None,
    ) -> None:
        try:
            self.sock = socket.socket(socket.AF_PACKET, kind, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise PermissionDenied(
                "opening a packet socket needs CAP_NET_RAW",
                hint="run as root, or give the interpreter cap_net_raw (setcap)",
            ) from None
        self.kind = kind
        self.block_size = block_size
        self.block_count = block_count
        self.kernel_packets = 0
        self.kernel_dropped = 0
        self._map: mmap.mmap | None = None
        self._view: memoryview | None = None
        try:
            if program is not None:
                attach_filter(self.sock, program)
            self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            req = _REQ3.pack(block_size, block_count, 2048, block_size // 2048 * block_count,
                             retire_ms, 0, 0)  # fmt: skip
            self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self._map = mmap.mmap(self.sock.fileno(), block_size * block_count,
                                  mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip
            self._view = memoryview(self._map)
            if interface is not None:
                try:
                    self.sock.bind((interface, ETH_P_ALL))
                except OSError as exc:
                    raise NotFound(f"interface {interface!r}: {exc.strerror}") from None
        except OSError as exc:
            self.close()
            raise VmsniffError(f"cannot set up the packet ring: {exc}") from None
        except VmsniffError:
            self.close()
            raise
        self._poll = select.poll()
        self._poll.register(self.sock.fileno(), select.POLLIN | select.POLLERR)
        self._next = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def blocks(self, timeout_ms: int = 100) -> Iterator[list[tuple[int, memoryview]]]:
        """Yield each filled block as a list of ``(timestamp_ns, frame)``; an empty list when
        ``timeout_ms`` passed with nothing new (so the caller can check its clock).

        The frames are views into the ring, valid until the generator is resumed: the block is
        handed back to the kernel then. Outgoing packets (``PACKET_OUTGOING``) are left out.
        """
        view = self._view
        assert view is not None
        unpack_pkt = _PKT.unpack_from
        # Closing ``raw`` (also when this generator is closed) hands the last block back.
        with closing(self.raw_blocks(timeout_ms)) as raw:
            for block in raw:
                frames: list[tuple[int, memoryview]] = []
                if block is not None:
                    base, count, first = block
                    end = _check_block(base, count, first, self.block_size)
                    off = base + first
                    for _ in range(count):
                        if off + _SLOT_READ > end:
                            _outside(frames)
                        nxt, sec, nsec, snap, _len, _st, mac, net = unpack_pkt(view, off)
                        start = off + mac
                        if start + snap > end:
                            _outside(frames)
                        if view[off + _PKTTYPE_OFFSET] != PACKET_OUTGOING:
                            frames.append((sec * 1_000_000_000 + nsec, view[start : start + snap]))
                        off += nxt
                try:
                    yield frames
                finally:
                    for _, mv in frames:
                        mv.release()

    def typed_blocks(
        self, timeout_ms: int = 100
    ) -> Iterator[list[tuple[int, memoryview, int, int]]]:
        """Like :meth:`blocks`, but every packet, outgoing ones included, as
        ``(timestamp_ns, frame, pkttype, wire_length)``. ``pkttype`` is ``sll_pkttype``:
        :data:`PACKET_OUTGOING` for what this host sent out of the interface,
        :data:`PACKET_HOST` and the others for what arrived on it."""
        view = self._view
        assert view is not None
        unpack_pkt = _PKT.unpack_from
        # Closing ``raw`` (also when this generator is closed) hands the last block back.
        with closing(self.raw_blocks(timeout_ms)) as raw:
            for block in raw:
                frames: list[tuple[int, memoryview, int, int]] = []
                if block is not None:
                    base, count, first = block
                    end = _check_block(base, count, first, self.block_size)
                    off = base + first
                    for _ in range(count):
                        if off + _SLOT_READ > end:
                            _outside(frames)
                        nxt, sec, nsec, snap, wire, _st, mac, net = unpack_pkt(view, off)
                        start = off + mac
                        if start + snap > end:
                            _outside(frames)
                        ts = sec * 1_000_000_000 + nsec
                        ptype = view[off + _PKTTYPE_OFFSET]
                        frames.append((ts, view[start : start + snap], ptype, wire))
                        off += nxt
                try:
                    yield frames
                finally:
                    for frame in frames:
                        frame[1].release()

    @property
    def memory(self) -> mmap.mmap:
        """The mapped ring itself (for readers that take a whole block at once)."""
        assert self._map is not None
        return self._map

    def raw_blocks(
        self, timeout_ms: int = 100
    ) -> Generator[tuple[int, int, int] | None, None, None]:
        """Yield each filled block as ``(base, count, first)``: its offset in :attr:`memory`,
        its number of packets and the offset of the first packet from ``base``; None when
        ``timeout_ms`` passed with nothing new. The block is the caller's (to read, and to
        write into: nothing else looks at it) until the generator is resumed."""
        view = self._view
        assert view is not None
        bs = self.block_size
        while True:
            base = self._next * bs
            status, count, first = _BLOCK.unpack_from(view, base + 8)
            if not status & TP_STATUS_USER:
                self._poll.poll(timeout_ms)
                status, count, first = _BLOCK.unpack_from(view, base + 8)
                if not status & TP_STATUS_USER:
                    yield None
                    continue
            try:
                yield base, count, first
            finally:
                struct.pack_into("=I", view, base + 8, TP_STATUS_KERNEL)
                self._next = (self._next + 1) % self.block_count

    def statistics(self) -> tuple[int, int]:
        """``(packets, drops)`` since the ring opened (PACKET_STATISTICS resets on each read,
        so this adds them up)."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
        packets, drops, _ = _STATS.unpack(raw)
        self.kernel_packets += packets
        self.kernel_dropped += drops
        return self.kernel_packets, self.kernel_dropped

    def close(self) -> None:
        """Unmap the ring and close the socket (idempotent)."""
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a frame view still alive somewhere: the GC unmaps later
                pass
            self._map = None
        self.sock.close()
