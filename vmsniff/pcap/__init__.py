"""Sans-IO pcap and pcapng: the encoders vmsniff writes files with, and a streaming reader.

:mod:`.encoder` holds the one encoder of each format that the program uses (receive, capture,
snoop and the in-place ring writer all write through it or its definitions); :mod:`.pcap` and
:mod:`.pcapng` are the block-by-block building functions it is made of, also used by tests to
write captures by hand. The layouts and numbers are in :mod:`vmsniff.formats.capture`.
"""

from vmsniff.pcap.encoder import (
    FORMATS,
    Encoder,
    Packet,
    PcapEncoder,
    PcapngEncoder,
    interface_name,
    new_encoder,
    whole_prefix,
)
from vmsniff.pcap.pcap import file_header, record
from vmsniff.pcap.pcapng import (
    enhanced_packet_block,
    interface_description_block,
    section_header_block,
)
from vmsniff.pcap.reader import CaptureReader, Record, read_records

__all__ = [
    "FORMATS",
    "CaptureReader",
    "Encoder",
    "Packet",
    "PcapEncoder",
    "PcapngEncoder",
    "Record",
    "enhanced_packet_block",
    "file_header",
    "interface_description_block",
    "interface_name",
    "new_encoder",
    "read_records",
    "record",
    "section_header_block",
    "whole_prefix",
]
