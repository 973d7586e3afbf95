"""Read files back with tshark and capinfos (installed system-wide, see scripts/install.sh)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# tshark prints this on stderr whenever it runs as root; it is not about the file.
_ROOT_NOTE = 'Running as user "root" and group "root". This could be dangerous.'


def _run(args: list[str]) -> str:
    if shutil.which(args[0]) is None:
        pytest.skip(f"{args[0]} is not installed (scripts/install.sh installs it)")
    proc = subprocess.run(
        args, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}, check=False
    )
    stderr = "\n".join(x for x in proc.stderr.splitlines() if x.strip() and x != _ROOT_NOTE)
    assert proc.returncode == 0 and not stderr, f"{args}: rc={proc.returncode} {stderr}"
    return proc.stdout


@pytest.fixture
def tshark_frames() -> Callable[[Path], list[dict[str, Any]]]:
    """Each frame of a file as tshark 4.0 sees it: epoch, lengths, direction, bytes."""

    def frames(path: Path) -> list[dict[str, Any]]:
        _run(["capinfos", str(path)])  # must not warn either
        out = json.loads(_run(["tshark", "-r", str(path), "-T", "json", "-x"]))
        result = []
        for pkt in out:
            layers = pkt["_source"]["layers"]
            frame = layers["frame"]
            result.append(
                {
                    "epoch": frame["frame.time_epoch"],
                    "len": int(frame["frame.len"]),
                    "cap_len": int(frame["frame.cap_len"]),
                    "direction": frame.get("frame.packet_flags_tree", {}).get(
                        "frame.packet_flags_direction"
                    ),
                    "interface": frame.get("frame.interface_id"),
                    "bytes": bytes.fromhex(layers["frame_raw"][0]),
                }
            )
        return result

    return frames
