"""``vmsniff capture`` in the lab: the VM's own frames, from its tap and from a local mirror.

Ground truth is tcpdump on ``eth0`` inside the VM's namespace (what the VM itself sent and
received). vmsniff runs in the hypervisor namespace, where the taps and ovs-vswitchd live,
resolving offline (libvirt's Nova metadata and OVSDB), as on a compute node.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.functional.frames import inside_capture, same_run_per_flow
from tests.functional.test_mirror import _env, assert_clean, vm_capture
from tests.unit.pipeline.helpers import tshark_fields
from vmsniff.lab.status import env_vars
from vmsniff.lab.topology import Lab
from vmsniff.lab.traffic import make_traffic
from vmsniff.pcap.reader import read_records

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
PEER = {"c-private": "c-native", "c-native": "c-private"}


def start_capture(lab: Lab, *args: str) -> subprocess.Popen[str]:
    """``vmsniff capture`` in the hypervisor namespace; returns once it is capturing."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.hypervisor_ns, sys.executable, "-m", "vmsniff", "capture",
         *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(lab),
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if line.startswith("capturing") or not line:
            break
    assert seen[-1].startswith("capturing"), "".join(seen) + proc.stderr.read()
    return proc


def stop(proc: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    """Ctrl-C, then the JSON stats; the capture must end cleanly."""
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return json.loads(out), err


def frames_of(path: Path) -> list[tuple[bytes, int, str, str]]:
    """(data, original length, direction, interface name) per record, in file order."""
    records = list(read_records([path.read_bytes()]))
    rows = tshark_fields(path, "frame.packet_flags_direction", "frame.interface_name")
    assert len(rows) == len(records)
    way = {"0x00000002": "from-vm", "0x00000001": "to-vm"}
    return [(r.data, r.origlen, way[d], name) for r, (d, name) in zip(records, rows, strict=True)]


def truth(path: Path, mac: str) -> tuple[list[bytes], list[bytes]]:
    """What the VM sent and what it received, from inside the VM."""
    own = bytes.fromhex(mac.replace(":", ""))
    frames = [r.data for r in read_records([path.read_bytes()])]
    return [f for f in frames if f[6:12] == own], [f for f in frames if f[6:12] != own]


def explain(part: list[bytes], whole: list[bytes]) -> str:
    """Where ``part`` is not a run of ``whole``: positions of ours in theirs, what is missing."""
    where = [whole.index(f) if f in whole else None for f in part]
    missing = [i for i, f in enumerate(whole) if f not in part]
    return f"ours at {where} of {len(whole)}; theirs missing from ours: {missing}"


@pytest.mark.parametrize("at", ["tap", "ovs"])
@pytest.mark.parametrize("name", ["c-private", "c-native"])
def test_the_vms_frames_once_byte_for_byte_in_order_with_direction(
    lab: Lab, tmp_path: Path, name: str, at: str
) -> None:
    vm = lab.vm(name)
    out, inside = tmp_path / "vm.pcapng", tmp_path / "inside.pcap"
    with vm_capture(lab, name, inside):
        proc = start_capture(lab, name, "--at", at, "-w", str(out), "--json")
        try:
            traffic = make_traffic(lab, name, PEER[name], count=3)
            stats, err = stop(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert all(c["replies"] == 3 for c in traffic["traffic"].values())
    assert_clean(lab)  # --at ovs removed its ports and mirrors; --at tap made none
    assert (os.stat(out).st_mode & 0o777) == 0o600
    got = frames_of(out)
    assert stats["written"] == len(got) and stats["kernel_dropped"] == 0
    assert {n for *_, n in got} == {vm.tap}  # one interface, named after the NIC's tap
    assert all(origlen == len(data) for data, origlen, _, _ in got)
    sent, received = truth(inside, vm.mac)
    from_vm = [d for d, _, way, _ in got if way == "from-vm"]
    to_vm = [d for d, _, way, _ in got if way == "to-vm"]
    # Exactly the VM's frames per direction, in order, byte for byte (untagged: the VLAN tag the
    # access port adds never reaches the ring); the VM's capture ran longer, so ours is a run.
    assert from_vm and to_vm
    # In order within each flow. Across flows the host's order may differ from the VM's own
    # even on a tap: frames the VM sends from two CPUs reach the tap through two CPUs' backlogs
    # (seen once in the lab, two frames of different flows swapped); through the switch (--at
    # ovs) an upcall lets an established flow pass a new one.
    same = same_run_per_flow
    assert same(from_vm, sent), "from-vm differs from the VM's: " + explain(from_vm, sent)
    assert same(to_vm, received), "to-vm differs from the VM's: " + explain(to_vm, received)
    assert len(set(from_vm)) == len(from_vm) and len(set(to_vm)) == len(to_vm)
    assert sum(len(f) == 1514 for f in from_vm) == 3 and sum(len(f) == 1514 for f in to_vm) == 3
    if at == "ovs":
        assert len(stats["sessions"]) == 1
        assert stats["nics"][0]["devices"] == [
            f"vms{stats['sessions'][0].replace('-', '')[:8]}-f",
            f"vms{stats['sessions'][0].replace('-', '')[:8]}-t",
        ]
        assert "removed the capture's mirror rows" in err


@pytest.mark.parametrize("at", ["tap", "ovs"])
def test_filter_and_snaplen_give_what_tcpdump_gives(lab: Lab, tmp_path: Path, at: str) -> None:
    vm = lab.vm("c-private")
    expr = "udp or (tcp and greater 100) or icmp[icmptype] == icmp-echoreply"
    ours, theirs = tmp_path / "ours.pcapng", tmp_path / "tcpdump.pcap"
    cut = tmp_path / "cut.pcapng"
    dump = subprocess.Popen(
        ["ip", "netns", "exec", lab.hypervisor_ns, "tcpdump", "-i", vm.tap, "-U", "-w",
         str(theirs), expr], stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert dump.stderr is not None and "listening" in dump.stderr.readline()
        proc = start_capture(lab, "c-private", "--at", at, "-w", str(ours), "--json", expr)
        short = start_capture(lab, "c-private", "--at", "tap", "-s", "100", "-w", str(cut),
                              "--json", "--direction", "from-vm")  # fmt: skip
        make_traffic(lab, "c-private", "c-native", count=2)
        stats, _ = stop(proc)
        short_stats, _ = stop(short)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.communicate(timeout=10)
    assert_clean(lab)
    want = [r.data for r in read_records([theirs.read_bytes()])]
    got = frames_of(ours)
    assert want and [d for d, *_ in got] == want  # the same frames, in the same order
    assert stats["written"] == len(want)
    # -s 100: every from-vm frame (and only those), cut to 100 bytes, with its true length.
    cut_rows = frames_of(cut)
    assert {way for _, _, way, _ in cut_rows} == {"from-vm"}
    assert all(len(d) == min(100, n) for d, n, _, _ in cut_rows)
    assert sum(n == 1514 for _, n, _, _ in cut_rows) == 2
    assert short_stats["written"] == len(cut_rows)


def interface_names(path: Path) -> list[str]:
    """``if_name`` of every Interface Description Block, in file order (pcapng 4.2, 4.3)."""
    data = path.read_bytes()
    assert data[8:12] == b"\x4d\x3c\x2b\x1a"  # a little-endian section (what we write)
    names, at = [], 0
    while at < len(data):
        kind, size = struct.unpack_from("<II", data, at)
        if kind == 1:  # IDB: link type, reserved, snaplen, then options
            opt = at + 16
            while opt < at + size - 4:
                code, length = struct.unpack_from("<HH", data, opt)
                if code == 0:
                    break
                if code == 2:  # if_name
                    names.append(data[opt + 4 : opt + 4 + length].decode())
                opt += 4 + length + (-length % 4)
        at += size
    return names


@pytest.mark.parametrize("at", ["tap", "ovs"])
def test_nic_all_files_every_nic_under_its_own_name(lab: Lab, tmp_path: Path, at: str) -> None:
    vm = lab.vm("c-multi")  # eth0 native OVS plug, eth1 hybrid
    taps = [nic.tap for nic in vm.nics]
    out = tmp_path / "all.pcapng"
    inside = [tmp_path / f"{nic.device}.pcap" for nic in vm.nics]
    with ExitStack() as stack:
        for nic, path in zip(vm.nics, inside, strict=True):
            stack.enter_context(inside_capture(vm.namespace, nic.device, path))
        proc = start_capture(lab, vm.name, "--nic", "all", "--at", at, "-w", str(out), "--json")
        try:
            # eth0 starts a conversation, eth1 answers one: each NIC carries its own traffic.
            traffic = [
                make_traffic(lab, vm.name, "c-private", count=3, source_nic=0),
                make_traffic(lab, "c-native", vm.name, count=3, destination_nic=1),
            ]
            stats, err = stop(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for result in traffic:
        assert all(c["replies"] == 3 for c in result["traffic"].values()), result
    assert_clean(lab)  # --at ovs removed both NICs' ports and mirrors
    got = frames_of(out)
    assert stats["written"] == len(got) and stats["kernel_dropped"] == 0
    # One pcapng interface per NIC, named after its tap; the stats list both NICs.
    assert sorted(interface_names(out)) == sorted(taps)
    assert sorted((n["interface"], n["mac"], n["at"]) for n in stats["nics"]) == sorted(
        (nic.tap, nic.mac, at) for nic in vm.nics
    )
    if at == "ovs":  # one local mirror (session) per NIC, two vmsniff ports each
        assert len(stats["sessions"]) == 2
        for nic, session in zip(stats["nics"], stats["sessions"], strict=True):
            short = session.replace("-", "")[:8]
            assert nic["devices"] == [f"vms{short}-f", f"vms{short}-t"]
    else:
        assert all(n["devices"] == [n["interface"]] for n in stats["nics"])
        assert stats["sessions"] == []
    assert all(origlen == len(data) for data, origlen, _, _ in got)
    same = same_run_per_flow  # order within each flow (see the test above)
    seen = []
    for nic, path in zip(vm.nics, inside, strict=True):
        sent, received = truth(path, nic.mac)
        mine = [(d, way) for d, _, way, name in got if name == nic.tap]
        from_vm = [d for d, way in mine if way == "from-vm"]
        to_vm = [d for d, way in mine if way == "to-vm"]
        # Per NIC: exactly what it sent and received, byte for byte, each once, in order.
        assert from_vm and to_vm, nic.device
        assert same(from_vm, sent), f"{nic.device} from-vm: " + explain(from_vm, sent)
        assert same(to_vm, received), f"{nic.device} to-vm: " + explain(to_vm, received)
        assert len(set(from_vm)) == len(from_vm) and len(set(to_vm)) == len(to_vm)
        assert sum(len(f) == 1514 for f in from_vm) == 3, nic.device
        assert sum(len(f) == 1514 for f in to_vm) == 3, nic.device
        seen.append(({d for d, _ in mine}, set(sent) | set(received)))
    # A frame is filed under both NICs only if both NICs saw it (a broadcast ARP request).
    (ours0, theirs0), (ours1, theirs1) = seen
    assert ours0 & ours1 <= theirs0 & theirs1


def _vmsniff(lab: Lab, *args: str, env: dict[str, str] | None = None,
             netns: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    prefix = ["ip", "netns", "exec", lab.hypervisor_ns] if netns else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "vmsniff", *args], cwd=ROOT, capture_output=True,
        text=True, env=env or _env(lab), timeout=60,
    )  # fmt: skip


def test_a_vm_on_another_host_is_refused_with_where_it_is(lab: Lab, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(env_vars(lab))
    env["VMSNIFF_HOST"] = "compute-2"  # ask the cloud from a machine that is not compute-1
    done = _vmsniff(lab, "capture", "c-private", "-w", str(tmp_path / "x.pcapng"), env=env,
                    netns=False)  # fmt: skip
    assert done.returncode == 5, done.stderr
    assert "runs on compute-1, not on this host (compute-2)" in done.stderr
    assert "vmsniff mirror c-private" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.pcapng").exists()


def test_nics_without_a_tap_here_are_refused(lab: Lab, tmp_path: Path) -> None:
    sriov = _vmsniff(lab, "capture", "c-sriov", "--at", "tap", "-w", str(tmp_path / "a"))
    assert sriov.returncode == 5 and "sriov" in sriov.stderr and "Traceback" not in sriov.stderr
    # Outside the hypervisor's namespace the tap is not there: say so, point at --at ovs.
    missing = _vmsniff(lab, "capture", "c-private", "--at", "tap", "-w", str(tmp_path / "b"),
                       netns=False)  # fmt: skip
    assert missing.returncode == 3, missing.stderr
    assert lab.vm("c-private").tap in missing.stderr and "--at ovs" in missing.stderr
    assert not list(tmp_path.iterdir())


def test_without_cap_net_raw_nothing_is_made(lab: Lab, tmp_path: Path) -> None:
    done = subprocess.run(
        ["ip", "netns", "exec", lab.hypervisor_ns, "setpriv", "--reuid=65534", "--regid=65534",
         "--clear-groups", sys.executable, "-m", "vmsniff", "capture", "c-private", "--at",
         "ovs", "-w", str(tmp_path / "x")],
        cwd=ROOT, capture_output=True, text=True, env=_env(lab), timeout=60,
    )  # fmt: skip
    assert done.returncode == 7, done.stderr
    assert "CAP_NET_RAW" in done.stderr and "Traceback" not in done.stderr
    assert_clean(lab)


def test_bad_filter_and_unwritable_output_leave_nothing(lab: Lab, tmp_path: Path) -> None:
    bad = _vmsniff(lab, "capture", "c-private", "-w", str(tmp_path / "x"), "tcp", "port")
    assert bad.returncode == 2 and "bad filter 'tcp port'" in bad.stderr
    nowhere = str(tmp_path / "no" / "such" / "x.pcapng")
    for at in ("tap", "ovs"):
        done = _vmsniff(lab, "capture", "c-private", "--at", at, "-w", nowhere)
        assert done.returncode == 3 and "no such directory" in done.stderr, done.stderr
        assert_clean(lab)  # the ovs rows made before the file was refused are gone again
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("at", ["tap", "ovs"])
def test_full_disk_ends_with_whole_records_stats_exit_11_and_no_rows(
    lab: Lab, tmp_path: Path, at: str
) -> None:
    """The disk fills up under a running capture (a 12 KiB tmpfs in a private mount namespace,
    which `ip netns exec` inherits): exit 11 with the stats line, the file readable to its last
    whole record, and for --at ovs the mirror rows removed on the way out (issue #13)."""
    import shlex

    full, copy = tmp_path / "full", tmp_path / "copy.pcapng"
    full.mkdir()
    out = full / "vm.pcapng"
    line = shlex.join(["ip", "netns", "exec", lab.hypervisor_ns, sys.executable, "-m",
                       "vmsniff", "capture", "c-private", "--at", at, "-w", str(out),
                       "-U"])  # fmt: skip
    script = (f"mount -t tmpfs -o size=12k vmsniff-test {shlex.quote(str(full))} && {line}; "
              f"rc=$?; cp {shlex.quote(str(out))} {shlex.quote(str(copy))}; exit $rc")  # fmt: skip
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(lab),
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        seen = [proc.stderr.readline()]
        while seen[-1] and not seen[-1].startswith("capturing"):
            seen.append(proc.stderr.readline())
        assert seen[-1].startswith("capturing"), "".join(seen)
        for _ in range(10):  # until the 12 KiB are full
            make_traffic(lab, "c-private", "c-native", count=3)
            if proc.poll() is not None:
                break
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 11, err
    assert "No space left on device" in err and "Traceback" not in err
    assert " received, " in err and " written, " in err  # the stats line
    assert_clean(lab)  # --at ovs: the ports and mirrors are gone again
    rows = tshark_fields(copy, "frame.len")  # fails on any warning: no record cut short
    assert rows and copy.stat().st_size <= 12 * 1024
