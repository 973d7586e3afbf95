"""Comparing captured frames with what the VM saw (shared by the lab tests)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def inside_capture(namespace: str, device: str, path: Path) -> Iterator[None]:
    """tcpdump on ``device`` inside a VM's ``namespace``: the ground truth of what it saw."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", namespace, "tcpdump", "-i", device, "-U", "-n",
         "-w", str(path), "--immediate-mode"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        assert "listening" in proc.stderr.readline()
        yield
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)


def flow(frame: bytes) -> bytes:
    """A frame's flow: EtherType, and for IPv4 the protocol, addresses and ports."""
    if frame[12:14] != b"\x08\x00":
        return frame[12:14]
    ihl = (frame[14] & 0x0F) * 4
    return frame[12:14] + frame[23:24] + frame[26:34] + frame[14 + ihl : 18 + ihl]


def same_run_per_flow(part: list[bytes], whole: list[bytes]) -> bool:
    """``part`` is a run of ``whole`` up to the order *between* flows: OVS's userspace datapath
    sends the first packet of a new flow through an upcall, so the switch's view (``--at ovs``)
    may let a later packet of an established flow pass it. Within a flow the order holds."""
    n = len(part)
    for i in range(len(whole) - n + 1):
        window = whole[i : i + n]
        if sorted(window) != sorted(part):
            continue
        if all(
            [f for f in part if flow(f) == key] == [f for f in window if flow(f) == key]
            for key in {flow(f) for f in part}
        ):
            return True
    return False
