"""Linux packet sockets (``linux/if_packet.h``): packet types and the TPACKET_V3 ring.

A TPACKET_V3 ring is blocks; a block is a ``tpacket_block_desc`` and then packets, each a
``tpacket3_hdr`` followed, ``tp_mac`` bytes from its start, by the frame, and after the
header a ``sockaddr_ll`` (the packet type is in it). Offsets below are from the start of the
block or of the packet's header; the structures are native-endian (little-endian here).
"""

from __future__ import annotations

import struct

__all__ = [
    "BLOCK_HEADER",
    "BLOCK_LEN_OFFSET",
    "BLOCK_NUM_PKTS_OFFSET",
    "ETH_P_ALL",
    "MAX_SNAPLEN",
    "PACKET_HOST",
    "PACKET_OUTGOING",
    "SLL_PKTTYPE_OFFSET",
    "SLOT_HEADER",
    "SLOT_READ",
    "TP_LEN_WORD",
    "TP_MAC_WORD",
    "TP_NEXT_OFFSET_WORD",
    "TP_NSEC_WORD",
    "TP_SEC_WORD",
    "TP_SNAPLEN_WORD",
    "TPACKET3_HDR",
]

#: sll_pkttype / skb->pkt_type (linux/if_packet.h): what a capture on a device saw.
PACKET_HOST = 0  #: addressed to this host: on a tap, what the VM sent
PACKET_OUTGOING = 4  #: sent by this host: on a tap, what the VM receives
ETH_P_ALL = 0x0003

#: The largest snapshot length, and the default: tcpdump's MAXIMUM_SNAPLEN.
MAX_SNAPLEN = 262144

BLOCK_HEADER = 48  #: tpacket_block_desc, aligned: the first packet is no nearer the start
BLOCK_NUM_PKTS_OFFSET = 12  #: tpacket_hdr_v1.num_pkts
BLOCK_LEN_OFFSET = 20  #: tpacket_hdr_v1.blk_len: bytes of the block in use

#: tpacket3_hdr: next_offset, sec, nsec, snaplen, len, status, mac, net (then hv1, padding).
TPACKET3_HDR = struct.Struct("=IIIIIIHH")
SLOT_HEADER = 48  #: sizeof(tpacket3_hdr), TPACKET_ALIGN'ed: where sockaddr_ll starts
SLL_PKTTYPE_OFFSET = SLOT_HEADER + 10  #: sockaddr_ll.sll_pkttype, from the packet's header
SLOT_READ = SLOT_HEADER + 20  #: what is read of a packet's slot: up to sockaddr_ll's end
# The header's fields as indices of 32-bit words from its start (for numpy over a block).
TP_NEXT_OFFSET_WORD = 0
TP_SEC_WORD = 1
TP_NSEC_WORD = 2
TP_SNAPLEN_WORD = 3
TP_LEN_WORD = 4
TP_MAC_WORD = 6  #: low 16 bits: tp_mac; high 16 bits: tp_net
