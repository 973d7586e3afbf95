"""The packet API on lab traffic: a VM's frames captured by ``vmsniff capture``, dissected.

The lab's traffic mix (ARP, ICMP, UDP echo, a TCP connection, 1500-byte pings) is captured
from the VM's tap into a pcapng with ``-w`` and printed live with ``--print`` at once. The
dissector's fields must be tshark's on that file (the field set and helpers of the unit test
against tshark), and the printed lines tcpdump's on it: the same ends, flags, lengths and
relative TCP numbers (a real handshake, so ``ack 1`` after it).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.functional.test_capture import ROOT
from tests.functional.test_mirror import _env
from tests.unit.dissect.test_dissect import _compare, _tshark
from tests.unit.dissect.test_printer import _TCP_LINE, _facts, _tcpdump
from tests.unit.dissect.test_printer import _compare as compare_lines
from vmsniff.dissect import IPv4, Tcp, TcpFlags, read_file
from vmsniff.lab.topology import Lab
from vmsniff.lab.traffic import make_traffic
from vmsniff.model import Direction

pytestmark = pytest.mark.lab


def _capture(lab: Lab, out: Path, *printing: str) -> list[str]:
    """``vmsniff capture c-private --at tap -w OUT --print`` around the lab's traffic; the
    lines it printed (stdout; the stats go to stderr)."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.hypervisor_ns, sys.executable, "-m", "vmsniff", "capture",
         "c-private", "--at", "tap", "-w", str(out), "--print", *printing],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(lab),
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = [proc.stderr.readline()]
        while seen[-1] and not seen[-1].startswith("capturing"):
            seen.append(proc.stderr.readline())
        assert seen[-1].startswith("capturing"), "".join(seen)
        traffic = make_traffic(lab, "c-private", "c-native", count=3)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert all(c["replies"] == 3 for c in traffic["traffic"].values())
    return stdout.splitlines()


def test_fields_and_lines_match_tshark_and_tcpdump_on_lab_traffic(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "vm.pcapng"
    printed = _capture(lab, out, "-t")
    frames = list(read_file(str(out)))
    assert len(frames) == len(printed) > 20
    assert all(line.startswith(f"{lab.vm('c-private').tap} ") for line in printed)
    # the dissector against tshark, field by field, on every frame
    # (every field tshark reads: nothing skipped, no fragment, no ICMP error, no cut frame)
    assert _compare(out) == sum(1 for row in _tshark(out) for value in row.values() if value)
    vm = lab.vm("c-private")
    assert {f.interface for f in frames} == {vm.tap}
    assert {f.direction for f in frames} == {Direction.FROM_VM, Direction.TO_VM}
    names = {layer.name for f in frames for layer in f.layers}
    assert {"ethernet", "ipv4", "icmp", "udp", "tcp"} <= names
    assert not [f.error for f in frames if f.error]
    syn = [f for f in frames if (t := f.find(Tcp)) and t.flags & TcpFlags.SYN]
    assert len(syn) == 2  # the handshake: SYN, SYN-ACK
    assert {f.find(IPv4).src for f in frames if f.find(IPv4)} >= {vm.nics[0].address}  # type: ignore[union-attr]
    # the lines printed live, against tcpdump -n on the file they were written to
    theirs = _tcpdump(out)
    same = compare_lines(printed, theirs)
    assert same >= 2 * len(frames)
    tcp = [line for line in printed if _TCP_LINE.search(line)]
    assert len(tcp) >= 8 and any(", ack 1," in line for line in tcp)
    assert all(_facts(a).get("numbers") == _facts(b).get("numbers")
               for a, b in zip(printed, theirs, strict=True))  # fmt: skip


def test_dash_s_prints_what_tcpdump_dash_s_prints_on_lab_traffic(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "vm.pcapng"
    printed = _capture(lab, out, "-t", "-S")
    assert len(printed) == len(list(read_file(str(out))))
    theirs = _tcpdump(out, "-S")
    tcp = [(a, b) for a, b in zip(printed, theirs, strict=True) if _TCP_LINE.search(a + b)]
    assert len(tcp) >= 8
    assert compare_lines([a for a, _ in tcp], [b for _, b in tcp], {"numbers"}) == len(tcp)
    assert not any(", ack 1," in a for a, _ in tcp)  # absolute: the kernel's random ISNs
