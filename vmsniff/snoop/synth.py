"""Sans-IO TCP synthesis: a relayed byte stream in, plausible Ethernet/IP/TCP frames out.

Open vSwitch talks to its controller through the host's socket API, so a relay sees bytes, not
packets. To open the conversation in Wireshark we write what a capture of the wire would have
held: a three-way handshake (RFC 9293 section 3.5), data segments with correct sequence and
acknowledgement numbers, FIN exchange or RST on close, and correct IPv4 (RFC 791) / IPv6 (RFC
8200) and TCP checksums (RFC 9293 section 3.1, RFC 1071). Nothing here reads a clock or touches
a socket: the caller hands in bytes and timestamps (:class:`TcpSynth`'s methods) and gets
:class:`Segment` values (whole Ethernet frames) back.

The conversation's state moves along this table (``_TRANSITIONS``); the client is the side that
connected (the switch), the server the side it reached (the controller)::

    state            event          -> state          frames
    IDLE             OPEN              ESTABLISHED    SYN, SYN-ACK, ACK
    IDLE             REFUSED           RESET          SYN, RST-ACK (from the server)
    ESTABLISHED      DATA (either)     ESTABLISHED    data segments (+ ACK every ACK_EVERY bytes)
    ESTABLISHED      FIN client        CLIENT_DONE    FIN-ACK, ACK
    ESTABLISHED      FIN server        SERVER_DONE    FIN-ACK, ACK
    CLIENT_DONE      DATA server       CLIENT_DONE    (half-closed: the other way still flows)
    CLIENT_DONE      FIN server        CLOSED
    SERVER_DONE      DATA client       SERVER_DONE
    SERVER_DONE      FIN client        CLOSED
    ESTABLISHED,
    CLIENT_DONE,
    SERVER_DONE      RST (either)      RESET          RST-ACK

Any other (state, event) pair is the caller's bug and raises :class:`ValueError`.

Acknowledgements: a receiver acknowledges what it has seen when it next sends (piggybacked),
and with a pure ACK once ``ACK_EVERY`` bytes are outstanding, so that the unacknowledged bytes
never exceed the advertised window (``WINDOW << WSCALE``, RFC 7323 window scaling, negotiated in
the SYNs) and Wireshark sees no "window full". Segments carry at most the MSS of the given MTU,
so that no IP packet exceeds it.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "ACK_EVERY",
    "CLIENT",
    "DEFAULT_MTU",
    "SERVER",
    "Segment",
    "State",
    "TcpSynth",
    "checksum",
    "describe",
]

CLIENT = 0  #: the side that connected (the switch)
SERVER = 1  #: the side it reached (the controller)

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_FLAG_NAMES = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "."))

WSCALE = 7  #: window scale shift advertised in both SYNs (RFC 7323 section 2)
WINDOW = 0xFFFF  #: window field of every non-SYN segment: 8 MiB with the scale
ACK_EVERY = 1 << 16  #: bytes outstanding before the receiver sends a pure ACK
TTL = 64
#: The default MTU: loopback's (65536, less one as an IPv4 total length tops at 65535), where
#: a switch and its controller usually talk; one 64 KiB read becomes two segments, as in a
#: tcpdump of ``lo``. ``--mtu 1500`` gives an Ethernet-sized look at about a fifth the speed.
DEFAULT_MTU = 65535
MACS = (bytes.fromhex("02766d730001"), bytes.fromhex("02766d730002"))  #: client, server

_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_ETHERTYPE = {4: 0x0800, 6: 0x86DD}
_IP_HEADER = {4: 20, 6: 40}
_TCP_HEADER = 20
# SYN options: MSS (kind 2), NOP, window scale (kind 3); 8 bytes, a multiple of 4.
_SYN_OPTIONS = struct.Struct("!BBHBBBB")


class State(enum.Enum):
    """Where a synthesized conversation is (the table in the module docstring)."""

    IDLE = "idle"
    ESTABLISHED = "established"
    CLIENT_DONE = "client-fin"
    SERVER_DONE = "server-fin"
    CLOSED = "closed"
    RESET = "reset"


class _Event(enum.Enum):
    OPEN = "open"
    REFUSED = "refused"
    DATA_CLIENT = "data-client"
    DATA_SERVER = "data-server"
    FIN_CLIENT = "fin-client"
    FIN_SERVER = "fin-server"
    RST = "rst"


_S, _E = State, _Event
_TRANSITIONS: dict[tuple[State, _Event], State] = {
    (_S.IDLE, _E.OPEN): _S.ESTABLISHED,
    (_S.IDLE, _E.REFUSED): _S.RESET,
    (_S.ESTABLISHED, _E.DATA_CLIENT): _S.ESTABLISHED,
    (_S.ESTABLISHED, _E.DATA_SERVER): _S.ESTABLISHED,
    (_S.ESTABLISHED, _E.FIN_CLIENT): _S.CLIENT_DONE,
    (_S.ESTABLISHED, _E.FIN_SERVER): _S.SERVER_DONE,
    (_S.CLIENT_DONE, _E.DATA_SERVER): _S.CLIENT_DONE,
    (_S.CLIENT_DONE, _E.FIN_SERVER): _S.CLOSED,
    (_S.SERVER_DONE, _E.DATA_CLIENT): _S.SERVER_DONE,
    (_S.SERVER_DONE, _E.FIN_CLIENT): _S.CLOSED,
    (_S.ESTABLISHED, _E.RST): _S.RESET,
    (_S.CLIENT_DONE, _E.RST): _S.RESET,
    (_S.SERVER_DONE, _E.RST): _S.RESET,
}


class Segment(NamedTuple):
    """One synthesized frame: when, which side sent it, the Ethernet frame's bytes."""

    ts_ns: int
    side: int
    frame: bytes

    def __repr__(self) -> str:
        return f"Segment({'client' if self.side == CLIENT else 'server'}, {len(self.frame)} B)"


