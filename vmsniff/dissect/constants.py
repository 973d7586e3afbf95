"""Named constants of the packet API: EtherTypes, IP protocols, ICMP and ICMPv6 types, TCP
flags. The numbers come from :mod:`vmsniff.formats` where it defines them; these enums give
them names a script can use (``tcp.flags & TcpFlags.SYN``, ``ip.proto == IPProto.TCP``)."""

from __future__ import annotations

from enum import IntEnum, IntFlag

from vmsniff.formats import ethernet as eth
from vmsniff.formats.ip import IPPROTO_GRE

__all__ = ["ArpOp", "EtherType", "IPProto", "Icmp6Type", "IcmpType", "TcpFlags"]


class EtherType(IntEnum):
    """EtherTypes (IEEE 802 numbers) vmsniff names."""

    IPV4 = eth.ETHERTYPE_IPV4
    ARP = eth.ETHERTYPE_ARP
    RARP = eth.ETHERTYPE_RARP
    VLAN = eth.ETHERTYPE_VLAN
    IPV6 = eth.ETHERTYPE_IPV6
    QINQ = eth.ETHERTYPE_QINQ
    QINQ_OLD = eth.ETHERTYPE_QINQ_OLD
    LLDP = eth.ETHERTYPE_LLDP
    TEB = eth.ETHERTYPE_TEB
    ERSPAN_II = eth.ETHERTYPE_ERSPAN_II
    ERSPAN_III = eth.ETHERTYPE_ERSPAN_III


class IPProto(IntEnum):
    """IP protocol numbers (IANA) vmsniff decodes or names."""

    HOPOPTS = 0
    ICMP = 1
    TCP = 6
    UDP = 17
    ROUTING = 43
    FRAGMENT = 44
    GRE = IPPROTO_GRE
    ICMPV6 = 58
    NONE = 59
    DSTOPTS = 60
    SCTP = 132


class IcmpType(IntEnum):
    """ICMP types (RFC 792 and later)."""

    ECHO_REPLY = 0
    DEST_UNREACHABLE = 3
    REDIRECT = 5
    ECHO_REQUEST = 8
    TIME_EXCEEDED = 11
    PARAMETER_PROBLEM = 12


class Icmp6Type(IntEnum):
    """ICMPv6 types (RFC 4443, RFC 4861)."""

    DEST_UNREACHABLE = 1
    PACKET_TOO_BIG = 2
    TIME_EXCEEDED = 3
    PARAMETER_PROBLEM = 4
    ECHO_REQUEST = 128
    ECHO_REPLY = 129
    ROUTER_SOLICITATION = 133
    ROUTER_ADVERTISEMENT = 134
    NEIGHBOR_SOLICITATION = 135
    NEIGHBOR_ADVERTISEMENT = 136


class ArpOp(IntEnum):
    """ARP operations (RFC 826)."""

    REQUEST = 1
    REPLY = 2


class TcpFlags(IntFlag):
    """TCP header flags (RFC 9293, RFC 3168)."""

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80
