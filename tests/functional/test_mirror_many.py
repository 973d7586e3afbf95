"""`mirror VM VM VM` over a three-host ML2/OVS lab into one pcapng: real switches, real GRE.

Each VM NIC's frames in the receiver's merged pcapng must be byte for byte what a tcpdump
inside that VM's namespace saw, in order per flow, under an interface named after the NIC
and with the right direction; a session that cannot be made on one host leaves nothing on
any host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.functional.conftest import _require_lab_tools, unique_prefix
from tests.functional.frames import inside_capture, same_run_per_flow
from tests.functional.test_lab_hosts import host_env
from vmsniff.dissect import read_file
from vmsniff.lab.build import build
from vmsniff.lab.switch import vsctl
from vmsniff.lab.teardown import teardown
from vmsniff.lab.topology import RECEIVER_IP, Lab, lab_for
from vmsniff.lab.traffic import make_traffic

pytestmark = pytest.mark.lab

VMS = ("c-private", "c-native", "c-multi")


@pytest.fixture(scope="module")
def lab3() -> Iterator[Lab]:
    """Three ML2/OVS hosts: c-private on compute-1, c-native on compute-2, c-multi (two NICs)
    on compute-3."""
    _require_lab_tools()
    the_lab = lab_for(unique_prefix("m3"), hosts=3)
    try:
        build(the_lab)
        yield the_lab
    finally:
        teardown(the_lab)


def vmsniff(*args: str, env: dict[str, str], ns: str | None = None) -> list[str]:
    pre = ["ip", "netns", "exec", ns] if ns else []
    return [*pre, sys.executable, "-m", "vmsniff", *args]


def ours(lab: Lab) -> dict[str, list[str]]:
    """vmsniff's ports and mirrors left on each host."""
    left = {}
    for hv in lab.hypervisors:
        ports = [p for p in vsctl(hv, "list-ports", "br-int").split() if p.startswith("vms")]
        mirrors = [m for m in vsctl(hv, "--columns=name", "--format=csv", "--no-headings",
                                    "list", "Mirror").split() if "vmsniff" in m]  # fmt: skip
        if ports or mirrors:
            left[hv.name] = ports + mirrors
    return left


def _frames(path: Path) -> list[bytes]:
    return [bytes(f.data) for f in read_file(str(path))]


