"""A reader that goes away (`vmsniff ... | head`) ends vmsniff quietly with exit 0, as it
ends other Unix tools: no message, no traceback (the lab test covers `resolve | head -1`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.unit.pipeline.helpers import gre, icmp_frame
from vmsniff.formats.capture import LINKTYPE_RAW
from vmsniff.pcap import file_header, record

ROOT = Path(__file__).resolve().parents[3]


def _big_capture(path: Path, packets: int = 4000) -> None:
    """Far more than a pipe buffer (64 KiB) of GRE-encapsulated frames."""
    with path.open("wb") as fh:
        fh.write(file_header(65535, LINKTYPE_RAW))
        for n in range(packets):
            fh.write(record((1_700_000_000 + n, 0), gre(icmp_frame(n, size=900), key=7)))


def _run_into_closed_pipe(*args: str, keep: int) -> tuple[int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmsniff", *args], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.read(keep)) == keep
    proc.stdout.close()  # `head -c KEEP` has what it wanted and exits
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return proc.wait(timeout=60), err


def test_receive_to_a_closed_pipe_exits_0_quietly(tmp_path: Path) -> None:
    capture = tmp_path / "big.pcap"
    _big_capture(capture)
    for _ in range(3):  # the pipe may break in a write or in the last flush: try both ways
        code, err = _run_into_closed_pipe("receive", "-r", str(capture), "-w", "-", keep=100)
        assert (code, err) == (0, "")
