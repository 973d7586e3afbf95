"""`vmsniff resolve` in the lab, offline (libvirt + OVSDB): both plugs and every refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vmsniff.lab.status import env_vars
from vmsniff.lab.switch import vsctl
from vmsniff.lab.topology import Lab

pytestmark = pytest.mark.lab


def run(lab: Lab, *args: str, cloud: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(env_vars(lab))
    if not cloud:
        env.pop("OS_CLOUD", None)
        env.pop("OS_CLIENT_CONFIG_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "vmsniff", *args], capture_output=True, text=True, env=env,
        timeout=60,
    )  # fmt: skip


def resolved(lab: Lab, *args: str) -> dict:  # type: ignore[type-arg]
    proc = run(lab, "resolve", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", ["c-private", "c-native"])
def test_offline_resolve_finds_tap_port_and_bridge(lab: Lab, name: str) -> None:
    vm = lab.vm(name)
    data = resolved(lab, name)
    assert data["server"]["id"] == vm.server_id
    assert data["server"]["instance_name"] == vm.instance_name
    assert data["server"]["host"] == "compute-1" and data["local"] is True
    assert data["sources"] == ["libvirt", "ovsdb"]
    (nic,) = data["nics"]
    assert nic["mac"] == vm.mac
    assert nic["port_id"] == vm.port_id
    assert nic["tap"] == vm.tap
    assert nic["ovs_port"] == vm.ovs_port
    assert nic["bridge"] == "br-int" and nic["tag"] == 1
    assert nic["plug"] == vm.plug.value
    assert nic["sources"] == ["libvirt", "ovsdb"]


def test_offline_resolve_of_a_two_nic_vm_finds_both_plugs(lab: Lab) -> None:
    vm = lab.vm("c-multi")
    data = resolved(lab, "c-multi")
    assert data["server"]["id"] == vm.server_id
    assert data["server"]["instance_name"] == vm.instance_name
    assert data["sources"] == ["libvirt", "ovsdb"]
    assert [
        (n["mac"], n["port_id"], n["tap"], n["ovs_port"], n["bridge"], n["tag"], n["plug"])
        for n in data["nics"]
    ] == [
        (nic.mac, nic.port_id, nic.tap, nic.ovs_port, "br-int", 1, nic.plug.value)
        for nic in vm.nics
    ]
    assert [n["plug"] for n in data["nics"]] == ["ovs", "hybrid"]
    assert all(n["sources"] == ["libvirt", "ovsdb"] for n in data["nics"])
    for nic in vm.nics:  # --nic picks either one, by MAC or by Neutron port id
        for key in (nic.mac, nic.port_id):
            (one,) = resolved(lab, "c-multi", "--nic", key)["nics"]
            assert (one["tap"], one["ovs_port"]) == (nic.tap, nic.ovs_port)


def test_resolve_by_uuid_and_instance_name_and_nic(lab: Lab) -> None:
    vm = lab.vm("c-private")
    assert resolved(lab, vm.server_id)["server"]["name"] == "c-private"
    assert resolved(lab, vm.instance_name)["server"]["name"] == "c-private"
    assert resolved(lab, "c-private", "--nic", vm.mac.upper())["nics"][0]["mac"] == vm.mac
    proc = run(lab, "resolve", "c-private", "--nic", "fa:16:3e:00:00:00")
    assert proc.returncode == 3 and "no NIC matches" in proc.stderr


def test_human_output_is_a_table(lab: Lab) -> None:
    proc = run(lab, "resolve", "c-private")
    assert proc.returncode == 0, proc.stderr
    vm = lab.vm("c-private")
    for text in (vm.tap, vm.ovs_port, "hybrid", "instance-00000001", "libvirt+ovsdb"):
        assert text in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        (["c-privat"], 3, ["no libvirt domain", "did you mean: c-private"]),
        (["c-stopped"], 5, ["shutoff", "not running"]),
        (["c-twin"], 4, ["2 domains", "use the UUID"]),
        (["c-private", "--ovsdb", "unix:/nonexistent/db.sock"], 6, ["does not exist", "--ovsdb"]),
        (["c-private", "--ovsdb", "tcp:127.0.0.1:9"], 6, ["cannot reach OVSDB"]),
        (["c-private", "--libvirt", "test:///nonexistent/node.xml"], 6, ["libvirt", "--libvirt"]),
        (["c-private", "--no-libvirt", "--offline"], 2, ["nothing to resolve with"]),
    ],
)
def test_refusals_have_distinct_codes_and_say_what_to_do(
    lab: Lab, args: list[str], code: int, needles: list[str]
) -> None:
    proc = run(lab, "resolve", *args)
    assert proc.returncode == code, proc.stderr
    for needle in needles:
        assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ambiguous_json_lists_candidates(lab: Lab) -> None:
    proc = run(lab, "resolve", "c-twin", "--json")
    assert proc.returncode == 4
    error = json.loads(proc.stdout)
    assert error["error"] == "Ambiguous" and error["exit_code"] == 4
    twins = sorted(g.server_id for g in lab.ghosts if g.name == "c-twin")
    assert sorted(c.split()[0] for c in error["candidates"]) == twins
    for twin in twins:
        assert twin in proc.stderr


def test_sriov_nic_is_reported_as_not_on_ovs(lab: Lab) -> None:
    data = resolved(lab, "c-sriov")
    (nic,) = data["nics"]
    assert nic["plug"] == "sriov" and nic["tap"] is None and nic["ovs_port"] is None


def test_disagreeing_sources_are_a_conflict(lab: Lab) -> None:
    vm = lab.vm("c-native")
    wrong = "00000000-0000-4000-8000-000000000bad"
    vsctl(lab, "set", "Interface", vm.ovs_port, f"external_ids:vm-uuid={wrong}")
    try:
        proc = run(lab, "resolve", "c-native")
    finally:
        vsctl(lab, "set", "Interface", vm.ovs_port, f"external_ids:vm-uuid={vm.server_id}")
    assert proc.returncode == 10, proc.stderr
    assert wrong in proc.stderr and vm.ovs_port in proc.stderr
