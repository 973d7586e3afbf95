"""Helpers shared by the replay benchmarks (bench/receive.py, bench/capture.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from vmsniff.pcap.reader import CaptureReader


def missing(*tools: str) -> str | None:
    """A message naming the tools (Debian packages of the same name) not on PATH, or None."""
    absent = [t for t in tools if shutil.which(t) is None]
    if not absent:
        return None
    names = " ".join(absent)
    return f"needs {names} on PATH (apt-get install {names})"


SENDER_CPU, RECEIVER_CPU = 0, 1


def on_cpu(cpu: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the child to ``cpu`` (sender on one core, receivers on the
    other, as the issues ask), or None on a single-CPU machine."""
    if len(os.sched_getaffinity(0)) < 2:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def sh(*args: str) -> None:
    """Run a set-up command; fail loudly."""
    subprocess.run(args, check=True, capture_output=True)


def count_records(path: Path) -> int:
    """Packets in a pcap or pcapng file."""
    reader = CaptureReader()
    n = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            n += len(reader.feed(chunk))
    return n


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process so far (proc(5), fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