def _sum16(data: bytes | bytearray | memoryview) -> int:
    """The 16-bit ones' complement sum of ``data`` (RFC 1071), modulo 0xFFFF, for short
    pieces (headers).

    As ``2**16 = 1 (mod 0xFFFF)``, the sum of big-endian 16-bit words is the big integer
    ``data`` modulo 0xFFFF: one ``int.from_bytes`` instead of a Python loop (quick for tens
    of bytes; payloads take :func:`payload_sums`). An odd length is padded with a zero byte
    at the end (RFC 9293 section 3.1)."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    return value % 0xFFFF


_NUMPY_FROM = 128  # payload bytes from which numpy's sum beats int.from_bytes


def payload_sums(payload: bytes | bytearray | memoryview, size: int) -> list[int]:
    """:func:`_sum16` of each ``size``-byte piece of ``payload`` (the last may be shorter),
    in one vectorised numpy pass when ``size`` is a multiple of 4 (the MSS always is).

    RFC 1071 section 2(B): the ones' complement sum is byte-order independent, so the
    payload is summed as little-endian 32-bit words (each congruent, modulo 0xFFFF, to the sum
    of its two 16-bit halves, as ``2**16 = 1``) and the folded result swapped back to
    network order. The last 1-3 bytes are added by hand."""
    n = len(payload)
    if n < _NUMPY_FROM or size % 4:
        view = memoryview(payload)
        return [_sum16(view[i : i + size]) for i in range(0, n, size)]
    import numpy as np

    words = np.frombuffer(payload, dtype="<u4", count=n // 4)
    starts = np.arange(0, len(words), size // 4)
    sums = []
    for x in np.add.reduceat(words, starts, dtype=np.uint64).tolist():
        x %= 0xFFFF
        sums.append((x & 0xFF) << 8 | x >> 8)  # back to big-endian word order
    tail = n % 4
    if tail:  # at a 4-byte boundary of its piece, as size % 4 == 0
        t = payload[n - tail : n]
        extra = (t[0] << 8) + (t[1] if tail > 1 else 0) + (t[2] << 8 if tail > 2 else 0)
        if len(sums) * size < n:  # the tail is a piece of its own
            sums.append(extra)
        else:
            sums[-1] += extra
    return [x % 0xFFFF for x in sums]


def checksum(*parts: bytes | bytearray | memoryview) -> int:
    """The Internet checksum of the concatenation of ``parts`` (all but the last of even
    length). A sum of 0 (mod 0xFFFF) of non-zero data is 0xFFFF in ones' complement: its
    complement, 0, is what goes on the wire."""
    return _fold(sum(_sum16(p) for p in parts))


def _fold(total: int) -> int:
    total %= 0xFFFF
    return 0xFFFF - total if total else 0


def _addr(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(host.split("%", 1)[0])


@dataclass(slots=True)
class _Half:
    """One side's sending bookkeeping."""

    isn: int
    seq: int = 0  # next sequence number this side sends
    acked: int = 0  # what the peer last acknowledged of ours
    ip_id: int = 0
    sent: int = 0  # payload bytes
    segments: int = 0


