"""Encoders and file sinks: read back by tshark, mode 0600, O_EXCL, rotation, {key}, -U."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from tests.unit.pipeline.helpers import icmp_frame, tshark_fields
from vmsniff.errors import UsageError
from vmsniff.formats.capture import LINKTYPE_ETHERNET, LINKTYPE_RAW
from vmsniff.pcap.encoder import interface_name
from vmsniff.pcap.reader import CaptureReader, read_records
from vmsniff.pipeline.core import Packet
from vmsniff.pipeline.run import Records
from vmsniff.pipeline.sinks import FileSink, KeyedSink, PrintSink, Rotation, summary

T0 = 1_700_000_000_123_456_789


def pkt(n: int, *, key: int | None = 100, direction: int = 0, size: int = 0, cut: int = 0,
        ts: int | None = None) -> Packet:  # fmt: skip
    frame = icmp_frame(n, size=size)
    data = frame[: len(frame) - cut]
    return Packet(T0 + n * 1000 if ts is None else ts, data, len(frame), LINKTYPE_ETHERNET, key,
                  direction, False)  # fmt: skip


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_written_file_reads_back_in_tshark_frame_by_frame(fmt: str, tmp_path: Path) -> None:
    path = tmp_path / f"x.{fmt}"
    packets = [pkt(0), pkt(1, size=100, cut=50), pkt(2, direction=2), pkt(3, direction=1, key=101)]
    sink = FileSink(str(path), fmt, 262144)
    sink.write(packets)
    sink.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rows = tshark_fields(path, "frame.cap_len", "frame.len", "icmp.ident", "frame.time_epoch")
    assert [r[:3] for r in rows] == [
        [str(len(p.data)), str(p.origlen), str(int.from_bytes(p.data[38:40], "big"))]
        for p in packets
    ]
    assert rows[0][3].startswith("1700000000.123456")
    assert [r.data for r in read_records([path.read_bytes()])] == [p.data for p in packets]


def test_pcapng_interfaces_and_direction_flags(tmp_path: Path) -> None:
    path = tmp_path / "d.pcapng"
    sink = FileSink(str(path), "pcapng", 65535)
    sink.write([pkt(0, direction=2), pkt(1, key=101, direction=1), pkt(2, direction=2)])
    sink.close()
    rows = tshark_fields(path, "frame.interface_name", "frame.packet_flags_direction")
    assert rows == [
        ["gre-key-100-from-vm", "0x00000002"],
        ["gre-key-101-to-vm", "0x00000001"],
        ["gre-key-100-from-vm", "0x00000002"],
    ]


def test_interface_names() -> None:
    assert interface_name(None, 0, False) == "gre"
    assert interface_name(7, 1, True) == "erspan-session-7-to-vm"


def test_pcap_gives_raw_ip_a_synthetic_ethernet_header(tmp_path: Path) -> None:
    path = tmp_path / "raw.pcap"
    ip = icmp_frame(4)[14:]
    sink = FileSink(str(path), "pcap", 65535)
    sink.write([Packet(T0, ip, len(ip), LINKTYPE_RAW, None, 0, False)])
    sink.close()
    assert tshark_fields(path, "ip.dst", "frame.len") == [["192.168.0.2", str(len(ip) + 14)]]


def test_never_overwrites_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(b"precious")
    with pytest.raises(UsageError, match="exists"):
        FileSink(str(path), "pcap", 65535)
    assert path.read_bytes() == b"precious"
    path.chmod(0o644)
    FileSink(str(path), "pcap", 65535, force=True).close()
    # truncated in place: the file is not ours, so its mode stays what its owner chose
    assert len(path.read_bytes()) == 24 and stat.S_IMODE(path.stat().st_mode) == 0o644


def test_whole_records_at_every_flush_and_u_flushes_each(tmp_path: Path) -> None:
    path = tmp_path / "u.pcapng"
    sink = FileSink(str(path), "pcapng", 65535, flush_each=True)
    for n in range(5):
        sink.write([pkt(n)])
        reader = CaptureReader()
        assert len(reader.feed(path.read_bytes())) == n + 1
        reader.close()  # no partial record left over
    sink.close()
    buffered = FileSink(str(tmp_path / "b.pcap"), "pcap", 65535)
    buffered.write([pkt(0)])
    assert (tmp_path / "b.pcap").stat().st_size == 24  # header only until a flush
    buffered.close()
    assert (tmp_path / "b.pcap").stat().st_size > 24


def test_rotation_by_size_names_like_tcpdump(tmp_path: Path) -> None:
    base = tmp_path / "r.pcap"
    sink = FileSink(str(base), "pcap", 65535, rotation=Rotation(size=300))
    sink.write([pkt(n, size=100) for n in range(6)])  # 158-byte records: 1 per file
    sink.close()
    names = [Path(f).name for f in sink.files]
    assert names == ["r.pcap", "r.pcap1", "r.pcap2", "r.pcap3", "r.pcap4", "r.pcap5"]
    for f in sink.files:
        assert os.path.getsize(f) <= 300 and len(list(read_records([Path(f).read_bytes()]))) == 1


def test_rotation_by_size_with_w_wraps(tmp_path: Path) -> None:
    base = tmp_path / "w.pcapng"
    sink = FileSink(str(base), "pcapng", 65535, rotation=Rotation(size=400, files=3))
    sink.write([pkt(n, size=100) for n in range(7)])
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pcapng0", "w.pcapng1", "w.pcapng2"]
    # 7 packets, one per file, wrapped: file 0 holds the 7th; each file stands alone (own IDB).
    last = [r.data for r in read_records([(tmp_path / "w.pcapng0").read_bytes()])]
    assert last == [pkt(6, size=100).data]


def test_rotation_by_time_uses_strftime_and_w_stops(tmp_path: Path) -> None:
    template = str(tmp_path / "t-%H%M%S.pcap")
    sink = FileSink(template, "pcap", 65535, rotation=Rotation(seconds=10, files=2))
    base = (T0 // 10**10) * 10**10  # on a 10-second boundary
    sink.write([pkt(0, ts=base), pkt(1, ts=base + 3 * 10**9), pkt(2, ts=base + 12 * 10**9),
                pkt(3, ts=base + 25 * 10**9)])  # fmt: skip
    sink.close()
    assert sink.finished
    expected = [time.strftime(template, time.localtime(base // 10**9 + s)) for s in (0, 12)]
    assert sink.files == expected
    assert [len(list(read_records([Path(f).read_bytes()]))) for f in sink.files] == [2, 1]


def test_key_template_writes_one_file_per_session(tmp_path: Path) -> None:
    def factory(path: str) -> FileSink:
        return FileSink(path, "pcap", 65535)

    sink = KeyedSink(str(tmp_path / "vm-{key}.pcap"), factory)
    sink.write([pkt(0, key=100), pkt(1, key=101), pkt(2, key=100), pkt(3, key=None)])
    sink.close()
    counts = {Path(f).name: len(list(read_records([Path(f).read_bytes()]))) for f in sink.files}
    assert counts == {"vm-100.pcap": 2, "vm-101.pcap": 1, "vm-none.pcap": 1}
    with pytest.raises(UsageError):
        KeyedSink("plain.pcap", factory)


def test_stdout_refuses_rotation() -> None:
    with pytest.raises(UsageError):
        FileSink("-", "pcap", 65535, rotation=Rotation(size=10))


def test_print_summary() -> None:
    import io

    line = summary(pkt(7, direction=2))
    assert " gre-key-100 from-vm IP 192.168.0.1 > 192.168.0.2: ICMP echo request" in line
    out = io.StringIO()
    PrintSink(out).write([pkt(1), pkt(2)])
    assert len(out.getvalue().splitlines()) == 2


def test_writev_all_resumes_after_short_writes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os

    from vmsniff.pipeline import sinks

    real = os.writev
    calls = []

    def short(fd: int, bufs: list[bytes]) -> int:
        calls.append(len(bufs))
        return real(fd, [bytes(b"".join(bytes(b) for b in bufs)[:7])])  # at most 7 bytes a call

    monkeypatch.setattr(sinks, "IOV_MAX", 3)
    monkeypatch.setattr(os, "writev", short)
    parts = [bytes([i]) * (i + 1) for i in range(10)]
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    sinks._writev_all(fd, parts)
    os.close(fd)
    assert path.read_bytes() == b"".join(parts)
    assert max(calls) <= 3


def test_write_records_keeps_the_order_of_bytes_and_scatter_pieces(tmp_path: Path) -> None:
    """Fast-path batches mix bytes (an interface block, a strided run) and Scatter stretches
    written from memory: the buffered bytes go out before each Scatter, in order."""
    import numpy as np

    from vmsniff.pipeline.scatter import Scatter

    backing = np.frombuffer(bytearray(b"ABCDEFGHIJ" * 100), dtype=np.uint8)
    base = backing.ctypes.data
    iov = np.array([(base + 0, 3), (base + 10, 4)], dtype=np.uint64)
    sink = FileSink(str(tmp_path / "x.pcap"), "pcap", 65535)
    header = (tmp_path / "x.pcap").read_bytes()
    pieces: list[object] = [b"head|", Scatter(iov, 7, backing), b"|mid|", bytes(300_000),
                            b"|tail"]  # fmt: skip
    sink.write(Records(pieces, 3))
    sink.close()
    body = (tmp_path / "x.pcap").read_bytes()[len(header) :]
    assert body == b"head|ABCABCD|mid|" + bytes(300_000) + b"|tail"
    with pytest.raises(ValueError):
        FileSink(str(tmp_path / "r.pcap"), "pcap", 65535,
                 rotation=Rotation(size=1000)).write(Records([b"x"], 1))  # fmt: skip
