"""Sans-IO pcap and pcapng: encoders that return bytes, and a streaming reader fed with bytes."""

from vmsniff.pcap.linktypes import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)
from vmsniff.pcap.pcap import file_header, record
from vmsniff.pcap.pcapng import (
    DIRECTION_INBOUND,
    DIRECTION_OUTBOUND,
    enhanced_packet_block,
    interface_description_block,
    section_header_block,
)
from vmsniff.pcap.reader import CaptureReader, Record, read_records

__all__ = [
    "DIRECTION_INBOUND",
    "DIRECTION_OUTBOUND",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "CaptureReader",
    "Record",
    "enhanced_packet_block",
    "file_header",
    "interface_description_block",
    "read_records",
    "record",
    "section_header_block",
]
