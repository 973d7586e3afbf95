"""Ethernet II with IEEE 802.1Q and 802.1ad tags (IEEE 802.3 clause 3, IEEE 802.1Q 9.5)."""

from __future__ import annotations

__all__ = [
    "ETHERTYPE_ARP",
    "ETHERTYPE_ERSPAN_II",
    "ETHERTYPE_ERSPAN_III",
    "ETHERTYPE_IPV4",
    "ETHERTYPE_IPV6",
    "ETHERTYPE_LLDP",
    "ETHERTYPE_NAMES",
    "ETHERTYPE_RARP",
    "ETHERTYPE_QINQ",
    "ETHERTYPE_QINQ_OLD",
    "ETHERTYPE_TEB",
    "ETHERTYPE_VLAN",
    "ETH_ADDRS_LEN",
    "ETH_HEADER_LEN",
    "ETH_TYPE_OFFSET",
    "MIN_ETHERTYPE",
    "TPIDS",
    "VLAN_TAG_LEN",
    "VLAN_VID_MASK",
]

ETH_ADDRS_LEN = 12  #: destination and source MAC addresses
ETH_TYPE_OFFSET = 12  #: the EtherType (or the first tag's TPID) follows the addresses
ETH_HEADER_LEN = 14
VLAN_TAG_LEN = 4  #: TPID (2 bytes) and tag control information (PCP, DEI, VID)
VLAN_VID_MASK = 0x0FFF
#: Below this the field is an IEEE 802.3 length, not an EtherType.
MIN_ETHERTYPE = 0x0600

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_RARP = 0x8035
ETHERTYPE_LLDP = 0x88CC
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100  #: IEEE 802.1Q C-tag
ETHERTYPE_QINQ = 0x88A8  #: IEEE 802.1ad S-tag
ETHERTYPE_QINQ_OLD = 0x9100  #: the pre-802.1ad QinQ tag some switches still send
#: Transparent Ethernet Bridging: what GRE carries an Ethernet frame as (OVS mirrors).
ETHERTYPE_TEB = 0x6558
ETHERTYPE_ERSPAN_II = 0x88BE  #: ERSPAN types I and II, as a GRE protocol
ETHERTYPE_ERSPAN_III = 0x22EB  #: ERSPAN type III, as a GRE protocol

#: EtherTypes named in summaries and flow tables.
ETHERTYPE_NAMES = {
    ETHERTYPE_IPV4: "IPv4",
    ETHERTYPE_ARP: "ARP",
    ETHERTYPE_RARP: "RARP",
    ETHERTYPE_IPV6: "IPv6",
    ETHERTYPE_VLAN: "802.1Q",
    ETHERTYPE_QINQ: "802.1ad",
    ETHERTYPE_LLDP: "LLDP",
}

#: Every tag protocol identifier a VLAN tag may start with, in the order most seen.
TPIDS = (ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_QINQ_OLD)