@dataclass
class TcpSynth:
    """The synthesized TCP conversation of one relayed connection.

    ``client`` and ``server`` are ``(address, port)`` as the sockets report them; an IPv4
    address facing an IPv6 one is written as its IPv4-mapped IPv6 form (one conversation has
    one IP version). ``mtu`` bounds every IP packet (the MSS is derived from it); ``isn`` fixes
    the initial sequence numbers (default: derived from the 4-tuple, so runs are
    reproducible)."""

    client: tuple[str, int]
    server: tuple[str, int]
    mtu: int = DEFAULT_MTU
    isn: tuple[int, int] | None = None
    state: State = State.IDLE
    _halves: tuple[_Half, _Half] = field(init=False)
    _src: tuple[bytes, bytes] = field(init=False)
    _version: int = field(init=False)
    _addr_sum: int = field(init=False)
    mss: int = field(init=False)

    def __post_init__(self) -> None:
        caddr, saddr = _addr(self.client[0]), _addr(self.server[0])
        if caddr.version != saddr.version:
            caddr, saddr = (
                a if a.version == 6 else ipaddress.IPv6Address(f"::ffff:{a}")
                for a in (caddr, saddr)
            )
        self._version = caddr.version
        self._src = (caddr.packed, saddr.packed)
        self._addr_sum = _sum16(caddr.packed + saddr.packed)
        overhead = _IP_HEADER[self._version] + _TCP_HEADER
        if not overhead + 4 <= self.mtu <= 65535:
            raise ValueError(f"MTU {self.mtu} out of range ({overhead + 4}-65535)")
        # A multiple of 4, so that every segment starts on a 32-bit word of the payload
        # (payload_sums' vector path); an IP packet may be up to 3 bytes under the MTU.
        self.mss = (self.mtu - overhead) & ~3
        if self.isn is None:
            key = f"{self.client}|{self.server}".encode()
            isn = (zlib.crc32(key), zlib.crc32(key[::-1]))
        else:
            isn = self.isn
        self._halves = (_Half(isn[0] & 0xFFFFFFFF), _Half(isn[1] & 0xFFFFFFFF))
        for half in self._halves:
            half.seq = half.acked = half.isn

    # -- events -------------------------------------------------------------------------------

    def open(self, ts_ns: int) -> list[Segment]:
        """The connection was made: the three-way handshake."""
        self._move(_Event.OPEN)
        c, s = self._halves
        out = [self._segment(ts_ns, CLIENT, SYN, b"", syn=True)]
        c.seq += 1
        out.append(self._segment(ts_ns, SERVER, SYN | ACK, b"", syn=True))
        s.seq += 1
        out.append(self._segment(ts_ns, CLIENT, ACK, b""))
        return out

    def refused(self, ts_ns: int) -> list[Segment]:
        """The server side could not be reached: the client's SYN and a RST-ACK answer."""
        self._move(_Event.REFUSED)
        c = self._halves[CLIENT]
        out = [self._segment(ts_ns, CLIENT, SYN, b"", syn=True)]
        c.seq += 1
        # RFC 9293 section 3.10.7.1: a RST answering a SYN has SEQ 0 and ACKs the SYN.
        out.append(self._segment(ts_ns, SERVER, RST | ACK, b"", seq=0))
        return out

    def data(self, side: int, payload: bytes | bytearray | memoryview, ts_ns: int) -> list[Segment]:
        """``side`` sent ``payload``: data segments of at most the MSS each, and the
        receiver's ACKs once ``ACK_EVERY`` bytes are outstanding."""
        self._move(_Event.DATA_CLIENT if side == CLIENT else _Event.DATA_SERVER)
        view = memoryview(payload)
        me = self._halves[side]
        out: list[Segment] = []
        mss = self.mss
        sums = payload_sums(view, mss)
        for start, payload_sum in zip(range(0, len(view), mss), sums, strict=True):
            chunk = view[start : start + mss]
            last = start + mss >= len(view)
            out.append(self._segment(ts_ns, side, ACK | PSH if last else ACK, chunk, payload_sum))
            me.seq = (me.seq + len(chunk)) & 0xFFFFFFFF
            me.sent += len(chunk)
            if (me.seq - me.acked) & 0xFFFFFFFF >= ACK_EVERY:
                out.append(self._ack(ts_ns, 1 - side))
        return out

    def fin(self, side: int, ts_ns: int) -> list[Segment]:
        """``side`` closed its sending direction: its FIN and the peer's ACK of it."""
        self._move(_Event.FIN_CLIENT if side == CLIENT else _Event.FIN_SERVER)
        out = [self._segment(ts_ns, side, FIN | ACK, b"")]
        self._halves[side].seq = (self._halves[side].seq + 1) & 0xFFFFFFFF
        out.append(self._ack(ts_ns, 1 - side))
        return out

    def reset(self, side: int, ts_ns: int) -> list[Segment]:
        """``side`` aborted the connection: one RST-ACK from it."""
        self._move(_Event.RST)
        return [self._segment(ts_ns, side, RST | ACK, b"")]

    # -- views --------------------------------------------------------------------------------

    def row(self) -> dict[str, object]:
        """This conversation as one row of a state table (``--json``, tests, debugging)."""
        c, s = self._halves
        return {
            "client": f"{self.client[0]}:{self.client[1]}",
            "server": f"{self.server[0]}:{self.server[1]}",
            "state": self.state.value,
            "client_seq": (c.seq - c.isn) & 0xFFFFFFFF,
            "server_seq": (s.seq - s.isn) & 0xFFFFFFFF,
            "client_bytes": c.sent,
            "server_bytes": s.sent,
            "segments": c.segments + s.segments,
        }

    # -- internals ----------------------------------------------------------------------------

    def _move(self, event: _Event) -> None:
        new = _TRANSITIONS.get((self.state, event))
        if new is None:
            raise ValueError(f"TCP synthesis: {event.value} is not possible in {self.state.value}")
        self.state = new

    def _ack(self, ts_ns: int, side: int) -> Segment:
        return self._segment(ts_ns, side, ACK, b"")

    def _segment(
        self,
        ts_ns: int,
        side: int,
        flags: int,
        payload: bytes | memoryview,
        payload_sum: int = 0,
        *,
        syn: bool = False,
        seq: int | None = None,
    ) -> Segment:
        me, peer = self._halves[side], self._halves[1 - side]
        src, dst = self._src[side], self._src[1 - side]
        sport, dport = (self.client[1], self.server[1])[:: 1 if side == CLIENT else -1]
        ack = peer.seq if flags & ACK else 0
        if flags & ACK:
            peer.acked = ack
        if syn:
            options = _SYN_OPTIONS.pack(2, 4, self.mss, 1, 3, 3, WSCALE)
            window = 0xFFFF  # never scaled in a SYN (RFC 7323 section 2.2)
        else:
            options = b""
            window = 0 if flags & RST else WINDOW
        tcp_len = _TCP_HEADER + len(options) + len(payload)
        offset = (_TCP_HEADER + len(options)) // 4 << 4
        number = me.seq if seq is None else seq
        header = _TCP.pack(sport, dport, number, ack, offset, flags, window, 0, 0) + options
        # The pseudo-header (RFC 9293 section 3.1; RFC 8200 section 8.1 for IPv6): the two
        # addresses (summed once, in __post_init__), the protocol and the TCP length.
        pseudo = self._addr_sum + 6 + (tcp_len >> 16) + (tcp_len & 0xFFFF)
        csum = _fold(pseudo + _sum16(header) + payload_sum)
        header = header[:16] + csum.to_bytes(2, "big") + header[18:]
        if self._version == 4:
            ip = _IPV4.pack(0x45, 0, 20 + tcp_len, me.ip_id, 0x4000, TTL, 6, 0, src, dst)
            ip = ip[:10] + checksum(ip).to_bytes(2, "big") + ip[12:]
            me.ip_id = (me.ip_id + 1) & 0xFFFF
        else:
            ip = _IPV6.pack(6 << 28, tcp_len, 6, TTL, src, dst)
        eth = _ETH.pack(MACS[1 - side], MACS[side], _ETHERTYPE[self._version])
        me.segments += 1
        return Segment(ts_ns, side, b"".join((eth, ip, header, payload)))


def describe(frame: bytes) -> str:
    """A tcpdump-like one-liner of a synthesized frame (tests and debugging only)."""
    etype = struct.unpack_from("!H", frame, 12)[0]
    off = 14 + (20 if etype == 0x0800 else 40)
    sport, dport, seq, ack, _o, flags = struct.unpack_from("!HHIIBB", frame, off)
    names = "".join(n for bit, n in _FLAG_NAMES if flags & bit)
    size = len(frame) - off - (_o >> 4) * 4
    return f"{sport} > {dport} [{names}] seq {seq} ack {ack} len {size}"
