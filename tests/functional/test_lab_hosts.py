"""`lab up --hosts 2`: two real hypervisors, VMs on each, resolve/capture/mirror per host."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.conftest import _require_lab_tools, unique_prefix
from tests.functional.test_mirror import collector
from vmsniff.lab.build import build
from vmsniff.lab.links import create_namespace, existing_namespaces
from vmsniff.lab.status import status
from vmsniff.lab.switch import start_daemons, vsctl
from vmsniff.lab.teardown import teardown
from vmsniff.lab.topology import RECEIVER_IP, Hypervisor, Lab, lab_for
from vmsniff.lab.traffic import make_traffic

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab2() -> Iterator[Lab]:
    """A two-host ML2/OVS lab for this module, removed even when tests fail."""
    _require_lab_tools()
    the_lab = lab_for(unique_prefix("h2"), hosts=2)
    try:
        build(the_lab)
        yield the_lab
    finally:
        teardown(the_lab)


def vmsniff(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmsniff", *args], capture_output=True,
                          text=True, timeout=120, env=env)  # fmt: skip


def host_env(lab: Lab, host: str) -> dict[str, str]:
    """This process's environment (without OS_*) plus `lab env --host HOST`."""
    proc = vmsniff("lab", "env", "--prefix", lab.prefix, "--host", host)
    assert proc.returncode == 0, proc.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "VMSNIFF_"))}
    for line in proc.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0]
    return env


def in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-m", "vmsniff", *args]


def _ours(prefix: str) -> set[str]:
    return {ns for ns in existing_namespaces() if ns.startswith(f"{prefix}-")}


