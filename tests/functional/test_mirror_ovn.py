"""`mirror --via ovn` on a three-chassis OVN lab: Debian's real OVN realises vmsniff's
Northbound mirrors, follows a port that moves, and keeps everyone else's mirrors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.functional.conftest import _require_lab_tools, unique_prefix
from tests.functional.frames import inside_capture, same_run_per_flow
from tests.functional.test_lab_hosts import host_env
from vmsniff.dissect import read_file
from vmsniff.lab import links
from vmsniff.lab.build import build
from vmsniff.lab.ovn import nbctl
from vmsniff.lab.switch import vsctl
from vmsniff.lab.teardown import teardown
from vmsniff.lab.topology import RECEIVER_IP, Lab, lab_for
from vmsniff.lab.traffic import make_traffic

pytestmark = pytest.mark.lab

VMS = ("c-private", "c-native", "c-multi")


@pytest.fixture(scope="module")
def ovn3() -> Iterator[Lab]:
    """Three OVN chassis: c-private on compute-1, c-native on compute-2, c-multi (two NICs)
    on compute-3."""
    _require_lab_tools()
    for tool in ("ovn-northd", "ovn-controller", "ovn-nbctl"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed (scripts/install.sh installs it)")
    the_lab = lab_for(unique_prefix("o3"), hosts=3, ovn=True)
    try:
        build(the_lab)
        yield the_lab
    finally:
        teardown(the_lab)


def vmsniff(*args: str, ns: str | None = None) -> list[str]:
    pre = ["ip", "netns", "exec", ns] if ns else []
    return [*pre, sys.executable, "-m", "vmsniff", *args]


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def nb_mirrors(lab: Lab) -> list[str]:
    return nbctl(lab, "--columns=name", "--format=csv", "--no-headings", "list", "Mirror").split()


def chassis_leftovers(lab: Lab) -> dict[str, list[str]]:
    """OVS rows ovn-controller made for vmsniff's NB mirrors, per host."""
    left = {}
    for hv in lab.hypervisors:
        names = vsctl(hv, "--columns=name", "--format=csv", "--no-headings", "list", "Interface")
        mirrors = vsctl(hv, "--columns=name", "--format=csv", "--no-headings", "list", "Mirror")
        ours = [n for n in (names + mirrors).split() if "vmsniff" in n]
        if ours:
            left[hv.name] = ours
    return left


def nothing_left(lab: Lab) -> bool:
    return not [m for m in nb_mirrors(lab) if "vmsniff" in m] and not chassis_leftovers(lab)


