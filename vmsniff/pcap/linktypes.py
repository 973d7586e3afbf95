"""LINKTYPE_* values used in pcap and pcapng headers (https://www.tcpdump.org/linktypes.html)."""

from __future__ import annotations

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
]

LINKTYPE_NULL = 0  # BSD loopback: 4-byte address family in host byte order
LINKTYPE_ETHERNET = 1  # DLT_EN10MB
LINKTYPE_RAW = 101  # raw IPv4 or IPv6, told apart by the version nibble
LINKTYPE_LOOP = 108  # OpenBSD loopback: 4-byte address family in network byte order
LINKTYPE_LINUX_SLL = 113  # Linux "cooked" capture, 16-byte header, protocol at offset 14
LINKTYPE_LINUX_SLL2 = 276  # cooked v2 (`tcpdump -i any` since 4.99): 20 bytes, protocol at 0
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
