"""A write that fails part way (disk full, quota, file too big) leaves whole records only.

The failure is real: a forked child lowers ``RLIMIT_FSIZE``, so the kernel makes a short write
and then fails the next one with EFBIG, as a full disk does with ENOSPC (the CLI tests do the
latter on a small tmpfs). The parent reads the file back.
"""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.unit.pipeline.helpers import tshark_fields
from vmsniff.errors import FileError
from vmsniff.pcap.encoder import new_encoder, whole_prefix
from vmsniff.pcap.reader import CaptureReader
from vmsniff.pipeline.run import Records
from vmsniff.pipeline.scatter import Scatter
from vmsniff.pipeline.sinks import FileSink

from .test_sinks import pkt

LIMIT = 10_000


def _in_child_with_limit(work: Callable[[], None]) -> int:
    """Run ``work`` in a child whose files may not grow past LIMIT bytes; 0 when it raised
    FileError naming EFBIG, 1 when it did not raise, 2 on any other exception."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 2
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))
            work()
            code = 1
        except FileError as exc:
            code = 0 if "File too large" in exc.message else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _whole_records(path: Path) -> int:
    reader = CaptureReader()
    n = len(reader.feed(path.read_bytes()))
    reader.close()  # raises on a record cut in the middle
    return n


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("flush_each", [False, True])
def test_packet_path_cut_back_to_last_whole_record(
    tmp_path: Path, fmt: str, flush_each: bool
) -> None:
    path = tmp_path / f"x.{fmt}"

    def work() -> None:
        sink = FileSink(str(path), fmt, 65535, flush_each=flush_each)
        sink.write([pkt(n, size=300) for n in range(100)])
        sink.close()

    assert _in_child_with_limit(work) == 0
    n = _whole_records(path)
    assert 0 < n < 100 and LIMIT - 400 < path.stat().st_size <= LIMIT
    assert len(tshark_fields(path, "frame.len")) == n


@pytest.mark.parametrize("scatter", [False, True])
def test_fast_path_records_cut_back_to_a_whole_record(tmp_path: Path, scatter: bool) -> None:
    """Records (the block paths' batches): writev of bytes records, or Scatter stretches from
    memory (the iovecs a short write resumed from are a copy: the stretch still reads back
    whole)."""
    path = tmp_path / "x.pcap"
    records = [new_encoder("pcap", 65535).encode(pkt(n, size=300)) for n in range(100)]

    def work() -> None:
        sink = FileSink(str(path), "pcap", 65535)
        if scatter:
            backing = np.frombuffer(bytearray(b"".join(records)), dtype=np.uint8)
            sizes = [len(r) for r in records]
            starts = np.cumsum([0, *sizes[:-1]]) + backing.ctypes.data
            iov = np.array(list(zip(starts.tolist(), sizes, strict=True)), dtype=np.uint64)
            half = len(records) // 8
            pieces = [Scatter(iov[:half].copy(), sum(sizes[:half]), backing),
                      Scatter(iov[half:].copy(), sum(sizes[half:]), backing)]  # fmt: skip
            sink.write(Records(pieces, len(records)))
        else:
            sink.write(Records(records, len(records)))
        sink.close()

    assert _in_child_with_limit(work) == 0
    n = _whole_records(path)
    assert n == (LIMIT - 24) // len(records[0])


def test_whole_prefix() -> None:
    enc = new_encoder("pcap", 65535)
    data = enc.header() + b"".join(enc.encode(pkt(n)) for n in range(3))
    rec = len(enc.encode(pkt(0)))
    assert whole_prefix("pcap", data, 23, file_header=True) == 0
    assert whole_prefix("pcap", data, 24 + rec - 1, file_header=True) == 24
    assert whole_prefix("pcap", data, len(data), file_header=True) == len(data)
    assert whole_prefix("pcap", data[24:], 2 * rec + 5, file_header=False) == 2 * rec
    ng = new_encoder("pcapng", 65535)
    blocks = [ng.header(), ng.encode(pkt(0)), ng.encode(pkt(1))]  # SHB, IDB+EPB, EPB
    joined = b"".join(blocks)
    assert whole_prefix("pcapng", joined, len(joined) - 1, file_header=True) == len(
        blocks[0]
    ) + len(blocks[1])
    assert whole_prefix("pcapng", joined, len(blocks[0]) + 8, file_header=True) == len(blocks[0])
