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

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from vmsniff.dissect.flow import FlowKey

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


#: What one packet says about its flow: :func:`vmsniff.dissect.flow_key` reads it.
Observation = FlowKey


_LETTERS = (("S", 1), ("H", 2), ("A", 4), ("D", 8), ("F", 16), ("R", 32))
_LETTER = {bit: letter for letter, bit in _LETTERS}


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
    """Add :class:`Observation` values with their timestamps (:meth:`add`), or a block of a
    flow's packets at once (:meth:`merge_block`); read :meth:`flows`.

    One entry per flow, in columns (numpy arrays, grown by doubling) so that the block path
    updates thousands of flows in a few numpy operations. A plain IPv4 flow (no VLAN, no
    overlay) is keyed by two integers, its ends packed, as the block path computes them; any
    other by a tuple of its fields."""

    #: fragments whose first fragment's ports are remembered (the oldest forgotten first)
    MAX_FRAGMENTED = 4096
    # the columns (numpy arrays, one element per flow; see _grow)
    _first: Any
    _last: Any
    _pab: Any
    _bab: Any
    _pba: Any
    _bba: Any
    _seen: Any  #: history bits: the originator's in bits 0-5, the responder's in 8-13
    _orig_a: Any  #: the originator is the flow's ``a`` end (its lesser)

    def __init__(self) -> None:
        import numpy as np

        self._np = np
        self._ids: dict[tuple[object, ...], int] = {}
        self._keys: list[tuple[object, ...]] = []
        self._history: list[str] = []
        self._mirrors: list[tuple[int, ...]] = []
        self._cap = 0
        self._grow(1024)
        self._fragmented: dict[tuple[bytes, bytes, int, int], tuple[int, int]] = {}
        self.packets = 0
        self.not_flows = 0  #: packets that said nothing about a flow (cut short, malformed)

    def _grow(self, cap: int) -> None:
        np = self._np
        old = self._cap
        for name, dtype in (("first", np.int64), ("last", np.int64), ("pab", np.int64),
                            ("bab", np.int64), ("pba", np.int64), ("bba", np.int64),
                            ("seen", np.int64), ("orig_a", np.bool_)):  # fmt: skip
            column = np.zeros(cap, dtype=dtype)
            if old:
                column[:old] = getattr(self, "_" + name)[:old]
            setattr(self, "_" + name, column)
        self._cap = cap

    def __len__(self) -> int:
        return len(self._keys)

    def _new(self, key: tuple[object, ...], ts_ns: int, orig_is_a: bool) -> int:
        i = len(self._keys)
        if i == self._cap:
            self._grow(2 * self._cap)
        self._ids[key] = i
        self._keys.append(key)
        self._history.append("")
        self._mirrors.append(())
        self._first[i] = self._last[i] = ts_ns
        self._orig_a[i] = orig_is_a
        return i

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
        key: tuple[object, ...]
        if obs.ip and len(obs.src) == 4 and obs.vlan is None and obs.vni is None:
            lo, hi = (a, b) if forward else (b, a)
            key = (int.from_bytes(lo[0], "big") << 32 | int.from_bytes(hi[0], "big"),
                   obs.proto << 32 | lo[1] << 16 | hi[1])  # fmt: skip
        else:
            key = (obs.ip, obs.proto, obs.vlan, obs.vni, *(a + b if forward else b + a))
        i = self._ids.get(key)
        if i is None:
            # the sender of the first packet is the originator, unless that was a SYN-ACK
            synack = obs.tcp_flags & (_SYN | _ACK) == (_SYN | _ACK)
            i = self._new(key, ts_ns, forward != synack)
        elif ts_ns > self._last[i]:
            self._last[i] = ts_ns
        elif ts_ns < self._first[i]:
            self._first[i] = ts_ns
        if obs.mirror is not None and obs.mirror not in self._mirrors[i]:
            self._mirrors[i] += (obs.mirror,)
        if forward:
            self._pab[i] += 1
            self._bab[i] += obs.length
        else:
            self._pba[i] += 1
            self._bba[i] += obs.length
        if obs.proto == IPPROTO_TCP and obs.ip:
            from_orig = forward == self._orig_a[i]
            shift = 0 if from_orig else 8
            seen = int(self._seen[i])
            new = _letters(obs) << shift & ~seen
            if new:
                self._seen[i] = seen | new
                for letter, bit in _LETTERS:
                    if new >> shift & bit:
                        self._history[i] += letter if from_orig else letter.lower()

    def merge_block(
        self,
        keys: list[tuple[int, int]],
        first_ns: Any,
        last_ns: Any,
        first_is_a: Any,
        pkts_ab: Any,
        bytes_ab: Any,
        pkts_ba: Any,
        bytes_ba: Any,
    ) -> tuple[Any, Any]:
        """Add the sums of a block's plain-IPv4 flows (the block path; arrays, one element
        per flow of ``keys``). A new flow's originator is its ``a`` end when ``first_is_a``.
        Returns each flow's index and whether its originator is its ``a`` end, for
        :meth:`add_letters`."""
        np = self._np
        get = self._ids.get
        ids = np.fromiter((get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        fresh = np.flatnonzero(ids < 0)
        if len(fresh):
            firsts, sides = first_ns[fresh].tolist(), first_is_a[fresh].tolist()
            for j, f in enumerate(fresh.tolist()):
                ids[f] = self._new(keys[f], firsts[j], sides[j])
        self._first[ids] = np.minimum(self._first[ids], first_ns)
        self._last[ids] = np.maximum(self._last[ids], last_ns)
        self._pab[ids] += pkts_ab
        self._bab[ids] += bytes_ab
        self._pba[ids] += pkts_ba
        self._bba[ids] += bytes_ba
        self.packets += int(pkts_ab.sum() + pkts_ba.sum())
        return ids, self._orig_a[ids]

    def new_letters(self, ids: Any, bits: Any) -> Any:
        """Of the history bits ``bits`` (originator's in bits 0-5, responder's in 8-13) shown
        by the flows ``ids``, those they had not shown before (the block path)."""
        return bits & ~self._seen[ids]

    def add_letters(self, flow: int, letters: list[tuple[int, int, bool]]) -> None:
        """Append the history letters a flow showed for the first time, given as ``(packet
        position, bit, by the originator)`` in order (the block path)."""
        for _pos, bit, by_orig in letters:
            shifted = bit if by_orig else bit << 8
            if not int(self._seen[flow]) & shifted:
                self._seen[flow] |= shifted
                letter = _LETTER[bit]
                self._history[flow] += letter if by_orig else letter.lower()

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
        names = ("first", "last", "pab", "bab", "pba", "bba", "seen", "orig_a")
        columns = [getattr(self, "_" + n)[: len(self._keys)].tolist() for n in names]
        for i, key in enumerate(self._keys):
            first, last, pab, bab, pba, bba, seen, orig_a = (c[i] for c in columns)
            if len(key) == 2:  # a plain IPv4 flow: its ends packed in two integers
                addrs, rest = key
                assert isinstance(addrs, int) and isinstance(rest, int)
                ip, proto, vlan, vni = True, rest >> 32, None, None
                a_addr, b_addr = (
                    (addrs >> 32).to_bytes(4, "big"),
                    (addrs & 0xFFFFFFFF).to_bytes(4, "big"),
                )
                a_port, b_port = rest >> 16 & 0xFFFF, rest & 0xFFFF
            else:
                ip, proto, vlan, vni, a_addr, a_port, b_addr, b_port = key  # type: ignore[assignment]
            assert isinstance(proto, int) and isinstance(a_addr, bytes)
            assert isinstance(b_addr, bytes) and isinstance(a_port, int) and isinstance(b_port, int)
            assert vlan is None or isinstance(vlan, int)
            assert vni is None or isinstance(vni, int)
            if orig_a:
                ends = (a_addr, a_port, b_addr, b_port)
                op, ob, rp, rb = pab, bab, pba, bba
            else:
                ends = (b_addr, b_port, a_addr, a_port)
                op, ob, rp, rb = pba, bba, pab, bab
            state = conn_state(proto, seen & 0xFF, seen >> 8, rp > 0) if ip else "OTH"
            yield Flow(proto, bool(ip), *ends, vlan, vni, tuple(sorted(self._mirrors[i])), op,
                       ob, rp, rb, first, last, state, self._history[i])  # fmt: skip
