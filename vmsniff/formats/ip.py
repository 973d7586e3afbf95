"""IPv4 (RFC 791) and IPv6 (RFC 8200) as the outer header of a tunnel: the fields read."""

from __future__ import annotations

__all__ = [
    "GENEVE_PORT",
    "GRE_UDP_PORT",
    "IPPROTO_GRE",
    "IPV4_FLAGS_OFFSET",
    "IPV4_FRAGMENT_MASK",
    "IPV4_MIN_HEADER",
    "IPV4_NO_OPTIONS",
    "IPV4_PROTO_OFFSET",
    "IPV4_SRC_OFFSET",
    "IPV4_TOTAL_LENGTH_OFFSET",
    "IPV6_EXTENSIONS",
    "IPV6_FRAGMENT",
    "IPV6_HEADER",
    "IP_PROTOCOL_NAMES",
    "VXLAN_PORT",
]

IPV4_MIN_HEADER = 20
IPV4_NO_OPTIONS = 0x45  #: first byte of an IPv4 header without options: version 4, IHL 5
IPV4_TOTAL_LENGTH_OFFSET = 2
IPV4_FLAGS_OFFSET = 6  #: flags (3 bits) and fragment offset (13 bits), 16 bits
IPV4_FRAGMENT_MASK = 0x3FFF  #: MF and the fragment offset: set on every fragment
IPV4_PROTO_OFFSET = 9
IPV4_SRC_OFFSET = 12
IPV6_HEADER = 40

IPPROTO_GRE = 47
#: IPv6 extension headers that may sit between the fixed header and GRE (RFC 8200 section 4):
#: hop-by-hop options, routing, destination options. A Fragment header goes to reassembly.
IPV6_EXTENSIONS = frozenset({0, 43, 60})
IPV6_FRAGMENT = 44

#: UDP destination ports of the tunnels vmsniff looks inside.
VXLAN_PORT = 4789  #: RFC 7348 section 5
GENEVE_PORT = 6081  #: RFC 8926 section 3.3
GRE_UDP_PORT = 4754  #: GRE-in-UDP, RFC 8086 section 3

#: IP protocol numbers (IANA "Assigned Internet Protocol Numbers") named in one-line summaries.
IP_PROTOCOL_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 47: "GRE", 58: "ICMP6", 132: "SCTP"}