def test_three_vms_on_three_chassis_through_ovn_into_one_pcapng(ovn3: Lab, tmp_path: Path) -> None:
    env = host_env(ovn3, "compute-1")
    manifest, merged = tmp_path / "s.json", tmp_path / "s.pcapng"
    truth = {
        f"{vm.name}/{nic.device}": (vm, nic, tmp_path / f"{vm.name}-{nic.device}.pcap")
        for vm in (ovn3.vm(n) for n in VMS)
        for nic in vm.nics
    }
    with ExitStack() as stack:
        for vm, nic, path in truth.values():
            stack.enter_context(inside_capture(vm.namespace, nic.device, path))
        mirror = subprocess.Popen(
            vmsniff("mirror", *VMS, "--to", RECEIVER_IP, "--duration", "10", "--manifest",
                    str(manifest), "--json"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            assert mirror.stderr is not None
            first = mirror.stderr.readline()
            assert first.startswith("session "), first + mirror.stderr.read()
            # ovn-controller realises the NB rows on each chassis that binds a port
            _wait(lambda: len(chassis_leftovers(ovn3)) == 3, "the chassis mirrors")
            rx = subprocess.Popen(
                vmsniff("receive", "--manifest", str(manifest), "-w", str(merged), "--duration",
                        "6", "--json", ns=ovn3.receiver_ns),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
            time.sleep(1.0)
            make_traffic(ovn3, "c-private", "c-native", count=2)
            make_traffic(ovn3, "c-multi", "c-private", count=2)
            make_traffic(ovn3, "c-multi", "c-native", source_nic="eth1", count=2)
            rx_out, rx_err = rx.communicate(timeout=60)
            out, err = mirror.communicate(timeout=60)
        finally:
            if mirror.poll() is None:
                mirror.kill()
                mirror.communicate()
    assert rx.returncode == 0, rx_err
    assert mirror.returncode == 0, err
    summary = json.loads(out)
    assert summary["via"] == "ovn" and summary["stopped"] == "duration"
    # counted from the OVS Mirrors ovn-controller made on each chassis (every ~5 s)
    assert summary["packets"] > 0 and summary["bytes"] > 0, summary
    assert json.loads(rx_out)["malformed"] == 0
    _wait(lambda: nothing_left(ovn3), "OVN to remove the chassis mirrors")

    got: dict[str, dict[str, list[bytes]]] = {}
    for frame in read_file(str(merged)):
        assert frame.interface in truth, frame.interface
        got.setdefault(frame.interface, {}).setdefault(str(frame.direction), []).append(
            bytes(frame.data)
        )
    assert set(got) == set(truth)
    for name, (_vm, nic, path) in truth.items():
        seen = [bytes(f.data) for f in read_file(str(path))]
        mac = bytes.fromhex(nic.mac.replace(":", ""))
        sent = [f for f in seen if f[6:12] == mac]
        received = [f for f in seen if f[6:12] != mac]
        from_vm, to_vm = got[name].get("from-vm", []), got[name].get("to-vm", [])
        assert len(from_vm) >= 4 and len(to_vm) >= 4, (name, len(from_vm), len(to_vm))
        assert same_run_per_flow(from_vm, sent), f"{name}: from-vm frames differ"
        assert same_run_per_flow(to_vm, received), f"{name}: to-vm frames differ"


@pytest.fixture
def foreign(ovn3: Lab) -> Iterator[str]:
    """An NB mirror of someone else's (ovn-nbctl, as an operator or Neutron TaaS makes one)."""
    port = ovn3.vm("c-native").port_id
    nbctl(ovn3, "mirror-add", "ops-foreign", "gre", "777", "to-lport", RECEIVER_IP, "--",
          "lsp-attach-mirror", port, "ops-foreign")  # fmt: skip
    try:
        yield "ops-foreign"
    finally:
        if "ops-foreign" in nb_mirrors(ovn3):
            nbctl(ovn3, "mirror-del", "ops-foreign")


def _foreign_intact(lab: Lab) -> None:
    assert "ops-foreign" in nb_mirrors(lab)
    port = lab.vm("c-native").port_id
    rules = nbctl(lab, "get", "Logical_Switch_Port", port, "mirror_rules")
    uuid = nbctl(lab, "--columns=_uuid", "--bare", "find", "Mirror", "name=ops-foreign").strip()
    assert uuid and uuid in rules
    hv = lab.hypervisor("compute-2")
    _wait(lambda: "ovn-ops-foreign" in vsctl(hv, "list-ports", "br-int").split(),
          "the foreign chassis port")  # fmt: skip


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(vmsniff(*args), capture_output=True, text=True, env=env, timeout=120)


def test_a_foreign_nb_mirror_survives_every_cleanup_form(ovn3: Lab, foreign: str) -> None:
    env = host_env(ovn3, "compute-1")
    proc = run("mirror", "c-native", "c-private", "--to", RECEIVER_IP, "--duration", "1",
               "--manifest", "/dev/null/x", env=env)  # fmt: skip
    assert proc.returncode != 0  # the manifest cannot be made: nothing is
    proc = run("mirror", "c-native", "c-private", "--via", "ovn", "--to", RECEIVER_IP,
               "--duration", "1", "--manifest", f"/tmp/{ovn3.prefix}-a.json", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    _foreign_intact(ovn3)
    for selector in (["--vm", "c-native"], ["--expired"], ["--all"], ["SESSION"]):
        detached = run("mirror", "c-native", "c-private", "--to", RECEIVER_IP, "--detach",
                       "--ttl", "1s" if selector == ["--expired"] else "10m", "--manifest",
                       f"/tmp/{ovn3.prefix}-{selector[0]}.json", "--json", env=env)  # fmt: skip
        assert detached.returncode == 0, detached.stderr
        sid = json.loads(detached.stdout)["session"]
        if selector == ["--expired"]:
            time.sleep(1.5)
        args = [sid] if selector == ["SESSION"] else selector
        done = run("cleanup", "--ovn", *args, env=env)
        assert done.returncode == 0, done.stderr
        assert sid in done.stdout, done.stdout
        assert not [m for m in nb_mirrors(ovn3) if "vmsniff" in m]
        _foreign_intact(ovn3)
    for path in Path("/tmp").glob(f"{ovn3.prefix}-*.json"):
        path.unlink()
    _wait(lambda: nothing_left(ovn3), "OVN to remove the chassis mirrors")


def test_kill_9_then_cleanup_expired_leaves_no_nb_row_and_no_chassis_port(
    ovn3: Lab, tmp_path: Path
) -> None:
    env = host_env(ovn3, "compute-1")
    proc = subprocess.Popen(
        vmsniff("mirror", *VMS, "--to", RECEIVER_IP, "--manifest", str(tmp_path / "m.json")),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("session ")
        _wait(lambda: len(chassis_leftovers(ovn3)) == 3, "the chassis mirrors")
    finally:
        proc.kill()
        proc.communicate()
    listed = run("list", "--ovn", "--json", env=env)
    assert [s["state"] for s in json.loads(listed.stdout)] == ["dead"], listed.stdout
    done = run("cleanup", "--ovn", "--expired", env=env)
    assert done.returncode == 0, done.stderr
    _wait(lambda: nothing_left(ovn3), "no NB row and no chassis port")


def test_an_unreachable_northbound_changes_nothing(ovn3: Lab, tmp_path: Path) -> None:
    env = {**host_env(ovn3, "compute-1"), "OVN_NB_DB": f"unix:/run/{ovn3.prefix}/nope.sock"}
    proc = run("mirror", *VMS, "--via", "ovn", "--to", RECEIVER_IP, "--duration", "1",
               "--manifest", str(tmp_path / "m.json"), env=env)  # fmt: skip
    assert proc.returncode == 6, proc.stderr
    assert "Northbound" in proc.stderr and "nope.sock" in proc.stderr
    assert not (tmp_path / "m.json").exists()
    assert nothing_left(ovn3)


def _move(lab: Lab, vm_name: str, to_host: str) -> None:
    """Unplug the VM's NIC from its chassis and plug it into ``to_host``'s br-int, as a live
    migration leaves it (same port id, same MAC)."""
    vm = lab.vm(vm_name)
    nic = vm.nics[0]
    here = next(
        hv for hv in lab.hypervisors if nic.tap in vsctl(hv, "list-ports", "br-int").split()
    )
    there = lab.hypervisor(to_host)
    vsctl(here, "del-port", "br-int", nic.tap)
    subprocess.run(["ip", "-n", here.namespace, "link", "set", nic.tap, "netns", there.namespace],
                   check=True)  # fmt: skip
    links.set_link(there.namespace, nic.tap)
    links.disable_offloads(there.namespace, nic.tap)
    vsctl(there, "--", "add-port", "br-int", nic.tap, "--", "set", "Interface", nic.tap,
          f"external_ids:iface-id={nic.port_id}", "external_ids:iface-status=active",
          f"external_ids:attached-mac={nic.mac}",
          f"external_ids:vm-uuid={vm.server_id}")  # fmt: skip

    def bound() -> bool:
        return 'ovn-installed="true"' in vsctl(there, "get", "Interface", nic.tap, "external_ids")

    _wait(bound, "the port bound on its new chassis")


def test_a_moved_port_keeps_being_mirrored_without_vmsniff(ovn3: Lab, tmp_path: Path) -> None:
    env = host_env(ovn3, "compute-1")
    outer = tmp_path / "outer.pcap"
    tcpdump = subprocess.Popen(
        ["ip", "netns", "exec", ovn3.receiver_ns, "tcpdump", "-i", "eth0", "-U", "-n", "-w",
         str(outer), "--immediate-mode", "ip proto 47"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    mirror = subprocess.Popen(
        vmsniff("mirror", "c-native", "--via", "ovn", "--to", RECEIVER_IP, "--duration", "30",
                "--manifest", str(tmp_path / "m.json"), "--json"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    moved = False
    try:
        assert tcpdump.stderr is not None and "listening" in tcpdump.stderr.readline()
        assert mirror.stderr is not None and mirror.stderr.readline().startswith("session ")
        key = json.loads((tmp_path / "m.json").read_text())["streams"][0]["key"]
        _wait(lambda: "compute-2" in chassis_leftovers(ovn3), "the mirror on compute-2")
        make_traffic(ovn3, "c-private", "c-native", count=2)
        _move(ovn3, "c-native", "compute-3")
        moved = True
        _wait(lambda: "compute-3" in chassis_leftovers(ovn3), "OVN to move the mirror")
        make_traffic(ovn3, "c-private", "c-native", count=2)
        time.sleep(0.5)
        mirror.send_signal(2)
        out, err = mirror.communicate(timeout=60)
    finally:
        if mirror.poll() is None:
            mirror.kill()
            mirror.communicate()
        tcpdump.send_signal(2)
        tcpdump.communicate(timeout=10)
        if moved:
            _move(ovn3, "c-native", "compute-2")
    assert mirror.returncode in (0, 130), err
    from scapy.layers.inet import IP
    from scapy.layers.l2 import GRE
    from scapy.utils import rdpcap

    sources = {p[IP].src for p in rdpcap(str(outer)) if GRE in p and p[GRE].key == key}
    # the same key from c-native's first chassis, then from the one it moved to
    assert sources == {
        ovn3.hypervisor("compute-2").tunnel_ip,
        ovn3.hypervisor("compute-3").tunnel_ip,
    }
    _wait(lambda: nothing_left(ovn3), "OVN to remove the chassis mirrors")


def test_rows_deleted_under_a_running_session_end_it_with_exit_12(
    ovn3: Lab, tmp_path: Path
) -> None:
    env = host_env(ovn3, "compute-1")
    proc = subprocess.Popen(
        vmsniff("mirror", "c-private", "c-native", "--via", "ovn", "--to", RECEIVER_IP,
                "--manifest", str(tmp_path / "m.json")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("session ")
        ours = [m for m in nb_mirrors(ovn3) if "vmsniff" in m]
        assert len(ours) == 4
        nbctl(ovn3, "mirror-del", ours[0])  # someone else removes one of the session's rows
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 12, err
    assert "was lost while it ran" in err and ours[0] in err
    _wait(lambda: nothing_left(ovn3), "the rest of the session removed")


def test_erspan_through_ovn_reaches_the_receiver_under_the_nic(ovn3: Lab, tmp_path: Path) -> None:
    env = host_env(ovn3, "compute-1")
    manifest, merged = tmp_path / "m.json", tmp_path / "m.pcapng"
    mirror = subprocess.Popen(
        vmsniff("mirror", "c-private", "--via", "ovn", "--encap", "erspan", "--to", RECEIVER_IP,
                "--duration", "8", "--manifest", str(manifest)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert mirror.stdout is not None and mirror.stdout.readline().startswith("session ")
        _wait(lambda: "compute-1" in chassis_leftovers(ovn3), "the chassis mirror")
        rx = subprocess.Popen(
            vmsniff("receive", "--manifest", str(manifest), "-w", str(merged), "--duration", "4",
                    ns=ovn3.receiver_ns),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        time.sleep(1.0)
        make_traffic(ovn3, "c-private", "c-native", count=2)
        _, rx_err = rx.communicate(timeout=60)
        _, err = mirror.communicate(timeout=60)
    finally:
        if mirror.poll() is None:
            mirror.kill()
            mirror.communicate()
    assert rx.returncode == 0 and mirror.returncode == 0, rx_err + err
    frames = list(read_file(str(merged)))
    assert {f.interface for f in frames} == {"c-private/eth0"}
    assert {str(f.direction) for f in frames} == {"from-vm", "to-vm"}
    assert len(frames) >= 16  # 4 kinds x 2 round trips, each way
    _wait(lambda: nothing_left(ovn3), "OVN to remove the chassis mirrors")
