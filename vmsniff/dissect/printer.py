"""One line per frame, the way tcpdump prints it, and JSON Lines for scripts.

The layout is tcpdump's (``-n``: vmsniff never looks names up, on a production hypervisor a
DNS query per packet is the last thing wanted, so ``-n`` and ``-nn`` change nothing):
``TIME [IFACE DIRECTION] IP SRC.PORT > DST.PORT: Flags [S.], seq N, ack N, win N, options
[...], length N``. Sequence numbers are relative to the connection's first, as tcpdump prints
them by default (:class:`_SeqBases`; ``-S`` absolute). ``-e`` adds the link-level header,
``-x``/``-X``/``-A`` the bytes, ``-t``/``-tt``/``-ttt``/``-tttt``/``-ttttt`` choose the time
stamp, as tcpdump's do.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import asdict, dataclass, field

from vmsniff.dissect.constants import TcpFlags
from vmsniff.dissect.frame import Frame
from vmsniff.dissect.layers import (
    Arp,
    Dhcp,
    Dns,
    Erspan,
    Ethernet,
    Geneve,
    Gre,
    Icmp,
    ICMPv6,
    IPv4,
    IPv6,
    Layer,
    OpenFlow,
    Tcp,
    Udp,
    Vlan,
    Vxlan,
)
from vmsniff.formats.ethernet import ETHERTYPE_NAMES
from vmsniff.formats.ip import IP_PROTOCOL_NAMES

__all__ = ["PrintOptions", "Printer", "frame_json"]

# in the order of tcpdump's tcp_flag_values (print-tcp.c): SYN|ACK|ECE is "S.E"
# (plain ints: IntFlag arithmetic made printing a TCP line three times slower)
_FLAG_LETTERS = tuple((int(bit), letter) for bit, letter in (
    (TcpFlags.FIN, "F"), (TcpFlags.SYN, "S"), (TcpFlags.RST, "R"), (TcpFlags.PSH, "P"),
    (TcpFlags.ACK, "."), (TcpFlags.URG, "U"), (TcpFlags.ECE, "E"), (TcpFlags.CWR, "W"),
))  # fmt: skip
_ICMP = {0: "echo reply", 8: "echo request", 3: "unreachable", 11: "time exceeded", 5: "redirect"}
_ICMP6 = {128: "echo request", 129: "echo reply", 133: "router solicitation",
          134: "router advertisement", 135: "neighbor solicitation",
          136: "neighbor advertisement", 1: "destination unreachable", 2: "packet too big",
          3: "time exceeded"}  # fmt: skip
_DHCP = {1: "Discover", 2: "Offer", 3: "Request", 4: "Decline", 5: "ACK", 6: "NACK",
         7: "Release", 8: "Inform"}  # fmt: skip
_SEQ_MASK = 0xFFFFFFFF
_ACK, _SYN = int(TcpFlags.ACK), int(TcpFlags.SYN)
_SYN_FIN_RST = int(TcpFlags.SYN | TcpFlags.FIN | TcpFlags.RST)
_MAX_CONNECTIONS = 1 << 16  # bases kept, the first recorded forgotten first (tcpdump: all)


class _SeqBases:
    """tcpdump's relative TCP sequence numbers (print-tcp.c, ``tcp_seq_hash``), reproduced.

    Only a segment with ACK set takes part. Its connection is keyed in one collating order for
    both directions: the lower port's end first, or with equal ports the lower address's
    (tcpdump compares the address bytes; any fixed order gives the same numbers). The first
    such segment seen, and every one with SYN (a SYN-ACK: a new connection on the same ends),
    records the bases and is printed absolute: its ``seq`` is the base of its own direction,
    its ``ack - 1`` the other's. Later segments print ``seq - base`` and ``ack - base(other)``
    modulo 2**32. So a capture that starts mid-connection prints its first ACK absolute and
    counts from it, as tcpdump does; a SYN without ACK prints absolute and records nothing.
    """

    __slots__ = ("_bases",)

    def __init__(self) -> None:
        # key (lower end's address, other address, lower port, other port) ->
        # (base of the lower end's seq, base of the other end's seq)
        self._bases: dict[tuple[str, str, int, int], tuple[int, int]] = {}

    def relative(self, src: str, dst: str, tcp: Tcp) -> tuple[int, int, int | None]:
        """``(seq, ack, sack_base)``: the segment's numbers as tcpdump prints them, and what
        its SACK blocks (which count the other end's bytes) are relative to."""
        seq, ack, flags = tcp.seq, tcp.ack, tcp.flags
        if not flags & _ACK:
            return seq, ack, None
        sport, dport = tcp.sport, tcp.dport
        rev = sport > dport or (sport == dport and src > dst)
        key = (dst, src, dport, sport) if rev else (src, dst, sport, dport)
        bases = self._bases.get(key)
        if bases is None or flags & _SYN:
            # the first segment (or a new connection): its numbers become the bases
            own, other = seq, (ack - 1) & _SEQ_MASK
            self._bases.pop(key, None)
            if len(self._bases) >= _MAX_CONNECTIONS:
                del self._bases[next(iter(self._bases))]  # the oldest connection's
            self._bases[key] = (other, own) if rev else (own, other)
            return seq, ack, other
        low, high = bases
        own, other = (high, low) if rev else (low, high)
        return (seq - own) & _SEQ_MASK, (ack - other) & _SEQ_MASK, other


@dataclass(frozen=True, slots=True)
class PrintOptions:
    """tcpdump's printing flags."""

    link: bool = False  #: -e: the link-level header on each line
    hex: int = 0  #: -x (1) / -xx (2): the bytes in hex, from the network header (2: the frame)
    hex_ascii: int = 0  #: -X / -XX: hex and ASCII
    ascii: bool = False  #: -A: the bytes in ASCII, from the network header
    timestamps: int = 0  #: 0 default, 1 -t (none), 2 -tt, 3 -ttt, 4 -tttt, 5 -ttttt
    verbose: int = 0  #: -v: IP's ttl, id, length and flags
    utc: bool = False  #: times in UTC instead of local time
    absolute_seq: bool = False  #: -S: TCP sequence and acknowledgment numbers as sent


@dataclass
class Printer:
    """Format frames as tcpdump's lines (or JSON Lines); keeps what ``-ttt``/``-ttttt`` need."""

    options: PrintOptions = field(default_factory=PrintOptions)
    _first: int | None = None
    _previous: int | None = None
    _seq_bases: _SeqBases | None = None

    def __post_init__(self) -> None:
        if not self.options.absolute_seq:
            self._seq_bases = _SeqBases()

    def line(self, frame: Frame) -> str:
        """The frame's line (with -x/-X/-A its dump lines after it), no final newline."""
        parts = []
        stamp = self._stamp(frame.ts_ns)
        if stamp:
            parts.append(stamp)
        if frame.interface:
            parts.append(frame.interface)
        if frame.direction is not None:
            parts.append(frame.direction.value)
        text = " ".join(parts + [_summary(frame, self.options, self._seq_bases)])
        dump = self._dump(frame)
        return text + dump

    def json_line(self, frame: Frame) -> str:
        """One JSON object, the packet API's fields (no newline)."""
        return json.dumps(frame_json(frame), separators=(",", ":"))

    def _stamp(self, ts_ns: int | None) -> str:
        kind = self.options.timestamps
        if kind == 1 or ts_ns is None:
            return ""
        if self._first is None:
            self._first = ts_ns
        previous, self._previous = self._previous, ts_ns
        sec, ns = divmod(ts_ns, 1_000_000_000)
        if kind == 2:
            return f"{sec}.{ns // 1000:06d}"
        if kind in (3, 5):
            base = (previous if previous is not None else ts_ns) if kind == 3 else self._first
            delta = max(0, ts_ns - base)
            d_sec, d_ns = divmod(delta, 1_000_000_000)
            hours, rest = divmod(d_sec, 3600)
            return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.{d_ns // 1000:06d}"
        moment = time.gmtime(sec) if self.options.utc else time.localtime(sec)
        clock = time.strftime("%H:%M:%S", moment) + f".{ns // 1000:06d}"
        return time.strftime("%Y-%m-%d ", moment) + clock if kind == 4 else clock

    def _dump(self, frame: Frame) -> str:
        o = self.options
        whole = o.hex >= 2 or o.hex_ascii >= 2
        if not (o.hex or o.hex_ascii or o.ascii):
            return ""
        start = 0
        if not whole:
            net = next((x for x in frame.layers if isinstance(x, IPv4 | IPv6 | Arp)), None)
            start = net.offset if net is not None else 0
        data = frame.data[start:]
        if o.ascii and not (o.hex or o.hex_ascii):
            return "\n" + "".join(chr(b) if 32 <= b < 127 or b in (10, 13) else "." for b in data)
        lines = []
        for at in range(0, len(data), 16):
            row = data[at : at + 16]
            words = " ".join(row[i : i + 2].hex() for i in range(0, len(row), 2))
            text = f"\t0x{at:04x}:  {words}"
            if o.hex_ascii:
                text = text.ljust(51) + "  " + "".join(chr(b) if 32 <= b < 127 else "."
                                                       for b in row)  # fmt: skip
            lines.append(text)
        return "\n" + "\n".join(lines)


def _summary(frame: Frame, o: PrintOptions, seqs: _SeqBases | None) -> str:
    layers = list(frame.layers)
    text = ""
    if o.link and layers and isinstance(layers[0], Ethernet):
        text = _link(frame, layers)
    body = _network(frame, layers, 0, o, seqs)
    if frame.error:
        body += f" [{frame.error}]"
    return text + body


def _link(frame: Frame, layers: list[Layer]) -> str:
    eth = layers[0]
    assert isinstance(eth, Ethernet)
    first = layers[1] if len(layers) > 1 else None
    etype = first.tpid if isinstance(first, Vlan) else eth.ethertype
    head = f"{eth.src} > {eth.dst}, ethertype {_ethertype(etype)}, length {frame.wire_length}: "
    for tag in (x for x in layers if isinstance(x, Vlan)):
        head += f"vlan {tag.vid}, p {tag.pcp}, ethertype {_ethertype(tag.ethertype)}, "
    return head


def _ethertype(value: int) -> str:
    return f"{ETHERTYPE_NAMES.get(value, 'Unknown')} (0x{value:04x})"


def _network(
    frame: Frame, layers: list[Layer], start: int, o: PrintOptions, seqs: _SeqBases | None
) -> str:
    """The summary from the first network layer at or after ``start``."""
    for i in range(start, len(layers)):
        layer = layers[i]
        if isinstance(layer, Arp):
            return _arp(layer, frame)
        if isinstance(layer, IPv4 | IPv6):
            return _ip(frame, layers, i, o, seqs)
    eth = next((x for x in layers if isinstance(x, Ethernet)), None)
    if eth is not None:
        etype = layers[-1].ethertype if isinstance(layers[-1], Vlan) else eth.ethertype
        return f"ethertype {_ethertype(etype)}, length {frame.wire_length}"
    return f"length {frame.wire_length}"


def _arp(arp: Arp, frame: Frame) -> str:
    length = frame.wire_length - arp.offset  # tcpdump counts the padding after it too
    if arp.op == 1:
        return f"ARP, Request who-has {arp.target_ip} tell {arp.sender_ip}, length {length}"
    if arp.op == 2:
        return f"ARP, Reply {arp.sender_ip} is-at {arp.sender_mac}, length {length}"
    return f"ARP, op {arp.op}, length {length}"


def _ip(frame: Frame, layers: list[Layer], i: int, o: PrintOptions, seqs: _SeqBases | None) -> str:
    ip = layers[i]
    assert isinstance(ip, IPv4 | IPv6)
    family = "IP" if isinstance(ip, IPv4) else "IP6"
    detail = ""
    if o.verbose and isinstance(ip, IPv4):
        flags = "DF" if ip.dont_fragment else ("+" if ip.more_fragments else "none")
        detail = (f" (tos 0x{ip.tos:x}, ttl {ip.ttl}, id {ip.ident}, offset {ip.fragment_offset}, "
                  f"flags [{flags}], proto {IP_PROTOCOL_NAMES.get(ip.proto, '?')} ({ip.proto}), "
                  f"length {ip.total_length})")  # fmt: skip
    nxt = layers[i + 1] if i + 1 < len(layers) else None
    ip_payload = (ip.total_length - ip.header_length if isinstance(ip, IPv4)
                  else ip.payload_length)  # fmt: skip
    if isinstance(ip, IPv4) and ip.fragment_offset:
        return (f"{family}{detail} {ip.src} > {ip.dst}: ip-proto-{ip.proto}"  # a later fragment
                f" (frag {ip.ident}:{ip_payload}@{ip.fragment_offset})")  # fmt: skip
    if isinstance(nxt, Tcp):
        numbers = (nxt.seq, nxt.ack, None) if seqs is None else seqs.relative(ip.src, ip.dst, nxt)
        ends = f"{family}{detail} {ip.src}.{nxt.sport} > {ip.dst}.{nxt.dport}: "
        return ends + _tcp(nxt, layers, numbers, o.verbose)
    if isinstance(nxt, Udp):
        ends = f"{family}{detail} {ip.src}.{nxt.sport} > {ip.dst}.{nxt.dport}: "
        after = layers[i + 2] if i + 2 < len(layers) else None
        if isinstance(after, Vxlan):
            inner = _network(frame, layers, i + 3, o, seqs)
            return ends + f"VXLAN, flags [I] (0x08), vni {after.vni}: {inner}"  # one line
        if isinstance(after, Geneve):
            inner = _network(frame, layers, i + 3, o, seqs)
            return ends + f"Geneve, vni 0x{after.vni:x}: {inner}"
        if isinstance(after, Dns):
            return ends + _dns(after, nxt.length - 8)
        if isinstance(after, Dhcp) and after.message_type is not None:
            kind = _DHCP.get(after.message_type, str(after.message_type))
            return ends + f"BOOTP/DHCP, {kind}, length {nxt.length - 8}"
        return ends + f"UDP, length {nxt.length - 8}"
    if isinstance(nxt, Icmp):
        what = _ICMP.get(nxt.type, f"type-#{nxt.type}")
        if nxt.ident is not None:
            what += f", id {nxt.ident}, seq {nxt.seq}"
        return f"{family}{detail} {ip.src} > {ip.dst}: ICMP {what}, length {ip_payload}"
    if isinstance(nxt, ICMPv6):
        what = _ICMP6.get(nxt.type, f"type {nxt.type}")
        if nxt.ident is not None:
            what += f", id {nxt.ident}, seq {nxt.seq}"
        if nxt.target is not None:
            what += f", who has {nxt.target}" if nxt.type == 135 else f", tgt is {nxt.target}"
        return f"{family}{detail} {ip.src} > {ip.dst}: ICMP6, {what}, length {ip_payload}"
    if isinstance(nxt, Gre):
        key = f", key=0x{nxt.key:x}" if nxt.key is not None else ""
        after = layers[i + 2] if i + 2 < len(layers) else None
        label = "ERSPAN" if isinstance(after, Erspan) else "GREv0"
        inner = _network(frame, layers, i + 2, o, seqs)
        return f"{family}{detail} {ip.src} > {ip.dst}: {label}{key}, length {ip_payload}: {inner}"
    name = IP_PROTOCOL_NAMES.get(ip.proto, f"ip-proto-{ip.proto}")
    return f"{family}{detail} {ip.src} > {ip.dst}: {name}, length {ip_payload}"


def _tcp(tcp: Tcp, layers: list[Layer], numbers: tuple[int, int, int | None], verbose: int) -> str:
    """tcpdump's TCP part; ``numbers`` are the (relative or absolute) seq, ack and SACK base."""
    seq, ack, sack_base = numbers
    flags = "".join(letter for bit, letter in _FLAG_LETTERS if tcp.flags & bit) or "none"
    out = f"Flags [{flags}]"
    if verbose > 1 or tcp.payload_length or tcp.flags & _SYN_FIN_RST:
        out += f", seq {seq}"
        if tcp.payload_length:
            out += f":{(seq + tcp.payload_length) & _SEQ_MASK}"
    if tcp.flags & _ACK:
        out += f", ack {ack}"
    out += f", win {tcp.window}"
    if tcp.options:
        out += f", options [{_tcp_options(tcp.options, sack_base or 0)}]"
    out += f", length {tcp.payload_length}"
    of = next((x for x in layers if isinstance(x, OpenFlow) and x.offset > tcp.offset), None)
    if of is not None:
        out += f": OpenFlow v{of.version} type {of.type}, length {of.length}, xid 0x{of.xid:08x}"
    return out


def _tcp_options(raw: bytes, sack_base: int) -> str:
    out, pos = [], 0
    while pos < len(raw):
        kind = raw[pos]
        if kind == 0:
            out.append("eol")
            break
        if kind == 1:
            out.append("nop")
            pos += 1
            continue
        if pos + 1 >= len(raw) or raw[pos + 1] < 2:
            out.append("bad opt")
            break
        size = raw[pos + 1]
        value = raw[pos + 2 : pos + size]
        if kind == 2 and len(value) == 2:
            out.append(f"mss {struct.unpack('!H', value)[0]}")
        elif kind == 3 and len(value) == 1:
            out.append(f"wscale {value[0]}")
        elif kind == 4:
            out.append("sackOK")
        elif kind == 5 and len(value) == size - 2 and len(value) % 8 == 0:
            # SACK blocks count the other end's bytes: relative to its base (RFC 2018)
            edges = struct.unpack(f"!{len(value) // 4}I", value)
            blocks = "".join(f"{{{(edges[j] - sack_base) & _SEQ_MASK}:"
                             f"{(edges[j + 1] - sack_base) & _SEQ_MASK}}}"
                             for j in range(0, len(edges), 2))  # fmt: skip
            out.append(f"sack {len(edges) // 2} {blocks}")
        elif kind == 8 and len(value) == 8:
            val, ecr = struct.unpack("!II", value)
            out.append(f"TS val {val} ecr {ecr}")
        else:
            out.append(f"opt-{kind}:{value.hex()}")
        pos += size
    return ",".join(out)


def _dns(dns: Dns, length: int) -> str:
    if dns.qname is None:
        return f"DNS {'response' if dns.response else 'query'} {dns.ident}, length {length}"
    kind = {1: "A", 28: "AAAA", 5: "CNAME", 12: "PTR", 15: "MX", 16: "TXT", 33: "SRV"}.get(
        dns.qtype or 0, str(dns.qtype)
    )
    mark = "*" if not dns.response else ""
    return f"{dns.ident}{'+' if not dns.response else mark} {kind}? {dns.qname}. ({length})"


def frame_json(frame: Frame) -> dict[str, object]:
    """The frame as JSON: its time, interface, direction, lengths, error, and every layer with
    its fields (``name`` first; bytes as hex)."""
    layers = []
    for layer in frame.layers:
        fields = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in asdict(layer).items()}  # type: ignore[call-overload]
        layers.append({"name": layer.name, **fields})
    return {
        "ts_ns": frame.ts_ns,
        "interface": frame.interface,
        "direction": frame.direction.value if frame.direction is not None else None,
        "length": frame.wire_length,
        "captured": len(frame.data),
        "error": frame.error,
        "layers": layers,
    }
