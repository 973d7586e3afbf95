"""Where outer frames come from: a capture file, or the live network (a TPACKET_V3 ring).

A source yields batches ``(linktype, [(timestamp_ns, frame), …])``; an empty batch means
"nothing yet" (live sources yield one every ~100 ms so the caller can watch its clock and
signals). I/O lives here, the pipeline (:mod:`.core`) stays sans-IO.

Live: the ring is opened ``SOCK_DGRAM`` on one interface or all of them, so frames start at the
IP header whatever the link; a kernel filter (``ip proto 47 or ip6 proto 47``, plus
``src net …`` for ``--from``, compiled by libpcap) keeps everything else out of the ring. A raw
``IPPROTO_GRE`` socket is held open beside it, with a filter that accepts nothing: its
existence stops the kernel answering each GRE packet with ICMP protocol-unreachable
(FACTS.md), and it never queues a byte.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from vmsniff.errors import FileError, MalformedPacket, NotFound, PermissionDenied
from vmsniff.formats.capture import LINKTYPE_RAW
from vmsniff.pcap.reader import CaptureReader, Record, open_input
from vmsniff.pipeline.ring import Ring, attach_filter

__all__ = [
    "Batch",
    "FileSource",
    "LiveSource",
    "drop_privileges",
    "kernel_program",
]

Batch = tuple[int, list[tuple[int, bytes | memoryview]]]
_CHUNK = 1 << 20
_REJECT_ALL = [(0x06, 0, 0, 0)]  # BPF_RET|BPF_K 0: accept no byte


class FileSource:
    """``-r FILE`` (``-`` for stdin): records of a pcap or pcapng file, in batches.

    The file's header is read here, before anything is written: a file that is empty or not
    a capture at all is a :class:`FileError` (exit 11) raised before the caller creates its
    output, so that no empty output file is left behind. Damage after the header (a record
    cut short, a bad block) ends the batches after the records before it; :attr:`damage`
    says what was wrong (the CLI warns).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        if path == "-":
            self._fh: BinaryIO = sys.stdin.buffer
        else:
            self._fh = open_input(path)  # closed in close()
        self.kernel_dropped = 0
        self.damage: str | None = None
        #: (device, inode) of the input when it is a regular file: the output must not be it.
        self.identity: tuple[int, int] | None = None
        try:
            st = os.fstat(self._fh.fileno())
        except (OSError, ValueError):  # a stand-in stdin without a descriptor (tests)
            pass
        else:
            if stat.S_ISREG(st.st_mode):
                self.identity = (st.st_dev, st.st_ino)
        self._reader = CaptureReader()
        try:
            self._first = self._read_header()
        except BaseException:
            self.close()
            raise

    def _read_header(self) -> list[Record]:
        """Feed the reader until the file's header is accepted; the records read with it."""
        reader = self._reader
        records: list[Record] = []
        read = getattr(self._fh, "read1", self._fh.read)  # a pipe: what is there, not 1 MiB
        seen = 0
        while not reader.header_read:
            try:
                chunk = read(_CHUNK)
            except OSError as exc:
                raise FileError(f"{self.path}: {exc.strerror or exc}") from None
            seen += len(chunk)
            if not chunk:
                what = "empty" if seen == 0 else "shorter than a capture file header"
                raise FileError(f"{self.name}: {what}, not a pcap or pcapng capture")
            try:
                records += reader.feed(chunk)
            except MalformedPacket as exc:
                if reader.header_read:  # damage after a good header: a warning, as later
                    self.damage = exc.message
                    break
                raise FileError(
                    f"{self.name}: not a pcap or pcapng capture ({exc.message})",
                    hint="give a file written by tcpdump, tshark or vmsniff",
                ) from None
        return records

    @property
    def name(self) -> str:
        return "stdin" if self.path == "-" else self.path

    def batches(self) -> Iterator[Batch]:
        """Batches of records; damage to the file itself ends the batches and is kept in
        :attr:`damage` (never an exception: what came before it is still written)."""
        reader = self._reader
        first, self._first = self._first, []
        while True:
            if first:
                records, first = first, []
            elif self.damage is not None:
                return
            else:
                try:
                    chunk = self._fh.read(_CHUNK)
                except OSError as exc:
                    raise FileError(f"{self.name}: {exc.strerror or exc}") from None
                if not chunk:
                    break
                try:
                    records = reader.feed(chunk)
                except MalformedPacket as exc:
                    self.damage = exc.message
                    return
            # Group consecutive records by link type (pcapng interfaces may differ).
            i = 0
            while i < len(records):
                lt = records[i].linktype
                j = i
                group: list[tuple[int, bytes | memoryview]] = []
                while j < len(records) and records[j].linktype == lt:
                    r = records[j]
                    group.append((r.ts_ns or 0, r.data))
                    j += 1
                yield lt, group
                i = j
        try:
            reader.close()
        except MalformedPacket as exc:
            self.damage = exc.message

    def close(self) -> None:
        if self._fh is not sys.stdin.buffer:
            self._fh.close()


