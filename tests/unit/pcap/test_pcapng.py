"""vmsniff.pcap.pcapng: blocks of draft-ietf-opsawg-pcapng, read back by tshark and our reader."""

from __future__ import annotations

import struct
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmsniff.formats.capture import EPB_FROM_VM, EPB_TO_VM, LINKTYPE_ETHERNET, LINKTYPE_RAW
from vmsniff.pcap.pcapng import (
    enhanced_packet_block,
    interface_description_block,
    section_header_block,
)
from vmsniff.pcap.reader import CaptureReader

TS = 1_700_000_000_123_456_789
ETH = bytes.fromhex("fa163e000002fa163e0000010800") + bytes(range(33))  # odd length: padding


def _blocks(data: bytes) -> list[tuple[int, int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        assert blen % 4 == 0 and struct.unpack_from("<I", data, pos + blen - 4)[0] == blen
        out.append((btype, blen, data[pos + 8 : pos + blen - 4]))
        pos += blen
    return out


def test_block_layout_and_padding() -> None:
    shb = section_header_block(userappl="vmsniff")
    idb = interface_description_block(LINKTYPE_ETHERNET, 9000, name="vms-abc", tsresol=9)
    epb = enhanced_packet_block(0, TS, ETH, 60, flags=EPB_TO_VM)
    (s,), (i,), (e,) = _blocks(shb), _blocks(idb), _blocks(epb)
    assert s[0] == 0x0A0D0D0A and s[2][:4] == b"\x4d\x3c\x2b\x1a"
    assert struct.unpack_from("<HHq", s[2], 4) == (1, 0, -1)
    assert i[0] == 1 and struct.unpack_from("<HHI", i[2]) == (1, 0, 9000)
    # if_name "vms-abc" (7 bytes, padded to 8), if_tsresol 9 (1 byte, padded to 4), end.
    assert i[2][8:] == (b"\x02\x00\x07\x00vms-abc\x00" + b"\x09\x00\x01\x00\x09\x00\x00\x00"
                        + b"\x00\x00\x00\x00")  # fmt: skip
    iface, hi, lo, caplen, origlen = struct.unpack_from("<IIIII", e[2])
    assert (iface, hi << 32 | lo, caplen, origlen) == (0, TS, len(ETH), 60)
    assert len(ETH) == 47 and e[2][20 + 47 : 20 + 48] == b"\x00"  # padded to 48 bytes
    assert e[2][20 + 48 :] == b"\x02\x00\x04\x00\x01\x00\x00\x00\x00\x00\x00\x00"
    # Microsecond interfaces leave if_tsresol out (6 is the default) and scale timestamps.
    assert _blocks(interface_description_block(1, tsresol=6))[0][1] == 20
    micro = _blocks(enhanced_packet_block(0, TS, b"", tsresol=6))[0][2]
    assert struct.unpack_from("<II", micro, 4) == divmod(TS // 1000, 2**32)
    with pytest.raises(ValueError):
        interface_description_block(1, tsresol=200)


def test_tshark_reads_directions_and_interfaces(
    tmp_path: Path, tshark_frames: Callable[[Path], list[dict[str, Any]]]
) -> None:
    path = tmp_path / "out.pcapng"
    data = section_header_block(userappl="vmsniff tests", comment="made by a test")
    data += interface_description_block(LINKTYPE_ETHERNET, 65535, name="vms0", description="d")
    data += interface_description_block(LINKTYPE_RAW, 0, tsresol=6)
    ip = bytes.fromhex("450000140000000040ff0000c0000201c0000202")
    packets = [
        (0, TS, ETH, len(ETH), EPB_FROM_VM, "0x00000002"),
        (0, TS + 1, ETH[:20], 1500, EPB_TO_VM, "0x00000001"),
        (0, TS + 2, ETH, len(ETH), None, None),
        (1, TS // 1000 * 1000 + 3_000, ip, len(ip), EPB_TO_VM, "0x00000001"),
    ]
    for iface, ts, frame, origlen, flags, _ in packets:
        tsresol = 9 if iface == 0 else 6
        data += enhanced_packet_block(iface, ts, frame, origlen, flags=flags, tsresol=tsresol)
    path.write_bytes(data)
    frames = tshark_frames(path)
    assert len(frames) == len(packets)
    for got, (iface, ts, frame, origlen, _, direction) in zip(frames, packets, strict=True):
        assert Decimal(got["epoch"]) == Decimal(ts) / 10**9
        assert (got["len"], got["cap_len"], got["bytes"]) == (origlen, len(frame), frame)
        assert got["direction"] == direction and got["interface"] == str(iface)
    records = CaptureReader().feed(data)
    assert [(r.ts_ns, r.data, r.origlen, r.interface) for r in records] == [
        (ts, frame, origlen, iface) for iface, ts, frame, origlen, _, _ in packets
    ]


@given(
    packets=st.lists(
        st.tuples(st.integers(0, 2**63), st.binary(max_size=70), st.sampled_from([None, 1, 2])),
        max_size=6,
    )
)
def test_round_trip_through_reader(packets: list[tuple[int, bytes, int | None]]) -> None:
    data = section_header_block() + interface_description_block(LINKTYPE_ETHERNET, 0)
    for ts, payload, flags in packets:
        data += enhanced_packet_block(0, ts, payload, flags=flags)
    assert len(data) % 4 == 0
    got = CaptureReader().feed(data)
    assert [(r.ts_ns, r.data, r.linktype) for r in got] == [
        (ts, p, LINKTYPE_ETHERNET) for ts, p, _ in packets
    ]
