"""The layers a frame is dissected into: one frozen dataclass per header, typed fields.

Each class has a ``name`` (what :meth:`~vmsniff.dissect.frame.Frame.find` takes) and documents
each field in its metadata; docs/packet-api.md is generated from these classes
(:mod:`vmsniff.dissect.reference`). Addresses are text (``10.0.0.1``, ``fd00::1``,
``02:00:00:00:00:01``); numbers are ints; ``options`` and ``payload`` fields are bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "LAYERS",
    "Arp",
    "Dhcp",
    "Dns",
    "Erspan",
    "Ethernet",
    "Geneve",
    "Gre",
    "ICMPv6",
    "Icmp",
    "IPv4",
    "IPv6",
    "Layer",
    "OpenFlow",
    "Tcp",
    "Udp",
    "Vlan",
    "Vxlan",
]


def _f(doc: str) -> Any:
    return field(metadata={"doc": doc})


class Layer:
    """Base of every layer: ``name`` is the layer's name for ``find``; ``offset`` where its
    header starts in the frame's bytes."""

    __slots__ = ()
    name: ClassVar[str] = ""
    offset: int


@dataclass(frozen=True, slots=True)
class Ethernet(Layer):
    """Ethernet II header (IEEE 802.3)."""

    name: ClassVar[str] = "ethernet"
    offset: int = _f("where the header starts in the frame")
    dst: str = _f("destination MAC address")
    src: str = _f("source MAC address")
    ethertype: int = _f("EtherType after any VLAN tags (EtherType enum); below 0x0600 a length")


@dataclass(frozen=True, slots=True)
class Vlan(Layer):
    """One IEEE 802.1Q / 802.1ad tag (stacked tags are several layers, outermost first)."""

    name: ClassVar[str] = "vlan"
    offset: int = _f("where the tag starts (its TPID)")
    tpid: int = _f("tag protocol identifier (EtherType enum: VLAN, QINQ, QINQ_OLD)")
    pcp: int = _f("priority code point, 0-7")
    dei: int = _f("drop eligible indicator, 0 or 1")
    vid: int = _f("VLAN identifier, 0-4095")
    ethertype: int = _f("the EtherType (or next TPID) that follows the tag")


@dataclass(frozen=True, slots=True)
class Arp(Layer):
    """ARP for IPv4 over Ethernet (RFC 826)."""

    name: ClassVar[str] = "arp"
    offset: int = _f("where the header starts")
    op: int = _f("operation: 1 request, 2 reply (ArpOp enum)")
    sender_mac: str = _f("sender hardware address")
    sender_ip: str = _f("sender protocol address")
    target_mac: str = _f("target hardware address")
    target_ip: str = _f("target protocol address")


@dataclass(frozen=True, slots=True)
class IPv4(Layer):
    """IPv4 header (RFC 791)."""

    name: ClassVar[str] = "ipv4"
    offset: int = _f("where the header starts")
    header_length: int = _f("header length in bytes (IHL * 4)")
    tos: int = _f("type of service / DSCP and ECN byte")
    total_length: int = _f("total length field: header and payload, bytes")
    ident: int = _f("identification")
    dont_fragment: bool = _f("DF flag")
    more_fragments: bool = _f("MF flag")
    fragment_offset: int = _f("fragment offset in bytes (the field * 8)")
    ttl: int = _f("time to live")
    proto: int = _f("protocol of the payload (IPProto enum)")
    checksum: int = _f("header checksum as sent (not verified)")
    src: str = _f("source address")
    dst: str = _f("destination address")
    options: bytes = _f("options, raw (empty without)")

    @property
    def is_fragment(self) -> bool:
        """True for any fragment (MF set, or a non-zero offset)."""
        return self.more_fragments or self.fragment_offset != 0


@dataclass(frozen=True, slots=True)
class IPv6(Layer):
    """IPv6 header (RFC 8200) and its extension headers."""

    name: ClassVar[str] = "ipv6"
    offset: int = _f("where the header starts")
    traffic_class: int = _f("traffic class")
    flow_label: int = _f("flow label")
    payload_length: int = _f("payload length field, bytes")
    next_header: int = _f("next header of the fixed header (IPProto enum)")
    hop_limit: int = _f("hop limit")
    src: str = _f("source address")
    dst: str = _f("destination address")
    extensions: tuple[int, ...] = _f("extension headers passed, in order (IPProto numbers)")
    proto: int = _f("protocol of the payload after the extension headers")
    fragment_offset: int = _f("with a Fragment header: its offset in bytes, else 0")
    more_fragments: bool = _f("with a Fragment header: its M flag")
    fragment_id: int | None = _f("with a Fragment header: its identification, else None")


@dataclass(frozen=True, slots=True)
class Icmp(Layer):
    """ICMP (RFC 792). ``ident``/``seq`` for echo request and reply, else None."""

    name: ClassVar[str] = "icmp"
    offset: int = _f("where the header starts")
    type: int = _f("message type (IcmpType enum)")
    code: int = _f("code")
    checksum: int = _f("checksum as sent")
    ident: int | None = _f("echo identifier")
    seq: int | None = _f("echo sequence number")


