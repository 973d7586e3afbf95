"""A 1500-byte underlay silently drops full-size mirrored frames: vmsniff warns with the fix."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.functional.test_mirror import collector, start_mirror
from vmsniff.lab.build import build
from vmsniff.lab.topology import RECEIVER_IP, lab_for
from vmsniff.lab.traffic import make_traffic

pytestmark = pytest.mark.lab


def test_small_underlay_mtu_drops_full_frames_and_is_warned_about(
    fresh_lab_prefix: str, tmp_path: Path
) -> None:
    lab = lab_for(fresh_lab_prefix, underlay_mtu=1500)
    build(lab)
    with collector(lab) as plain:
        proc = start_mirror(lab, "c-private", "--to", RECEIVER_IP, "--key", "600000000",
                            "--duration", "4", "--json")  # fmt: skip
        make_traffic(lab, "c-private", "c-native", count=2)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    warning = " ".join((proc.head + err).split())  # type: ignore[attr-defined]
    # 1500 IP + 14 + 4 (VLAN tag) + 20 + 8 (GRE with key) = 1546 > 1500.
    assert "need 1546 bytes on the underlay" in warning
    assert "br-phy has MTU 1500" in warning
    assert "--snaplen 1472" in warning
    sizes = [len(bytes.fromhex(str(inner))) for _, inner, _ in plain]
    assert sizes, "small frames still arrive"
    assert max(sizes) < 1518, "a full-size frame arrived although it cannot fit"
    # The fix the warning offers works: frames cut to --snaplen fit and arrive. Open vSwitch
    # counts the outer headers in snaplen and leaves the outer IPv4 total length at the
    # uncut size, so the receiver's IP stack discards them (a raw GRE socket never sees
    # them); a packet socket does, which is what tcpdump and `vmsniff receive -i` use.
    pcap = tmp_path / "rx.pcap"
    dump = subprocess.Popen(
        ["ip", "netns", "exec", lab.receiver_ns, "tcpdump", "-i", "eth0", "-U", "-n", "-w",
         str(pcap), "--immediate-mode", "proto", "gre"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert dump.stderr is not None and "listening" in dump.stderr.readline()
        proc = start_mirror(lab, "c-private", "--to", RECEIVER_IP, "--key", "600000010",
                            "--snaplen", "1472", "--duration", "4", "--json")  # fmt: skip
        make_traffic(lab, "c-private", "c-native", count=2)
        out, err = proc.communicate(timeout=30)
        time.sleep(0.5)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "need" not in proc.head + err  # type: ignore[attr-defined]
    assert json.loads(out)["keys"]["from-vm"] == 600000010
    fields = subprocess.run(
        ["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.len", "-e", "ip.len"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    cut = [line for line in fields if line.startswith("1472\t")]
    # 2 requests + 2 replies of 1500-byte IP: on the wire 1472 bytes, outer IP claims 1546.
    assert len(cut) == 4, fields
    assert all(line.split("\t")[1].startswith("1546") for line in cut)
