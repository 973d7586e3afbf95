"""`vmsniff mirror`, `list` and `cleanup` in the lab: real OVS, real GRE, nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.functional.frames import inside_capture, same_run_per_flow
from vmsniff.lab.status import env_vars
from vmsniff.lab.switch import vsctl
from vmsniff.lab.topology import RECEIVER_IP, Lab
from vmsniff.lab.traffic import make_traffic

pytestmark = pytest.mark.lab
COLLECTOR = Path(__file__).with_name("gre_collector.py")


def _env(lab: Lab) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(env_vars(lab))
    env.pop("OS_CLOUD", None)  # offline: libvirt + OVSDB (the cloud path is tested in resolve)
    return env


def vmsniff(lab: Lab, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmsniff", *args], capture_output=True, text=True,
        env=_env(lab), timeout=timeout,
    )  # fmt: skip


def start_mirror(lab: Lab, *args: str, pre: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    """A foreground `vmsniff mirror`; returns once the mirror is up (it printed the receive
    command: data on stdout, or on stderr with --json, whose stdout holds one document)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmsniff", *pre, "mirror", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=_env(lab),
    )  # fmt: skip
    stream = proc.stderr if "--json" in args else proc.stdout
    assert stream is not None and proc.stderr is not None
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = stream.readline()
        lines.append(line)
        if "run:" in line or not line:
            break
    if not any("run:" in line for line in lines):
        proc.wait(timeout=30)
        raise AssertionError("".join(lines) + (proc.stderr.read() or ""))
    proc.head = "".join(lines)  # type: ignore[attr-defined]  # what it said while starting
    return proc


def vms_rows(lab: Lab) -> dict[str, list[str]]:
    """Every row vmsniff might have made, by name, and the bridge's mirror names."""
    ports = vsctl(lab, "list-ports", "br-int").split()
    mirrors = vsctl(lab, "--columns=name", "--format=csv", "--no-headings", "list", "Mirror")
    ifaces = vsctl(lab, "--columns=name", "--format=csv", "--no-headings", "list", "Interface")
    return {
        "ports": [p for p in ports if p.startswith("vms")],
        "mirrors": [m.strip('"') for m in mirrors.split() if "vmsniff" in m],
        "ifaces": [i.strip('"') for i in ifaces.split() if i.strip('"').startswith("vms")],
    }


def assert_clean(lab: Lab) -> None:
    assert vms_rows(lab) == {"ports": [], "mirrors": [], "ifaces": []}


@contextmanager
def collector(lab: Lab) -> Iterator[list[list[object]]]:
    """GRE packets arriving in the receiver namespace while the block runs."""
    got: list[list[object]] = []
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.receiver_ns, sys.executable, str(COLLECTOR)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield got
        time.sleep(0.5)
        out, _ = proc.communicate("", timeout=20)
        got.extend(json.loads(out))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@contextmanager
def vm_capture(lab: Lab, name: str, path: Path) -> Iterator[None]:
    """tcpdump on eth0 inside the VM's namespace: the ground truth of what the VM saw."""
    with inside_capture(lab.vm(name).namespace, "eth0", path):
        yield


def _strip_tag(frame: bytes) -> tuple[bytes, int | None]:
    if frame[12:14] == b"\x81\x00":
        return frame[:12] + frame[16:], int.from_bytes(frame[14:16], "big") & 0x0FFF
    return frame, None