def test_status_lists_the_hypervisors_and_each_vms_host(lab2: Lab) -> None:
    proc = vmsniff("lab", "status", "--prefix", lab2.prefix, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "running" and data["hosts"] == 2 and data["ovn"] is False
    assert [(h["host"], h["namespace"], h["ovsdb"]) for h in data["hypervisors"]] == [
        ("compute-1", f"{lab2.prefix}-hv", f"unix:/run/{lab2.prefix}/db.sock"),
        ("compute-2", f"{lab2.prefix}-hv2", f"unix:/run/{lab2.prefix}/compute-2/db.sock"),
    ]
    for h in data["hypervisors"]:
        assert h["management_up"] and all(d["pid"] for d in h["daemons"].values()), h
    assert {vm["name"]: vm["host"] for vm in data["vms"]} == {
        "c-private": "compute-1",
        "c-native": "compute-2",
        "c-multi": "compute-1",
    }
    assert all(data["namespaces"].values()) and f"{lab2.prefix}-ul" in data["namespaces"]
    table = vmsniff("lab", "status", "--prefix", lab2.prefix, env={**os.environ, "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    assert f"compute-2: ns {lab2.prefix}-hv2, OVSDB unix:/run/{lab2.prefix}/compute-2/db.sock" in (
        table.stdout
    )
    assert "VMs c-native" in table.stdout and "VMs c-private, c-multi" in table.stdout
    # Each VM's ports are on its own host's br-int only.
    for hv in lab2.hypervisors:
        ports = set(vsctl(hv, "list-ports", "br-int").split())
        mine = {nic.ovs_port for vm in lab2.vms_on(hv) for nic in vm.nics}
        others = {nic.ovs_port for vm in lab2.vms for nic in vm.nics} - mine
        assert mine <= ports and not ports & others, hv.name


def test_vms_on_different_hosts_reach_each_other(lab2: Lab) -> None:
    result = make_traffic(lab2, "c-private", "c-native", count=2)
    assert all(c["replies"] == 2 for c in result["traffic"].values()), result


def test_lab_env_host_names_a_host_the_lab_has(lab2: Lab) -> None:
    proc = vmsniff("lab", "env", "--prefix", lab2.prefix, "--host", "compute-9")
    assert proc.returncode == 2 and "no host 'compute-9'" in proc.stderr


@pytest.mark.parametrize("me", ["compute-2", "compute-1"])
def test_resolve_finds_the_ovsdb_of_the_vms_host(lab2: Lab, me: str) -> None:
    """From compute-2 itself, and from compute-1 through the lab's config file."""
    env = host_env(lab2, me)
    assert env["VMSNIFF_CONFIG"] == str(lab2.endpoints_config)
    hv2 = lab2.hypervisor("compute-2")
    proc = subprocess.run(in_ns(lab2.hypervisor(me).namespace, "resolve", "c-native", "--json"),
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["server"]["host"] == "compute-2"
    assert data["local"] is (me == "compute-2")
    assert data["ovsdb"] == hv2.ovsdb_remote and data["libvirt_uri"] == hv2.libvirt_uri
    assert data["sources"] == ["nova", "libvirt", "ovsdb"]
    assert data["nics"][0]["ovs_port"] == lab2.vm("c-native").ovs_port
    assert data["nics"][0]["ofport"] > 0


def test_capture_in_the_second_hosts_namespace(lab2: Lab, tmp_path: Path) -> None:
    env = host_env(lab2, "compute-2")
    out = tmp_path / "c-native.pcapng"
    proc = subprocess.Popen(
        in_ns(lab2.hypervisor("compute-2").namespace, "capture", "c-native", "-c", "6", "-w",
              str(out), "icmp"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("capturing"), line + proc.stderr.read()
        make_traffic(lab2, "c-private", "c-native", count=3)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    fields = subprocess.run(
        ["tshark", "-r", str(out), "-T", "fields", "-e", "icmp.type", "-e", "ip.src"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    pairs = sorted(tuple(f.split("\t")) for f in fields if f)
    private, native = lab2.vm("c-private").address, lab2.vm("c-native").address
    assert pairs == [("0", native)] * 3 + [("8", private)] * 3


@pytest.mark.parametrize(("vm", "host", "key"), [("c-private", "compute-1", 600),
                                                  ("c-native", "compute-2", 700)])  # fmt: skip
def test_mirror_from_each_host_reaches_the_receiver(
    lab2: Lab, vm: str, host: str, key: int
) -> None:
    env = host_env(lab2, host)
    env.pop("OS_CLOUD", None)  # offline: libvirt + OVSDB of the host
    with collector(lab2) as got:
        proc = subprocess.Popen(
            in_ns(lab2.hypervisor(host).namespace, "mirror", vm, "--to", RECEIVER_IP, "--key",
                  str(key), "--duration", "4"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert line.startswith("mirroring"), line + proc.stderr.read()
            time.sleep(0.3)
            make_traffic(lab2, "c-private", "c-native", count=2)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
    keys = [k for k, _, _ in got]
    # 4 kinds x 2 round trips each way, at least, and nothing but this session's keys: the
    # GRE between the hosts' br-int never reaches the receiver (static forwarding entries).
    assert keys.count(key) >= 8 and keys.count(key + 1) >= 8, keys
    assert set(keys) == {key, key + 1}
    assert not [p for p in vsctl(lab2.hypervisor(host), "list-ports", "br-int").split()
                if p.startswith("vms")]  # fmt: skip


def test_up_and_down_through_the_cli_leave_nothing(fresh_lab_prefix: str) -> None:
    proc = vmsniff("lab", "up", "--prefix", fresh_lab_prefix, "--hosts", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "running" and len(data["hypervisors"]) == 2
    the_lab = lab_for(fresh_lab_prefix, hosts=2)
    pids = [d["pid"] for h in data["hypervisors"] for d in h["daemons"].values()]
    proc = vmsniff("lab", "down", "--prefix", fresh_lab_prefix, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert sorted(report["processes_stopped"]) == [
        "cloud", "compute-2/ovs-vswitchd", "compute-2/ovsdb-server", "ovs-vswitchd",
        "ovsdb-server",
    ]  # fmt: skip
    assert set(report["namespaces_removed"]) == set(the_lab.namespaces)
    assert not _ours(fresh_lab_prefix) and not the_lab.rundir.exists()
    for hv in the_lab.hypervisors:
        assert not Path(f"/sys/class/net/{hv.mgmt_root_device}").exists()
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}/cmdline").exists()
            or not Path(f"/proc/{pid}/cmdline").read_bytes()
        )  # gone, or a zombie (empty cmdline)


def test_down_finds_a_crashed_multi_host_lab_without_its_state(fresh_lab_prefix: str) -> None:
    """Host 3's namespace and daemons, no state file: `lab down` (no --hosts) removes them."""
    third = Hypervisor(fresh_lab_prefix, 3)
    lab_for(fresh_lab_prefix).rundir.mkdir(parents=True)
    create_namespace(third.namespace)
    create_namespace(f"{fresh_lab_prefix}-ul")
    start_daemons(third)
    pid = int(third.pidfile("ovs-vswitchd").read_text())
    proc = vmsniff("lab", "down", "--prefix", fresh_lab_prefix, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["namespaces_removed"]) == {third.namespace, f"{fresh_lab_prefix}-ul"}
    assert "compute-3/ovs-vswitchd" in report["processes_stopped"]
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split(") ", 1)[1].startswith("Z")
    assert not _ours(fresh_lab_prefix) and not lab_for(fresh_lab_prefix).rundir.exists()


def test_a_failing_multi_host_up_cleans_up_after_itself(
    fresh_lab_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vmsniff.lab.build as build_module

    def broken(lab: Lab) -> None:
        raise RuntimeError("injected failure after both hosts' daemons started")

    monkeypatch.setattr(build_module, "_host_tunnels", broken)
    the_lab = lab_for(fresh_lab_prefix, hosts=2)
    with pytest.raises(RuntimeError, match="injected"):
        build(the_lab)
    assert not _ours(fresh_lab_prefix) and not the_lab.rundir.exists()
    assert status(the_lab)["status"] == "absent"


def test_traffic_between_hosts_is_never_flooded_to_the_receiver(lab2: Lab, tmp_path: Path) -> None:
    """Static forwarding entries: even right after the underlay bridge forgot what it had
    learnt, no frame between two hosts reaches the receiver's eth0 (a promiscuous capture
    there would show it to `vmsniff receive` and tcpdump users as foreign traffic)."""
    ul = lab2.underlay_ns
    subprocess.run(["ip", "netns", "exec", ul, "bridge", "fdb", "flush", "dev", "br-ul",
                    "dynamic"], check=True, capture_output=True)  # fmt: skip
    pcap = tmp_path / "rx.pcap"
    dump = subprocess.Popen(
        ["ip", "netns", "exec", lab2.receiver_ns, "tcpdump", "-i", "eth0", "-U", "-w",
         str(pcap), "ip"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert dump.stderr is not None
        assert "listening" in dump.stderr.readline()
        time.sleep(0.5)  # tcpdump says so a moment before its socket sees every frame
        result = make_traffic(lab2, "c-private", "c-native", count=2)
        time.sleep(0.5)
    finally:
        dump.terminate()
        dump.communicate(timeout=10)
    assert all(c["replies"] == 2 for c in result["traffic"].values()), result
    seen = subprocess.run(["tcpdump", "-nr", str(pcap)], capture_output=True, text=True,
                          check=True).stdout.splitlines()  # fmt: skip
    assert seen == [], seen[:5]


def test_one_process_talks_to_each_hosts_ovsdb_on_its_own_connection(lab2: Lab) -> None:
    """ovsdbapp keeps an API class's connection in a class attribute: without a class per
    connection, the second host's API answered from the first host's database."""
    from vmsniff.ovs.connection import ovsdb

    seen = []
    for hv in lab2.hypervisors:
        with ovsdb(hv.ovsdb_remote) as api:
            (row,) = api.tables["Open_vSwitch"].rows.values()
            seen.append((api.ovsdb_connection.idl._session.remotes, row.uuid))
    assert seen[0][0] != seen[1][0], seen
    assert seen[0][1] != seen[1][1], seen


def test_extra_vms_are_spread_over_the_hosts_and_reach_each_other(fresh_lab_prefix: str) -> None:
    proc = vmsniff("lab", "up", "--prefix", fresh_lab_prefix, "--hosts", "2", "--extra-vms",
                   "3", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "running" and data["extra_vms"] == 3
    assert {vm["name"]: vm["host"] for vm in data["vms"]} == {
        "c-private": "compute-1", "c-native": "compute-2", "c-multi": "compute-1",
        "c-extra-1": "compute-2", "c-extra-2": "compute-1", "c-extra-3": "compute-2",
    }  # fmt: skip
    the_lab = lab_for(fresh_lab_prefix, hosts=2, extra_vms=3)
    result = make_traffic(the_lab, "c-extra-1", "c-extra-2", count=2)
    assert all(c["replies"] == 2 for c in result["traffic"].values()), result
    env = host_env(the_lab, "compute-1")
    proc = vmsniff("resolve", "c-extra-3", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    resolved = json.loads(proc.stdout)
    assert resolved["server"]["host"] == "compute-2"
    assert resolved["nics"][0]["ovs_port"] == the_lab.vm("c-extra-3").nics[0].ovs_port
    # lab down finds them without the state file
    the_lab.state_file.unlink()
    proc = vmsniff("lab", "down", "--prefix", fresh_lab_prefix, "--json")
    assert proc.returncode == 0, proc.stderr
    assert {f"{fresh_lab_prefix}-c-extra-{k}" for k in (1, 2, 3)} <= set(
        json.loads(proc.stdout)["namespaces_removed"]
    )
    assert not _ours(fresh_lab_prefix) and not the_lab.rundir.exists()
