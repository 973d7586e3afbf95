"""vmsniff.pcap.reader: streaming pcap/pcapng reader, both byte orders, odd blocks, bad input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmsniff.errors import MalformedPacket
from vmsniff.pcap.pcap import file_header, record
from vmsniff.pcap.pcapng import (
    enhanced_packet_block,
    interface_description_block,
    section_header_block,
)
from vmsniff.pcap.reader import CaptureReader, Record, read_records


def _pcap(e: str, magic: int) -> bytes:
    head = struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, 101)
    return head + struct.pack(e + "IIII", 10, 20, 3, 9) + b"abc"


@pytest.mark.parametrize("e", ["<", ">"])
@pytest.mark.parametrize(
    ("magic", "ts"), [(0xA1B2C3D4, 10_000_020_000), (0xA1B23C4D, 10_000_000_020)]
)
def test_pcap_both_magics_and_byte_orders(e: str, magic: int, ts: int) -> None:
    assert list(read_records([_pcap(e, magic)])) == [Record(ts, 101, b"abc", 9, 0)]


def _be_block(btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack(">II", btype, len(body) + 12) + body + struct.pack(">I", len(body) + 12)


def test_pcapng_big_endian_and_odd_blocks() -> None:
    shb = _be_block(0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1))
    # if_tsresol 0x83: 2^-3 s units; if_tsoffset 100 s.
    opts = struct.pack(">HHB3x", 9, 1, 0x83) + struct.pack(">HHq", 14, 8, 100) + b"\x00" * 4
    idb = _be_block(1, struct.pack(">HHI", 1, 0, 4) + opts)
    epb = _be_block(6, struct.pack(">IIIII", 0, 0, 8, 5, 5) + b"hello")
    spb = _be_block(3, struct.pack(">I", 10) + b"0123456789")  # snaplen 4 applies
    opb = _be_block(2, struct.pack(">HHIIII", 0, 0, 0, 16, 2, 2) + b"hi")
    unknown = _be_block(0x0BAD, b"whatever")
    recs = list(read_records([shb + idb + unknown + epb + spb + opb]))
    assert recs == [
        Record(101_000_000_000, 1, b"hello", 5, 0),
        Record(None, 1, b"0123", 10, 0),
        Record(102_000_000_000, 1, b"hi", 2, 0),
    ]


def test_new_section_forgets_interfaces() -> None:
    first = section_header_block() + interface_description_block(1, tsresol=3)
    first += enhanced_packet_block(0, 5_000_000, b"x", tsresol=3)
    second = section_header_block() + enhanced_packet_block(0, 1, b"y")
    reader = CaptureReader()
    assert reader.feed(first) == [Record(5_000_000, 1, b"x", 1, 0)]
    with pytest.raises(MalformedPacket, match="undeclared interface"):
        reader.feed(second)
    with pytest.raises(MalformedPacket):  # a failed reader stays failed
        reader.feed(b"")


def test_streaming_byte_by_byte() -> None:
    data = section_header_block() + interface_description_block(1)
    data += b"".join(enhanced_packet_block(0, i, bytes([i]) * i) for i in range(1, 40))
    whole = CaptureReader().feed(data)
    reader = CaptureReader()
    pieces = [r for i in range(len(data)) for r in reader.feed(data[i : i + 1])]
    reader.close()
    assert pieces == whole and len(whole) == 39 and reader.count == 39
    assert reader.format == "pcapng"
    big = file_header(65535, 1) + b"".join(record(i, b"z" * 3000) for i in range(50))
    assert len(list(read_records(big[i : i + 777] for i in range(0, len(big), 777)))) == 50


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"\xd4\xc3", "empty"),
        (b"GIF89a....", "not a pcap"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 0, 0, 0, 0, 1), "version"),
        (file_header(65535, 1) + record(0, b"abc")[:-1], "cut record"),
        (file_header(65535, 1) + struct.pack("<IIII", 0, 0, 2**30, 0), "above"),
        (section_header_block()[:-4] + b"\x00\x00\x00\x00", "differ"),
        (b"\x0a\x0d\x0d\x0a\x10\x00\x00\x00\x00\x00\x00\x00", "byte-order"),
        (b"\x0a\x0d\x0d\x0a\x0d\x00\x00\x00\x4d\x3c\x2b\x1a\x00", "block length"),
        (section_header_block() + struct.pack("<III", 1, 2**30, 0), "above"),
        (section_header_block() + enhanced_packet_block(0, 0, b""), "undeclared"),
        (section_header_block() + struct.pack("<III", 6, 12, 12), "too short"),
        (section_header_block() + struct.pack("<III", 1, 12, 12), "too short"),
        (section_header_block() + struct.pack("<III", 3, 12, 12), "too short"),
        (
            struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 2, 0, -1) + struct.pack("<I", 28),
            "version",
        ),  # fmt: skip
        (
            section_header_block()
            + struct.pack("<IIHHI", 1, 24, 1, 0, 0)
            + struct.pack("<HH", 2, 40)
            + struct.pack("<I", 24),
            "past its block",
        ),  # fmt: skip
        (
            section_header_block()
            + interface_description_block(1)
            + struct.pack("<IIIIIII", 6, 32, 0, 0, 0, 99, 99)
            + struct.pack("<I", 32),
            "beyond its block",
        ),  # fmt: skip
    ],
)
def test_malformed(data: bytes, match: str) -> None:
    with pytest.raises(MalformedPacket, match=match):
        list(read_records([data]))


@given(st.binary(max_size=200), st.sampled_from([b"", b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00",
                                                  section_header_block()]))  # fmt: skip
def test_fuzz(tail: bytes, head: bytes) -> None:
    try:
        for rec in read_records([head + tail]):
            assert len(rec.data) <= rec.origlen or rec.ts_ns is None
    except MalformedPacket:
        pass