def test_end_to_end_frames_arrive_with_keys_in_both_directions(lab: Lab, tmp_path: Path) -> None:
    from scapy.utils import rdpcap

    vm = lab.vm("c-private")
    truth = tmp_path / "vm.pcap"
    with vm_capture(lab, "c-private", truth), collector(lab) as got:
        proc = start_mirror(lab, "c-private", "--to", RECEIVER_IP, "--key", "70000000",
                            "--json", "--duration", "6")  # fmt: skip
        result = make_traffic(lab, "c-private", "c-native", count=3)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["keys"] == {"from-vm": 70000000, "to-vm": 70000001}
    assert summary["stopped"] == "duration"
    assert all(c["replies"] == 3 for c in result["traffic"].values())
    assert_clean(lab)

    by_key: dict[int, list[bytes]] = {70000000: [], 70000001: []}
    for key, inner, _len in got:
        assert key in by_key, f"unexpected GRE key {key}"
        by_key[int(key)].append(bytes.fromhex(str(inner)))  # type: ignore[call-overload]
    frames = {k: [_strip_tag(f) for f in v] for k, v in by_key.items()}
    # Every mirrored frame carries the access port's VLAN tag, which the VM never sent.
    assert {tag for f in frames.values() for _, tag in f} == {1}
    sent = [
        bytes(p)
        for p in rdpcap(str(truth))
        if bytes(p)[6:12] == bytes.fromhex(vm.mac.replace(":", ""))
    ]
    received = [
        bytes(p)
        for p in rdpcap(str(truth))
        if bytes(p)[6:12] != bytes.fromhex(vm.mac.replace(":", ""))
    ]
    from_vm = [f for f, _ in frames[70000000]]
    to_vm = [f for f, _ in frames[70000001]]
    # Exactly the VM's frames, in order, byte for byte (the capture runs longer than the mirror,
    # so the mirrored frames are a contiguous run of the VM's).
    assert from_vm and to_vm
    # In order within each flow: OVS's upcalls may let an established flow pass a new one.
    assert same_run_per_flow(from_vm, sent), "from-vm frames differ from what the VM sent"
    assert same_run_per_flow(to_vm, received), "to-vm frames differ from what the VM received"
    assert sum(len(f) == 1514 for f in from_vm) == 3  # full 1500-byte IP packets, untagged
    assert sum(len(f) == 1514 for f in to_vm) == 3


@pytest.fixture
def foreign(lab: Lab) -> Iterator[str]:
    """Someone else's mirror and port on br-int, made with plain ovs-vsctl."""
    native = lab.vm("c-native").ovs_port
    vsctl(
        lab,
        "--", "add-port", "br-int", "ops-span", "--", "set", "Interface", "ops-span",
        "type=internal",
        "--", "--id=@out", "get", "Port", "ops-span",
        "--", "--id=@src", "get", "Port", native,
        "--", "--id=@m", "create", "Mirror", "name=ops-mirror", "select_src_port=@src",
        "output_port=@out",
        "--", "add", "Bridge", "br-int", "mirrors", "@m",
    )  # fmt: skip
    try:
        yield "ops-mirror"
    finally:
        uuid = vsctl(lab, "--if-exists", "get", "Mirror", "ops-mirror", "_uuid").strip()
        if uuid:
            vsctl(lab, "remove", "Bridge", "br-int", "mirrors", uuid)
        vsctl(lab, "--if-exists", "del-port", "br-int", "ops-span")


def _foreign_intact(lab: Lab) -> None:
    assert vsctl(lab, "get", "Mirror", "ops-mirror", "name").strip().strip('"') == "ops-mirror"
    assert "ops-span" in vsctl(lab, "list-ports", "br-int").split()
    mirrors = vsctl(lab, "get", "Bridge", "br-int", "mirrors")
    assert vsctl(lab, "get", "Mirror", "ops-mirror", "_uuid").strip() in mirrors
    for vm in lab.vms:
        assert vm.ovs_port in vsctl(lab, "list-ports", "br-int").split()


def test_foreign_rows_survive_mirror_teardown_and_every_cleanup(lab: Lab, foreign: str) -> None:
    proc = vmsniff(lab, "mirror", "c-native", "--to", RECEIVER_IP, "--duration", "1")
    assert proc.returncode == 0, proc.stderr
    _foreign_intact(lab)
    assert_clean(lab)
    for args in (["--all"], ["--expired"], ["--vm", "c-native"], ["--vm", "c-private"]):
        made = vmsniff(lab, "mirror", "c-native", "--to", RECEIVER_IP, "--detach", "--json")
        assert made.returncode == 0, made.stderr
        sid = json.loads(made.stdout)["session"]
        gone = vmsniff(lab, "cleanup", *args, "--json")
        # --vm of a VM without sessions is "not found" (3) and removes nothing
        assert gone.returncode == (3 if args == ["--vm", "c-private"] else 0), gone.stderr
        out = json.loads(gone.stdout)
        removed = [s["session"] for s in out.get("removed", [])]
        _foreign_intact(lab)
        if args in (["--expired"], ["--vm", "c-private"]):
            assert removed == []  # not expired / another VM: kept
            vmsniff(lab, "cleanup", sid)
        else:
            assert removed == [sid]
        assert_clean(lab)