@dataclass(frozen=True, slots=True)
class ICMPv6(Layer):
    """ICMPv6 (RFC 4443). ``ident``/``seq`` for echo request and reply, else None;
    ``target`` for neighbor solicitation and advertisement."""

    name: ClassVar[str] = "icmpv6"
    offset: int = _f("where the header starts")
    type: int = _f("message type (Icmp6Type enum)")
    code: int = _f("code")
    checksum: int = _f("checksum as sent")
    ident: int | None = _f("echo identifier")
    seq: int | None = _f("echo sequence number")
    target: str | None = _f("neighbor discovery target address")


@dataclass(frozen=True, slots=True)
class Tcp(Layer):
    """TCP header (RFC 9293)."""

    name: ClassVar[str] = "tcp"
    offset: int = _f("where the header starts")
    sport: int = _f("source port")
    dport: int = _f("destination port")
    seq: int = _f("sequence number")
    ack: int = _f("acknowledgment number")
    header_length: int = _f("data offset in bytes")
    flags: int = _f("flags (TcpFlags enum: FIN SYN RST PSH ACK URG ECE CWR)")
    window: int = _f("window (unscaled)")
    checksum: int = _f("checksum as sent")
    urgent: int = _f("urgent pointer")
    options: bytes = _f("options, raw")
    payload_length: int = _f("payload bytes by the IP length (even when the capture cut them)")


@dataclass(frozen=True, slots=True)
class Udp(Layer):
    """UDP header (RFC 768)."""

    name: ClassVar[str] = "udp"
    offset: int = _f("where the header starts")
    sport: int = _f("source port")
    dport: int = _f("destination port")
    length: int = _f("length field: header and payload, bytes")
    checksum: int = _f("checksum as sent")


@dataclass(frozen=True, slots=True)
class Gre(Layer):
    """GRE version 0 (RFC 2784, RFC 2890)."""

    name: ClassVar[str] = "gre"
    offset: int = _f("where the header starts")
    flags: int = _f("the first 16-bit word: C R K S flags and version")
    proto: int = _f("protocol type of the payload (an EtherType)")
    key: int | None = _f("key (K flag), else None")
    seq: int | None = _f("sequence number (S flag), else None")


@dataclass(frozen=True, slots=True)
class Erspan(Layer):
    """ERSPAN types I, II and III (draft-foschiano-erspan-03)."""

    name: ClassVar[str] = "erspan"
    offset: int = _f("where the header starts")
    type: int = _f("1, 2 or 3")
    session: int | None = _f("session id (types II and III)")
    vlan: int | None = _f("original VLAN (types II and III)")
    direction: int | None = _f("type III D bit: 0 ingress, 1 egress")


@dataclass(frozen=True, slots=True)
class Vxlan(Layer):
    """VXLAN header (RFC 7348), UDP port 4789."""

    name: ClassVar[str] = "vxlan"
    offset: int = _f("where the header starts")
    vni: int = _f("VXLAN network identifier")


@dataclass(frozen=True, slots=True)
class Geneve(Layer):
    """Geneve header (RFC 8926), UDP port 6081."""

    name: ClassVar[str] = "geneve"
    offset: int = _f("where the header starts")
    vni: int = _f("virtual network identifier")
    proto: int = _f("protocol type of the payload (an EtherType)")
    options: bytes = _f("options, raw")


@dataclass(frozen=True, slots=True)
class Dns(Layer):
    """A hint from a DNS message on port 53 (RFC 1035): its first question."""

    name: ClassVar[str] = "dns"
    offset: int = _f("where the message starts")
    ident: int = _f("message ID")
    response: bool = _f("QR bit: a response")
    qname: str | None = _f("the first question's name, None when it cannot be read")
    qtype: int | None = _f("the first question's type")


@dataclass(frozen=True, slots=True)
class Dhcp(Layer):
    """A hint from a DHCP message on ports 67/68 (RFC 2131): its message type."""

    name: ClassVar[str] = "dhcp"
    offset: int = _f("where the message starts")
    op: int = _f("1 BOOTREQUEST, 2 BOOTREPLY")
    xid: int = _f("transaction ID")
    message_type: int | None = _f("option 53: 1 DISCOVER ... 8 INFORM, None when absent")


@dataclass(frozen=True, slots=True)
class OpenFlow(Layer):
    """A hint from an OpenFlow message header on TCP port 6653 or 6633."""

    name: ClassVar[str] = "openflow"
    offset: int = _f("where the message starts")
    version: int = _f("wire version: 1 is 1.0 ... 6 is 1.5")
    type: int = _f("message type")
    length: int = _f("message length")
    xid: int = _f("transaction ID")


#: Every layer class, in the order docs/packet-api.md lists them.
LAYERS: tuple[type[Layer], ...] = (Ethernet, Vlan, Arp, IPv4, IPv6, Icmp, ICMPv6, Tcp, Udp, Gre,
                                   Erspan, Vxlan, Geneve, Dns, Dhcp, OpenFlow)  # fmt: skip
