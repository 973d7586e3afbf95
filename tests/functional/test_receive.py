"""``vmsniff receive`` live, in the lab's receiver namespace, fed crafted GRE from the hypervisor.

The sender writes whole Ethernet frames on the hypervisor's underlay veth (``phy0``) with an
AF_PACKET socket, so that it can send what a kernel IP socket would "fix": packets cut short
while their outer IPv4 total length still claims the full size, as an OVS Mirror snaplen makes
them (FACTS.md). The receiver runs ``python -m vmsniff receive -i eth0`` in ``PREFIX-rx``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.pipeline.helpers import tshark_fields
from vmsniff.lab.topology import Lab
from vmsniff.pcap.reader import read_records

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]

_SENDER = """
import json, socket, sys, time
frames = [bytes.fromhex(h) for h in json.load(sys.stdin)]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("phy0", 0))
for f in frames:
    s.send(f)
    time.sleep(0.002)
"""


def _inner_frames() -> list[tuple[int, bytes]]:
    """(GRE key, inner frame): both directions of a VM's ICMP and TCP, some big."""
    from scapy.layers.inet import ICMP, IP, TCP
    from scapy.layers.l2 import Ether

    vm = dict(src="fa:16:3e:00:00:01", dst="fa:16:3e:00:00:02")
    back = dict(src="fa:16:3e:00:00:02", dst="fa:16:3e:00:00:01")
    out: list[tuple[int, bytes]] = []
    for n in range(20):
        out.append((100, bytes(Ether(**vm) / IP(src="10.250.1.5", dst="10.250.1.6")
                               / ICMP(id=7, seq=n) / (b"p" * (n * 50)))))  # fmt: skip
        out.append((101, bytes(Ether(**back) / IP(src="10.250.1.6", dst="10.250.1.5")
                               / TCP(sport=22, dport=40000 + n, flags="A"))))  # fmt: skip
    return out


def _outer(rx_mac: str, key: int, inner: bytes, cut: int | None = None) -> bytes:
    from scapy.layers.inet import GRE, IP
    from scapy.layers.l2 import Ether

    pkt = (
        Ether(dst=rx_mac, src="02:00:00:00:00:aa")
        / IP(src="10.250.0.1", dst="10.250.0.2", id=key)
        / GRE(key_present=1, key=key, proto=0x6558)
        / inner
    )
    raw = bytes(pkt)
    return raw if cut is None else raw[:cut]


def _ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