def test_two_sessions_on_one_vm_work_and_end_independently(lab: Lab) -> None:
    a = json.loads(vmsniff(lab, "mirror", "c-private", "--to", RECEIVER_IP, "--detach", "--json",
                           "--reason", "first").stdout)  # fmt: skip
    b = json.loads(vmsniff(lab, "mirror", "c-private", "--to", RECEIVER_IP, "--detach", "--json",
                           "--reason", "second").stdout)  # fmt: skip
    try:
        assert a["session"] != b["session"]
        assert set(a["keys"].values()).isdisjoint(b["keys"].values())
        with collector(lab) as got:
            make_traffic(lab, "c-private", "c-native", count=1)
        keys = {k for k, _, _ in got}
        assert set(a["keys"].values()) <= keys and set(b["keys"].values()) <= keys
        listed = json.loads(vmsniff(lab, "list", "--json", "--ovsdb", lab.ovsdb_remote).stdout)
        assert {s["session"] for s in listed} == {a["session"], b["session"]}
        assert {s["reason"] for s in listed} == {"first", "second"}
        assert vmsniff(lab, "cleanup", a["session"][:8]).returncode == 0
        listed = json.loads(vmsniff(lab, "list", "--json").stdout)
        assert [s["session"] for s in listed] == [b["session"]]
    finally:
        vmsniff(lab, "cleanup", "--all")
    assert_clean(lab)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_tear_down(lab: Lab, sig: signal.Signals) -> None:
    proc = start_mirror(lab, "c-private", "--to", RECEIVER_IP)
    assert vms_rows(lab)["mirrors"], "the mirror should exist while it runs"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "mirror removed" in err
    # a session shorter than OVS's 5 s statistics interval does not claim "0 packets"
    assert "OVS had not counted its packets yet" in err
    assert_clean(lab)


def test_kill_9_leaves_an_expiring_session_that_cleanup_expired_removes(lab: Lab) -> None:
    proc = start_mirror(lab, "c-private", "--to", RECEIVER_IP, "--ttl", "1s")
    proc.kill()
    proc.communicate(timeout=10)
    assert vms_rows(lab)["mirrors"]
    time.sleep(1.2)
    listed = json.loads(vmsniff(lab, "list", "--json").stdout)
    assert len(listed) == 1 and listed[0]["expired"] is True
    proc = vmsniff(lab, "cleanup", "--expired", "--json")
    assert len(json.loads(proc.stdout)["removed"]) == 1
    assert_clean(lab)
    assert vmsniff(lab, "cleanup", "--expired").returncode == 0  # idempotent


def test_new_session_removes_expired_ones_first(lab: Lab) -> None:
    old = json.loads(vmsniff(lab, "mirror", "c-private", "--to", RECEIVER_IP, "--detach",
                             "--ttl", "1s", "--json").stdout)  # fmt: skip
    time.sleep(1.2)
    proc = vmsniff(lab, "mirror", "c-native", "--to", RECEIVER_IP, "--duration", "1")
    assert proc.returncode == 0, proc.stderr
    assert f"removed expired vmsniff session {old['session']}" in proc.stderr
    assert_clean(lab)


def test_mirror_limit_is_reported_before_touching_anything(lab: Lab) -> None:
    args = []
    for i in range(31):
        args += ["--", f"--id=@m{i}", "create", "Mirror", f"name=ops-limit-{i}", "select_all=true",
                 "--", "add", "Bridge", "br-int", "mirrors", f"@m{i}"]  # fmt: skip
    vsctl(lab, *args)
    try:
        proc = vmsniff(lab, "mirror", "c-private", "--to", RECEIVER_IP, "--duration", "1")
        assert proc.returncode == 8, proc.stderr
        assert "31 of Open vSwitch's 32 mirrors in use (0 by vmsniff sessions, 31 by others)" in (
            proc.stderr.replace("\n", " ")
        )
        assert_clean(lab)
    finally:
        uuids = vsctl(lab, "--columns=_uuid", "--format=csv", "--no-headings", "find", "Mirror",
                      "name!=ops-mirror").split()  # fmt: skip
        for uuid in uuids:
            vsctl(lab, "remove", "Bridge", "br-int", "mirrors", uuid)


