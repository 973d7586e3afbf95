"""Flows from packet observations, sans-IO: one dict entry per flow, whatever the packet count.

A flow is bidirectional: the two ends of an IP conversation (addresses and ports; ICMP and
ICMPv6 echo by their identifier), or the MAC pair and EtherType of a non-IP frame, within
one VLAN and one overlay network (VXLAN/Geneve VNI): tenant networks reuse addresses, and
those tell them apart. A mirror's GRE key or ERSPAN session is reported with the flow but is
not part of it, since a mirror sends each direction under its own key (K and K+1). IP
fragments after the first belong to the first's flow (by source, destination, protocol and
identification). The first packet seen names the originator (``orig``) unless it is a
SYN-ACK, whose receiver is then the originator (Zeek flips such a connection too).

TCP connections get Zeek's ``conn_state`` and ``history`` (Zeek's base/protocols/conn
documentation): history letters in order of first appearance, uppercase for what the
originator did and lowercase for the responder: ``S`` a SYN without ACK, ``H`` a SYN-ACK,
``A`` a pure ACK, ``D`` data, ``F`` a FIN, ``R`` a RST. UDP and ICMP flows are ``S0`` without
an answer and ``SF`` with one; other protocols ``OTH``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["CONN_STATES", "Flow", "FlowTable", "Observation", "conn_state", "letters_of"]

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10

#: Zeek's conn_state values this table produces, with Zeek's meanings.
CONN_STATES = {
    "S0": "connection attempt seen, no reply",
    "S1": "established, not terminated",
    "SF": "normal establishment and termination",
    "REJ": "connection attempt rejected",
    "S2": "established, close attempt by originator seen (no reply from responder)",
    "S3": "established, close attempt by responder seen (no reply from originator)",
    "RSTO": "established, originator aborted (sent a RST)",
    "RSTR": "responder sent a RST",
    "RSTOS0": "originator sent a SYN followed by a RST, never saw a SYN-ACK",
    "RSTRH": "responder sent a SYN-ACK followed by a RST, never saw a SYN from the originator",
    "SH": "originator sent a SYN followed by a FIN, never saw a SYN-ACK",
    "SHR": "responder sent a SYN-ACK followed by a FIN, never saw a SYN from the originator",
    "OTH": "no SYN seen, just midstream traffic",
}


class Observation(NamedTuple):
    """What one packet says about its flow (see :mod:`.observe`)."""

    proto: int
    """IP protocol number; for a non-IP frame the EtherType, with ``ip`` false."""
    src: bytes
    """Source address (IPv4 4 bytes, IPv6 16) or, not IP, source MAC."""
    dst: bytes
    sport: int
    """Port (TCP, UDP, SCTP); ICMP/ICMPv6 echo identifier; else 0."""
    dport: int
    length: int
    """Bytes on the wire (the frame's original length)."""
    ip: bool = True
    vlan: int | None = None
    vni: int | None = None
    """The VXLAN/Geneve network the frame arrived in (part of the flow)."""
    mirror: int | None = None
    """The GRE key or ERSPAN session it was mirrored under (reported, not part of the flow)."""
    tcp_flags: int = 0
    payload: int = 0
    """TCP payload bytes (``D`` in the history)."""
    fragment: int | None = None
    """An IP fragment's identification; then ``sport``/``dport`` are -1 after the first."""


_LETTERS = (("S", 1), ("H", 2), ("A", 4), ("D", 8), ("F", 16), ("R", 32))
_LETTER = {bit: letter for letter, bit in _LETTERS}


class _Entry:
    """A flow while it is counted; ``a`` is the lesser end of its key."""

    __slots__ = ("first", "last", "pkts_ab", "bytes_ab", "pkts_ba", "bytes_ba", "orig_is_a",
                 "seen", "history", "mirrors")  # fmt: skip

    def __init__(self, ts_ns: int, orig_is_a: bool) -> None:
        self.first = self.last = ts_ns
        self.pkts_ab = self.bytes_ab = self.pkts_ba = self.bytes_ba = 0
        self.orig_is_a = orig_is_a
        self.seen = 0  #: history bits: the originator's in bits 0-5, the responder's in 8-13
        self.history = ""
        self.mirrors: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Flow:
    """One flow as reported: ends named from the originator's side."""

    proto: int
    ip: bool
    orig: bytes
    orig_port: int
    resp: bytes
    resp_port: int
    vlan: int | None
    vni: int | None
    mirror_keys: tuple[int, ...]
    orig_packets: int
    orig_bytes: int
    resp_packets: int
    resp_bytes: int
    first_ns: int
    last_ns: int
    state: str
    history: str

    @property
    def packets(self) -> int:
        return self.orig_packets + self.resp_packets

    @property
    def bytes(self) -> int:
        return self.orig_bytes + self.resp_bytes

    @property
    def duration_ns(self) -> int:
        return self.last_ns - self.first_ns


def _letters(obs: Observation) -> int:
    """The history bits of one TCP segment."""
    flags = obs.tcp_flags
    bits = 0
    if flags & _SYN:
        bits |= 2 if flags & _ACK else 1
    elif flags & _ACK and not obs.payload and not flags & (_FIN | _RST):
        bits |= 4
    if obs.payload:
        bits |= 8
    if flags & _FIN:
        bits |= 16
    if flags & _RST:
        bits |= 32
    return bits


def letters_of(flags: Any, payload: Any) -> Any:
    """:func:`_letters` over numpy arrays of TCP flags and payload lengths (the block path)."""
    import numpy as np

    syn = flags & _SYN != 0
    ack = flags & _ACK != 0
    bits = np.where(syn, np.where(ack, 2, 1), 0)
    pure_ack = ~syn & ack & (payload == 0) & (flags & (_FIN | _RST) == 0)
    bits |= np.where(pure_ack, 4, 0) | np.where(payload > 0, 8, 0)
    bits |= np.where(flags & _FIN != 0, 16, 0) | np.where(flags & _RST != 0, 32, 0)
    return bits


def conn_state(proto: int, orig: int, resp: int, answered: bool) -> str:
    """Zeek's conn_state from the history bits each side showed (``S``=1 … ``R``=32)."""
    if proto != IPPROTO_TCP:
        if proto in (IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6):
            return "SF" if answered else "S0"
        return "OTH"
    o_syn, r_synack = orig & 1, resp & 2
    if o_syn and not r_synack:
        if resp & 32:
            return "REJ"
        if orig & 32:
            return "RSTOS0"
        return "SH" if orig & 16 else "S0"
    if r_synack and not o_syn:
        if resp & 32:
            return "RSTRH"
        return "SHR" if resp & 16 else "OTH"
    if not o_syn:
        return "OTH"
    if orig & 32:
        return "RSTO"
    if resp & 32:
        return "RSTR"
    if orig & 16 and resp & 16:
        return "SF"
    if orig & 16:
        return "S2"
    return "S3" if resp & 16 else "S1"


class FlowTable:
    """Add :class:`Observation` values with their timestamps; read :meth:`flows`."""

    #: fragments whose first fragment's ports are remembered (the oldest forgotten first)
    MAX_FRAGMENTED = 4096

    def __init__(self) -> None:
        self._flows: dict[tuple[object, ...], _Entry] = {}
        self._fragmented: dict[tuple[bytes, bytes, int, int], tuple[int, int]] = {}
        self.packets = 0
        self.not_flows = 0  #: packets that said nothing about a flow (cut short, malformed)

    def __len__(self) -> int:
        return len(self._flows)

    def add(self, ts_ns: int, obs: Observation | None) -> None:
        self.packets += 1
        if obs is None:
            self.not_flows += 1
            return
        if obs.fragment is not None:
            obs = self._fragment(obs)
        a = (obs.src, obs.sport)
        b = (obs.dst, obs.dport)
        forward = a <= b
        key = (obs.ip, obs.proto, obs.vlan, obs.vni, *(a + b if forward else b + a))
        entry = self._flows.get(key)
        if entry is None:
            # the sender of the first packet is the originator, unless that was a SYN-ACK
            synack = obs.tcp_flags & (_SYN | _ACK) == (_SYN | _ACK)
            entry = self._flows[key] = _Entry(ts_ns, forward != synack)
        if ts_ns > entry.last:
            entry.last = ts_ns
        elif ts_ns < entry.first:
            entry.first = ts_ns
        if obs.mirror is not None and obs.mirror not in entry.mirrors:
            entry.mirrors += (obs.mirror,)
        if forward:
            entry.pkts_ab += 1
            entry.bytes_ab += obs.length
        else:
            entry.pkts_ba += 1
            entry.bytes_ba += obs.length
        if obs.proto == IPPROTO_TCP and obs.ip:
            from_orig = forward == entry.orig_is_a
            shift = 0 if from_orig else 8
            new = _letters(obs) << shift & ~entry.seen
            if new:
                entry.seen |= new
                for letter, bit in _LETTERS:
                    if new >> shift & bit:
                        entry.history += letter if from_orig else letter.lower()

    def orig_sides(self, keys: Sequence[tuple[object, ...]], first_is_a: Any) -> Any:
        """For the block path: whether each flow's originator is its ``a`` end: as its entry
        says when it has one, else ``first_is_a`` (what its first packet here implies)."""
        out = first_is_a.copy()
        get = self._flows.get
        for i, key in enumerate(keys):
            entry = get(key)
            if entry is not None:
                out[i] = entry.orig_is_a
        return out

    def merge(
        self,
        key: tuple[object, ...],
        first_ns: int,
        last_ns: int,
        orig_is_a: bool,
        pkts_ab: int,
        bytes_ab: int,
        pkts_ba: int,
        bytes_ba: int,
        letters: list[tuple[int, int, bool]],
    ) -> None:
        """Add the sums of many packets of one flow (the block path): ``letters`` are the
        history bits shown, as ``(packet position, bit, by the originator)`` in order."""
        self.packets += pkts_ab + pkts_ba
        entry = self._flows.get(key)
        if entry is None:
            entry = self._flows[key] = _Entry(first_ns, orig_is_a)
        entry.first = min(entry.first, first_ns)
        entry.last = max(entry.last, last_ns)
        entry.pkts_ab += pkts_ab
        entry.bytes_ab += bytes_ab
        entry.pkts_ba += pkts_ba
        entry.bytes_ba += bytes_ba
        for _pos, bit, by_orig in letters:
            shift = 0 if by_orig else 8
            if not entry.seen & bit << shift:
                entry.seen |= bit << shift
                letter = _LETTER[bit]
                entry.history += letter if by_orig else letter.lower()

    def _fragment(self, obs: Observation) -> Observation:
        """A fragment's ports: its own when first, else the first's (0 when not seen)."""
        ident = (obs.src, obs.dst, obs.proto, obs.fragment or 0)
        if obs.sport >= 0:
            table = self._fragmented
            if len(table) >= self.MAX_FRAGMENTED:
                del table[next(iter(table))]
            table[ident] = (obs.sport, obs.dport)
            return obs
        sport, dport = self._fragmented.get(ident, (0, 0))
        return obs._replace(sport=sport, dport=dport)

    def add_all(self, observed: Iterable[tuple[int, Observation | None]]) -> None:
        for ts_ns, obs in observed:
            self.add(ts_ns, obs)

    def flows(self) -> Iterator[Flow]:
        """Every flow, in the order first seen."""
        for key, e in self._flows.items():
            ip, proto, vlan, vni, a_addr, a_port, b_addr, b_port = key
            assert isinstance(proto, int) and isinstance(a_addr, bytes)
            assert isinstance(b_addr, bytes) and isinstance(a_port, int) and isinstance(b_port, int)
            assert vlan is None or isinstance(vlan, int)
            assert vni is None or isinstance(vni, int)
            if e.orig_is_a:
                orig, orig_port, resp, resp_port = a_addr, a_port, b_addr, b_port
                op, ob, rp, rb = e.pkts_ab, e.bytes_ab, e.pkts_ba, e.bytes_ba
            else:
                orig, orig_port, resp, resp_port = b_addr, b_port, a_addr, a_port
                op, ob, rp, rb = e.pkts_ba, e.bytes_ba, e.pkts_ab, e.bytes_ab
            state = conn_state(proto, e.seen & 0xFF, e.seen >> 8, rp > 0) if ip else "OTH"
            yield Flow(proto, bool(ip), orig, orig_port, resp, resp_port, vlan, vni,
                       tuple(sorted(e.mirrors)), op, ob, rp, rb, e.first, e.last, state,
                       e.history)  # fmt: skip
