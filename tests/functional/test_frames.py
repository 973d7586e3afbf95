"""vmsniff.frames in the lab: ``capture_frames`` over a VM's live traffic, beside ``-w``.

A script in the hypervisor namespace (where the taps are) iterates the capture and prints each
frame's JSON; the same run writes a pcapng. The frames the API gave are the file's, one for
one, with the VM's TCP handshake, UDP and ICMP among them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.functional.test_capture import ROOT
from tests.functional.test_mirror import _env
from vmsniff.dissect import read_file
from vmsniff.dissect.printer import frame_json
from vmsniff.lab.topology import Lab
from vmsniff.lab.traffic import make_traffic

pytestmark = pytest.mark.lab

SCRIPT = """
import json, sys
from vmsniff.capture import CaptureOptions
from vmsniff.capture.session import plan_capture
from vmsniff.dissect.printer import frame_json
from vmsniff.frames import capture_frames
from vmsniff.pipeline.sinks import OutputOptions
from vmsniff.resolve import ResolveOptions

opts = CaptureOptions(at="tap")
planned = plan_capture(ResolveOptions(query="c-private", offline=True), opts, all_nics=False)
output = OutputOptions(write=sys.argv[1], fmt="pcapng")
for frame in capture_frames(planned, opts, output, duration=float(sys.argv[2])):
    print(json.dumps(frame_json(frame)), flush=True)
"""


def test_capture_frames_gives_the_frames_the_capture_writes(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "vm.pcapng"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.hypervisor_ns, sys.executable, "-c", SCRIPT, str(out), "8"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(lab),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        # the file is created once the rings are open: the capture is ready
        while not (out.exists() and out.stat().st_size) and proc.poll() is None:
            assert time.monotonic() < deadline, "the capture did not start"
            time.sleep(0.1)
        traffic = make_traffic(lab, "c-private", "c-native", count=3)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert all(c["replies"] == 3 for c in traffic["traffic"].values())
    got = [json.loads(line) for line in stdout.splitlines()]
    written = [frame_json(f) for f in read_file(str(out))]
    assert got == written and len(got) > 20
    tap = lab.vm("c-private").tap
    assert {f["interface"] for f in got} == {tap}
    assert {f["direction"] for f in got} == {"from-vm", "to-vm"}
    names = {layer["name"] for f in got for layer in f["layers"]}
    assert {"ethernet", "ipv4", "icmp", "udp", "tcp"} <= names
    syns = [
        f for f in got for layer in f["layers"] if layer["name"] == "tcp" and layer["flags"] & 2
    ]
    assert len(syns) == 2