def test_key_of_an_existing_tunnel_is_refused(lab: Lab) -> None:
    vsctl(lab, "add-port", "br-int", "gre-neutron", "--", "set", "Interface", "gre-neutron",
          "type=gre", f"options:remote_ip={RECEIVER_IP}", "options:key=5001")  # fmt: skip
    try:
        proc = vmsniff(lab, "mirror", "c-private", "--to", RECEIVER_IP, "--key", "5000")
        assert proc.returncode == 8
        assert "gre-neutron" in proc.stderr and "take over" in proc.stderr
        assert_clean(lab)
    finally:
        vsctl(lab, "del-port", "br-int", "gre-neutron")


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["c-private", "--to", "receiver"], 2, "not an IP address"),
        (["c-sriov", "--to", RECEIVER_IP], 5, "cannot be mirrored"),
        (["c-private", "--to", RECEIVER_IP, "--bridge", "br-nope"], 3, "br-nope does not exist"),
        (["c-private", "--to", RECEIVER_IP, "--duration", "soon"], 2, "not a duration"),
        (["c-nope", "--to", RECEIVER_IP], 3, "did you mean"),
        (["c-private", "--to", RECEIVER_IP, "--ovsdb", "unix:/nonexistent.sock"], 6, "OVSDB"),
    ],
)
def test_mirror_errors(lab: Lab, args: list[str], code: int, needle: str) -> None:
    proc = vmsniff(lab, "mirror", *args)
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_clean(lab)


def test_dry_run_prints_plan_and_touches_nothing(lab: Lab) -> None:
    proc = vmsniff(lab, "mirror", "c-private", "--to", RECEIVER_IP, "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["dry_run"] is True and plan["ovs_vsctl"].startswith("ovs-vsctl ")
    assert_clean(lab)


def test_cleanup_without_selector_off_a_terminal_refuses(lab: Lab) -> None:
    proc = vmsniff(lab, "cleanup")
    assert proc.returncode == 2 and "--all" in proc.stderr


def test_erspan_sessions_carry_k_and_k_plus_one(lab: Lab) -> None:
    with collector(lab) as got:
        proc = start_mirror(lab, "c-private", "--to", RECEIVER_IP, "--encap", "erspan",
                            "--key", "100", "--duration", "4")  # fmt: skip
        make_traffic(lab, "c-private", "c-native", count=1)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert_clean(lab)
    # GRE with sequence, no key; then the 8-byte ERSPAN type II header (draft-foschiano-erspan):
    # version 1 in the top 4 bits, the 10-bit session id in the low bits of the next 16.
    headers = [bytes.fromhex(str(inner))[:8] for _key, inner, _len in got]
    assert headers and all(h[0] >> 4 == 1 for h in headers)
    sessions = {int.from_bytes(h[2:4], "big") & 0x3FF for h in headers}
    assert sessions == {100, 101}


def test_quiet_mirror_still_prints_the_keys_and_receive_command(lab: Lab) -> None:
    detached = vmsniff(lab, "-q", "mirror", "c-private", "--to", RECEIVER_IP, "--key", "71000000",
                       "--detach")  # fmt: skip
    try:
        assert detached.returncode == 0, detached.stderr
        assert "from-vm key 71000000, to-vm key 71000001" in detached.stdout
        assert "vmsniff receive --key 71000000 --direction both" in detached.stdout
        assert detached.stderr == ""  # -q: no chatter
    finally:
        vmsniff(lab, "cleanup", "--all")
    fg = start_mirror(lab, "c-private", "--to", RECEIVER_IP, "--key", "71000010", "--duration",
                      "1", pre=("-q",))  # fmt: skip
    out, err = fg.communicate(timeout=30)
    assert fg.returncode == 0, err
    assert "vmsniff receive --key 71000010" in fg.head  # type: ignore[attr-defined]
    assert err == ""
    assert_clean(lab)


def test_json_mirror_writes_one_document_and_the_receive_command_on_stderr(lab: Lab) -> None:
    proc = vmsniff(lab, "-q", "mirror", "c-private", "--to", RECEIVER_IP, "--key", "71000020",
                   "--duration", "1", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # exactly one document: json.loads refuses anything more
    assert doc["stopped"] == "duration" and doc["keys"]["from-vm"] == 71000020
    assert "vmsniff receive --key 71000020" in proc.stderr  # for a script, at start
    assert_clean(lab)