def kernel_program(sources: Sequence[str]) -> list[tuple[int, int, int, int]]:
    """The kernel filter of the live ring: GRE over IPv4/IPv6, from ``sources`` if given."""
    from vmsniff.filter import bpf_instructions

    expr = "(ip proto 47 or ip6 proto 47)"
    if sources:
        expr += " and (" + " or ".join(f"src net {s}" for s in sources) + ")"
    return bpf_instructions(expr, LINKTYPE_RAW)


def _gre_holder() -> socket.socket:
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
    except PermissionError:
        raise PermissionDenied(
            "receiving GRE needs CAP_NET_RAW",
            hint="run as root, or give the interpreter cap_net_raw (setcap)",
        ) from None
    attach_filter(sock, _REJECT_ALL)
    return sock


class LiveSource:
    """GRE from the network: a TPACKET_V3 ring plus the ICMP-silencing GRE socket.

    With ``inner`` (the user's filter compiled for Ethernet, as instructions) the ring's kernel
    filter also runs it on the inner frame of fast-shaped packets (:mod:`vmsniff.filter.kernel`);
    :attr:`kernel_filtered` says whether that worked. With :attr:`blocks` set (by
    :func:`~.run.choose_stage`) :meth:`batches` yields whole ring blocks ``(base, count,
    first)`` for :class:`~.fastpath.FastPath` instead of ``(linktype, frames)``.
    """

    def __init__(
        self,
        interface: str | None,
        sources: Sequence[str] = (),
        *,
        inner: Sequence[tuple[int, int, int, int]] | None = None,
        strip_vlan: bool = False,
        vlan_id: int | None = None,
        block_size: int = 1 << 20,
        block_count: int = 16,
    ) -> None:
        from vmsniff.filter.kernel import receive_program

        self.interface = interface
        self.blocks = False
        program, self.kernel_filtered = receive_program(
            kernel_program(sources), inner, strip_vlan=strip_vlan, vlan_id=vlan_id
        )
        self._holder = _gre_holder()
        try:
            self.ring = Ring(
                interface,
                kind=socket.SOCK_DGRAM,
                program=program,
                block_size=block_size,
                block_count=block_count,
            )
        except BaseException:
            self._holder.close()
            raise

    @property
    def kernel_dropped(self) -> int:
        return self.ring.statistics()[1]

    real_rings = True

    def batches(self) -> Iterator[Batch]:
        if self.blocks:
            yield from self.ring.raw_blocks()  # type: ignore[misc]
            return
        for frames in self.ring.blocks():
            yield LINKTYPE_RAW, frames  # type: ignore[misc]

    def close(self) -> None:
        self.ring.close()
        self._holder.close()


def drop_privileges(user: str) -> None:
    """``-Z USER``: become ``user`` (and its primary group, no supplementary groups)."""
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise NotFound(f"-Z {user}: no such user") from None
    try:
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except PermissionError:
        raise PermissionDenied(f"-Z {user}: cannot switch user (not root?)") from None
