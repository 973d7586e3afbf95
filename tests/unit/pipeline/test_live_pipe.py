"""``vmsniff receive -i lo -w -`` on a real TPACKET_V3 ring, its fast path writing straight from
the ring into a pipe whose reader is slower than the writer (short writes), in a network
namespace of our own (``unshare -n``): every frame of the session asked for, once, in order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import require_root

PROBE = Path(__file__).with_name("live_pipe_probe.py")


def test_live_fast_path_into_a_slow_pipe() -> None:
    require_root()
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {sys.executable} {PROBE}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["rc"] == 0
    # 1500 same-sized frames (strided copies), then mixed sizes (iovecs); 1 in 13 of another key
    assert len(result["want"]) == 2769
    assert result["got"] == result["want"]
    stats = result["stats"]
    assert stats["written"] == 2769 and stats["filtered_out"] == 231
    assert stats["kernel_dropped"] == 0
