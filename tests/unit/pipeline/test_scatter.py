"""write_scatter writes records straight from memory, whatever the kernel takes per call."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np
import pytest

from vmsniff.pipeline import scatter
from vmsniff.pipeline.scatter import Scatter, write_scatter


def records(memory: bytearray, spans: list[tuple[int, int]]) -> Scatter:
    a = np.frombuffer(memory, dtype=np.uint8)
    iov = np.array([(a.ctypes.data + h, n) for h, n in spans], dtype=np.uint64)
    return Scatter(iov, sum(n for _, n in spans))


def memory() -> bytearray:
    return bytearray(bytes(range(256)) * 64)


SPANS = [(0, 5), (100, 0), (17, 300), (4000, 1), (9000, 1500)] * 300  # 1500 > IOV_MAX


def test_writes_every_record_in_order(tmp_path: Path) -> None:
    mem = memory()
    sc = records(mem, SPANS)
    want = b"".join(bytes(mem[h : h + n]) for h, n in SPANS)
    assert sc.tobytes() == want and len(sc) == len(want)
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    write_scatter(fd, sc)
    os.close(fd)
    assert path.read_bytes() == want


@pytest.mark.parametrize("most", [1, 7, 300, 4096])
def test_short_writes_resume_inside_a_record(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, most: int
) -> None:
    mem = memory()
    spans = SPANS[:40]
    want = b"".join(bytes(mem[h : h + n]) for h, n in spans)
    calls: list[int] = []

    def short(fd: int, iov: int, count: int) -> int:
        """Like writev(2), but takes at most ``most`` bytes a call."""
        calls.append(count)
        pairs = (ctypes.c_uint64 * (2 * count)).from_address(iov)
        data = b"".join(ctypes.string_at(pairs[2 * k], pairs[2 * k + 1]) for k in range(count))
        return os.write(fd, data[:most])

    monkeypatch.setattr(scatter, "_writev", short)
    monkeypatch.setattr(scatter, "IOV_MAX", 3)
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    write_scatter(fd, records(mem, spans))
    os.close(fd)
    assert path.read_bytes() == want
    assert max(calls) <= 3


def test_an_error_is_raised(tmp_path: Path) -> None:
    mem = memory()
    fd = os.open(tmp_path / "out", os.O_RDONLY | os.O_CREAT)
    with pytest.raises(OSError) as err:
        write_scatter(fd, records(mem, SPANS[:3]))
    os.close(fd)
    assert err.value.errno == 9  # EBADF: not open for writing


def test_eintr_is_retried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mem = memory()
    spans = SPANS[:10]
    real = scatter._libc_writev()
    calls = []

    def interrupted_once(fd: int, iov: int, count: int) -> int:
        calls.append(count)
        if len(calls) == 1:
            ctypes.set_errno(4)  # EINTR: a signal came before anything was written
            return -1
        return int(real(fd, iov, count))

    monkeypatch.setattr(scatter, "_writev", interrupted_once)
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    write_scatter(fd, records(mem, spans))
    os.close(fd)
    assert len(calls) == 2
    assert path.read_bytes() == b"".join(bytes(mem[h : h + n]) for h, n in spans)


def test_a_slow_pipe_reader_gets_every_byte(tmp_path: Path) -> None:
    """A pipe takes 64 KiB at a time: writev returns short and resumes (a reader thread)."""
    import threading

    mem = memory()
    spans = [(h % 10_000, 1500) for h in range(0, 300 * 37, 37)]  # 450 KB
    want = b"".join(bytes(mem[h : h + n]) for h, n in spans)
    r, w = os.pipe()
    got = bytearray()

    def read() -> None:
        while chunk := os.read(r, 4096):
            got.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    write_scatter(w, records(mem, spans))
    os.close(w)
    reader.join()
    os.close(r)
    assert bytes(got) == want