def test_live_receive_writes_inner_frames_in_order_with_direction(lab: Lab, tmp_path: Path) -> None:
    rx_mac = subprocess.run(_ns(lab.receiver_ns, "cat", "/sys/class/net/eth0/address"),
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    inner = _inner_frames()
    # Every fifth packet is cut to 100 bytes on the wire, outer length left claiming it all.
    plan = [(key, frame, 100 if i % 5 == 4 and len(frame) > 100 else None)
            for i, (key, frame) in enumerate(inner)]  # fmt: skip
    wire = [_outer(rx_mac, k, f, cut) for k, f, cut in plan]
    noise = _outer(rx_mac, 300, inner[0][1])  # another session: must be filtered out
    out = tmp_path / "vm.pcapng"
    icmp_log = tmp_path / "icmp.pcap"
    watcher = subprocess.Popen(_ns(lab.receiver_ns, "tcpdump", "-U", "-i", "eth0", "-w",
                                   str(icmp_log), "icmp"), stderr=subprocess.DEVNULL)  # fmt: skip
    receiver = subprocess.Popen(
        _ns(lab.receiver_ns, sys.executable, "-m", "vmsniff", "receive", "-i", "eth0",
            "-w", str(out), "--key", "100", "--direction", "both", "--from", "10.250.0.1",
            "-c", str(len(wire)), "--duration", "30", "--json"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        time.sleep(2.5)  # interpreter start and ring set-up
        sender = [*_ns(lab.hypervisor_ns, sys.executable, "-c", _SENDER)]
        hexes = [f.hex() for f in [noise, *wire]]
        subprocess.run(sender, input=json.dumps(hexes), text=True, check=True, timeout=60)
        stdout, stderr = receiver.communicate(timeout=40)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
        time.sleep(0.3)
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(timeout=10)
    assert receiver.returncode == 0, stderr.decode()
    stats = json.loads(stdout)
    assert stats["written"] == len(wire) and stats["filtered_out"] == 1
    assert stats["malformed"] == 0 and stats["kernel_dropped"] == 0
    assert (os.stat(out).st_mode & 0o777) == 0o600
    records = list(read_records([out.read_bytes()]))
    assert [r.data for r in records] == [f[: cut - 42] if cut else f for _, f, cut in plan]
    assert [r.origlen for r in records] == [len(f) for _, f, _ in plan]
    rows = tshark_fields(out, "frame.packet_flags_direction", "frame.interface_name",
                         "frame.cap_len", "frame.len")  # fmt: skip
    assert [r[0] for r in rows] == ["0x00000002" if k == 100 else "0x00000001" for k, _, _ in plan]
    assert {r[1] for r in rows} == {"gre-key-100-from-vm", "gre-key-101-to-vm"}
    # Holding the IPPROTO_GRE socket kept the kernel from answering with ICMP unreachable.
    assert list(read_records([icmp_log.read_bytes()])) == []


def test_live_receive_without_cap_net_raw_says_so(lab: Lab, tmp_path: Path) -> None:
    done = subprocess.run(
        _ns(lab.receiver_ns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            sys.executable, "-m", "vmsniff", "receive", "-w", str(tmp_path / "x.pcap")),
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 7, done.stderr
    assert "CAP_NET_RAW" in done.stderr and "Traceback" not in done.stderr


def test_sigterm_ends_cleanly_with_stats_after_dropping_privileges(lab: Lab) -> None:
    import pwd
    import shutil
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="vmsniff-z-"))
    shared.chmod(0o777)  # -Z nobody creates the file after giving up root
    out = shared / "t.pcap"
    receiver = subprocess.Popen(
        _ns(lab.receiver_ns, sys.executable, "-m", "vmsniff", "receive", "-w",
            str(out), "-Z", "nobody"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(2.5)
        receiver.send_signal(signal.SIGTERM)
        _, stderr = receiver.communicate(timeout=20)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
        owner = out.stat().st_uid if out.exists() else None
        shutil.rmtree(shared)
    assert receiver.returncode == 0, stderr
    assert "0 written" in stderr and "Traceback" not in stderr
    assert owner == pwd.getpwnam("nobody").pw_uid


@pytest.mark.parametrize("expression", [None, "icmp"], ids=["all", "filter-icmp"])
def test_mirror_then_receive_end_to_end(lab: Lab, tmp_path: Path, expression: str | None) -> None:
    """`vmsniff mirror` on the hypervisor into `vmsniff receive` on the receiver: the frames
    written are the VM's own, byte for byte and in order, each direction under its own
    interface, the bridge's VLAN tag stripped; with a filter (run in the kernel), exactly the
    VM's frames that tcpdump's filter accepts."""
    from tests.functional.frames import same_run_per_flow
    from tests.functional.test_mirror import start_mirror, vm_capture
    from vmsniff.filter import InnerFilter
    from vmsniff.lab.topology import RECEIVER_IP
    from vmsniff.lab.traffic import make_traffic

    key = 71000000
    vm = lab.vm("c-private")
    truth = tmp_path / "vm.pcap"
    out = tmp_path / "rx.pcapng"
    args = ["receive", "-i", "eth0", "-w", str(out), "--key", str(key), "--direction",
            "both", "--strip-vlan", "1", "--json"]  # fmt: skip
    if expression:
        args.append(expression)
    receiver = subprocess.Popen(
        _ns(lab.receiver_ns, sys.executable, "-m", "vmsniff", *args),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(2.5)
        with vm_capture(lab, "c-private", truth):
            mirror = start_mirror(lab, "c-private", "--to", RECEIVER_IP, "--key", str(key),
                                  "--duration", "5")  # fmt: skip
            result = make_traffic(lab, "c-private", "c-native", count=3)
            _, err = mirror.communicate(timeout=30)
            assert mirror.returncode == 0, err
        time.sleep(0.5)
        receiver.send_signal(signal.SIGTERM)
        stdout, stderr = receiver.communicate(timeout=20)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    assert receiver.returncode == 0, stderr
    assert all(c["replies"] == 3 for c in result["traffic"].values())
    stats = json.loads(stdout)
    assert stats["malformed"] == 0 and stats["kernel_dropped"] == 0, stats

    mac = bytes.fromhex(vm.mac.replace(":", ""))
    truth_frames = [r.data for r in read_records([truth.read_bytes()])]
    if expression:
        flt = InnerFilter(expression)
        truth_frames = [f for f in truth_frames if flt.match(1, f)]
    sent = [f for f in truth_frames if f[6:12] == mac]
    received = [f for f in truth_frames if f[6:12] != mac]
    rows = tshark_fields(out, "frame.interface_name", "frame.packet_flags_direction")
    frames = [r.data for r in read_records([out.read_bytes()])]
    assert len(rows) == len(frames) == stats["written"]
    from_vm = [f for f, (name, _) in zip(frames, rows, strict=True) if name.endswith("from-vm")]
    to_vm = [f for f, (name, _) in zip(frames, rows, strict=True) if name.endswith("to-vm")]
    assert {(name, d) for name, d in rows} == {
        (f"gre-key-{key}-from-vm", "0x00000002"),
        (f"gre-key-{key + 1}-to-vm", "0x00000001"),
    }
    assert from_vm and to_vm
    # Mirrored by OVS: in order within each flow (docs/capture.md: upcalls reorder flows).
    assert same_run_per_flow(from_vm, sent), "from-vm frames differ from what the VM sent"
    assert same_run_per_flow(to_vm, received), "to-vm frames differ from what the VM received"
    if expression:
        assert all(f[12:14] == b"\x08\x00" and f[23] == 1 for f in frames)  # ICMP only
    else:
        assert sum(len(f) == 1514 for f in from_vm) == 3  # the 1500-byte pings, untagged