@pytest.mark.parametrize("shared", [False, True], ids=["dedicated", "shared"])
def test_three_vms_on_three_hosts_into_one_pcapng(lab3: Lab, tmp_path: Path, shared: bool) -> None:
    env = host_env(lab3, "compute-1")
    manifest = tmp_path / "session.json"
    merged = tmp_path / "session.pcapng"
    truth = {
        f"{vm.name}/{nic.device}": (vm, nic, tmp_path / f"{vm.name}-{nic.device}.pcap")
        for vm in (lab3.vm(n) for n in VMS)
        for nic in vm.nics
    }
    with ExitStack() as stack:
        for vm, nic, path in truth.values():
            stack.enter_context(inside_capture(vm.namespace, nic.device, path))
        args = ["mirror", *VMS, "--to", RECEIVER_IP, "--duration", "9", "--manifest",
                str(manifest), "--json"] + (["--shared-mirrors"] if shared else [])  # fmt: skip
        mirror = subprocess.Popen(vmsniff(*args, env=env), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        try:
            assert mirror.stderr is not None
            started = [mirror.stderr.readline() for _ in range(6)]
            assert started[0].startswith("session "), "".join(started) + mirror.stderr.read()
            assert any("vmsniff receive --manifest" in line for line in started), started
            rx = subprocess.Popen(
                vmsniff("receive", "--manifest", str(manifest), "-w", str(merged), "--duration",
                        "6", "--json", env=env, ns=lab3.receiver_ns),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
            time.sleep(1.0)
            make_traffic(lab3, "c-private", "c-native", count=2)
            make_traffic(lab3, "c-multi", "c-private", count=2)
            make_traffic(lab3, "c-multi", "c-native", source_nic="eth1", count=2)
            rx_out, rx_err = rx.communicate(timeout=60)
            out, err = mirror.communicate(timeout=60)
        finally:
            for proc in (mirror,):
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    assert rx.returncode == 0, rx_err
    assert mirror.returncode == 0, err
    summary = json.loads(out)
    assert summary["stopped"] == "duration"
    assert [h["host"] for h in summary["hosts"]] == ["compute-1", "compute-2", "compute-3"]
    assert summary["hosts"][2]["shared"] is shared
    assert json.loads(rx_out)["malformed"] == 0
    assert not ours(lab3), "vmsniff rows left behind"

    got: dict[str, dict[str, list[bytes]]] = {}
    for frame in read_file(str(merged)):
        assert frame.interface in truth, frame.interface
        assert frame.direction in ("from-vm", "to-vm")
        got.setdefault(frame.interface, {}).setdefault(frame.direction, []).append(
            bytes(frame.data)
        )
    assert set(got) == set(truth)
    for name, (_vm, nic, path) in truth.items():
        seen = _frames(path)
        mac = bytes.fromhex(nic.mac.replace(":", ""))
        sent = [f for f in seen if f[6:12] == mac]
        received = [f for f in seen if f[6:12] != mac]
        from_vm, to_vm = got[name].get("from-vm", []), got[name].get("to-vm", [])
        assert len(from_vm) >= 4 and len(to_vm) >= 4, (name, len(from_vm), len(to_vm))
        assert same_run_per_flow(from_vm, sent), f"{name}: from-vm frames differ from what it sent"
        assert same_run_per_flow(to_vm, received), f"{name}: to-vm frames differ from what it got"


def _config_with(lab: Lab, tmp_path: Path, host: str, ovsdb: str) -> dict[str, str]:
    env = host_env(lab, "compute-1")
    text = Path(env["VMSNIFF_CONFIG"]).read_text()
    start = text.index(f'[hosts."{host}"]')
    end = text.find("[hosts.", start + 1)
    block = text[start : None if end < 0 else end]
    lines = [
        f'ovsdb = "{ovsdb}"' if line.startswith("ovsdb") else line for line in block.splitlines()
    ]
    config = tmp_path / "vmsniff.toml"
    config.write_text(text.replace(block, "\n".join(lines) + "\n"))
    return {**env, "VMSNIFF_CONFIG": str(config)}


def test_an_unreachable_host_is_named_and_nothing_is_made_anywhere(
    lab3: Lab, tmp_path: Path
) -> None:
    env = _config_with(lab3, tmp_path, "compute-3", f"unix:/run/{lab3.prefix}/no-such.sock")
    proc = subprocess.run(vmsniff("mirror", *VMS, "--to", RECEIVER_IP, "--duration", "2",
                                  "--manifest", str(tmp_path / "m.json"), env=env),
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 6, proc.stderr
    assert "compute-3" in proc.stderr and "no-such.sock" in proc.stderr
    assert not ours(lab3)
    assert not (tmp_path / "m.json").exists()


def test_a_full_host_is_named_and_nothing_is_made_anywhere(lab3: Lab, tmp_path: Path) -> None:
    hv = lab3.hypervisor("compute-2")
    args = []
    for i in range(31):
        args += ["--", f"--id=@m{i}", "create", "Mirror", f"name=ops-limit-{i}", "select_all=true",
                 "--", "add", "Bridge", "br-int", "mirrors", f"@m{i}"]  # fmt: skip
    vsctl(hv, *args)
    try:
        env = host_env(lab3, "compute-1")
        proc = subprocess.run(vmsniff("mirror", *VMS, "--to", RECEIVER_IP, "--duration", "2",
                                      "--manifest", str(tmp_path / "m.json"), env=env),
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert proc.returncode == 8, proc.stderr
        assert "session on host compute-2 needs 2 more" in proc.stderr.replace("\n", " ")
        assert not ours(lab3)
        assert len(vsctl(hv, "get", "Bridge", "br-int", "mirrors").split(",")) == 31
    finally:
        uuids = vsctl(hv, "--columns=_uuid", "--format=csv", "--no-headings", "list",
                      "Mirror").split()  # fmt: skip
        for uuid in uuids:
            vsctl(hv, "remove", "Bridge", "br-int", "mirrors", uuid)


def test_selectors_pick_the_vms_of_a_host_and_a_port(lab3: Lab, tmp_path: Path) -> None:
    env = host_env(lab3, "compute-1")
    multi = lab3.vm("c-multi")
    proc = subprocess.run(vmsniff("mirror", "--host", "compute-3", "--to", RECEIVER_IP,
                                  "--dry-run", "--json", env=env),
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert [n["name"] for n in plan["manifest"]["nics"]] == ["c-multi/eth0", "c-multi/eth1"]
    proc = subprocess.run(vmsniff("mirror", "--port-id", multi.nics[1].port_id, "--to",
                                  RECEIVER_IP, "--dry-run", "--json", env=env),
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert [n["name"] for n in plan["manifest"]["nics"]] == ["c-multi/eth1"]
    assert [h["host"] for h in plan["hosts"]] == ["compute-3"]
    every = ["c-multi/eth0", "c-multi/eth1", "c-native/eth0", "c-private/eth0"]
    for selector in (["--project", lab3.project_id], ["--network", "private"]):
        proc = subprocess.run(vmsniff("mirror", *selector, "--to", RECEIVER_IP, "--dry-run",
                                      "--json", env=env),
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert sorted(n["name"] for n in json.loads(proc.stdout)["manifest"]["nics"]) == every
        # the project's VMs that cannot be mirrored are skipped, saying why
        assert "c-stopped" in proc.stderr and "SHUTOFF" in proc.stderr
    assert not ours(lab3)
    assert os.listdir(tmp_path) == []


def test_kill_9_then_cleanup_expired_on_every_host_leaves_nothing(
    lab3: Lab, tmp_path: Path
) -> None:
    env = host_env(lab3, "compute-1")
    argv = vmsniff("mirror", *VMS, "--to", RECEIVER_IP, "--manifest", str(tmp_path / "m.json"),
                   env=env)  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("session ")
        time.sleep(0.5)
    finally:
        proc.kill()
        proc.communicate()
    assert set(ours(lab3)) == {"compute-1", "compute-2", "compute-3"}
    listed = subprocess.run(vmsniff("list", "--all-hosts", "--json", env=env), capture_output=True,
                            text=True, env=env, timeout=60)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    states = {(s["switch_host"], s["state"]) for s in json.loads(listed.stdout)}
    assert states == {("compute-1", "dead"), ("compute-2", "dead"), ("compute-3", "dead")}
    done = subprocess.run(vmsniff("cleanup", "--expired", "--all-hosts", "--json", env=env),
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["removed"]) == 3
    assert not ours(lab3)


FRAMES_SCRIPT = """
import json, sys
from vmsniff.dissect.printer import frame_json
from vmsniff.frames import receive_frames
from vmsniff.pipeline.sinks import OutputOptions
from vmsniff.receive import ReceiveOptions, read_manifest

opts = ReceiveOptions(OutputOptions(write=sys.argv[2], fmt="pcapng"),
                      manifest=read_manifest(sys.argv[1]))
for frame in receive_frames(opts, duration=float(sys.argv[3])):
    print(json.dumps(frame_json(frame)), flush=True)
"""


def test_receive_frames_gives_a_live_multi_vm_session_per_nic(lab3: Lab, tmp_path: Path) -> None:
    """The packet API over a live receive (vmsniff.frames): the frames of a three-host session
    as the receiver writes them, each under its VM NIC."""
    env = host_env(lab3, "compute-1")
    manifest, merged = tmp_path / "s.json", tmp_path / "s.pcapng"
    mirror = subprocess.Popen(
        vmsniff("mirror", "c-private", "c-native", "--to", RECEIVER_IP, "--duration", "8",
                "--manifest", str(manifest), env=env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert mirror.stdout is not None and mirror.stdout.readline().startswith("session ")
        api = subprocess.Popen(
            ["ip", "netns", "exec", lab3.receiver_ns, sys.executable, "-c", FRAMES_SCRIPT,
             str(manifest), str(merged), "5"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        time.sleep(1.0)
        make_traffic(lab3, "c-private", "c-native", count=2)
        out, err = api.communicate(timeout=60)
        mirror.communicate(timeout=60)
    finally:
        if mirror.poll() is None:
            mirror.kill()
            mirror.communicate()
    assert api.returncode == 0, err
    from vmsniff.dissect.printer import frame_json

    got = [json.loads(line) for line in out.splitlines()]
    assert got == [frame_json(f) for f in read_file(str(merged))] and len(got) >= 32
    assert {f["interface"] for f in got} == {"c-private/eth0", "c-native/eth0"}
    assert {f["direction"] for f in got} == {"from-vm", "to-vm"}
    assert not ours(lab3)
