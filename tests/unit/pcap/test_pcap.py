"""vmsniff.pcap.pcap: classic pcap files, read back by tshark and by our reader."""

from __future__ import annotations

import struct
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmsniff.formats.capture import LINKTYPE_ETHERNET, LINKTYPE_RAW
from vmsniff.pcap.pcap import file_header, record
from vmsniff.pcap.reader import CaptureReader

FRAMES = [bytes([i]) * 12 + b"\x08\x00" + bytes(range(i, i + 30)) for i in range(1, 6)]
TS = 1_700_000_000_123_456_789


def test_header_bytes() -> None:
    assert file_header(65535, 1) == bytes.fromhex(
        "d4c3b2a1020004000000000000000000ffff000001000000"
    )
    assert file_header(100, 101, nanosecond=True)[:4] == bytes.fromhex("4d3cb2a1")


def test_record_timestamps() -> None:
    assert struct.unpack("<IIII", record(TS, b"ab")[:16]) == (1_700_000_000, 123456, 2, 2)
    assert struct.unpack("<II", record(TS, b"", nanosecond=True)[:8]) == (1_700_000_000, 123456789)
    assert struct.unpack("<II", record((5, 7), b"", nanosecond=True)[:8]) == (5, 7000)
    assert struct.unpack("<IIII", record((5, 7), b"abc", 1)[:16]) == (5, 7, 3, 3)  # never < caplen


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        file_header(0, 1)
    with pytest.raises(ValueError):
        file_header(100, 70000)
    with pytest.raises(ValueError):
        record((1, 1_000_000), b"")


@pytest.mark.parametrize("nanosecond", [False, True])
def test_tshark_reads_it_back(
    tmp_path: Path, tshark_frames: Callable[[Path], list[dict[str, Any]]], nanosecond: bool
) -> None:
    path = tmp_path / "out.pcap"
    data = file_header(262144, LINKTYPE_ETHERNET, nanosecond=nanosecond)
    for i, frame in enumerate(FRAMES):
        data += record(TS + i * 1_000_001, frame[: 20 + i], len(frame), nanosecond=nanosecond)
    path.write_bytes(data)
    frames = tshark_frames(path)
    assert len(frames) == len(FRAMES)
    for i, (got, frame) in enumerate(zip(frames, FRAMES, strict=True)):
        ts = TS + i * 1_000_001
        want = ts if nanosecond else ts // 1000 * 1000
        assert Decimal(got["epoch"]) == Decimal(want) / 10**9
        assert (got["len"], got["cap_len"], got["bytes"]) == (len(frame), 20 + i, frame[: 20 + i])


@given(
    packets=st.lists(
        st.tuples(st.integers(0, 2**32 * 10**9 - 1), st.binary(max_size=64), st.integers(0, 99)),
        max_size=8,
    ),
    nanosecond=st.booleans(),
)
def test_round_trip_through_reader(packets: list[tuple[int, bytes, int]], nanosecond: bool) -> None:
    data = file_header(65535, LINKTYPE_RAW, nanosecond=nanosecond)
    for ts, payload, extra in packets:
        data += record(ts, payload, len(payload) + extra, nanosecond=nanosecond)
    reader = CaptureReader()
    got = reader.feed(data)
    reader.close()
    assert [(r.ts_ns, r.data, r.origlen, r.linktype) for r in got] == [
        (ts if nanosecond else ts // 1000 * 1000, p, len(p) + e, LINKTYPE_RAW)
        for ts, p, e in packets
    ]
