"""`vmsniff resolve` in the lab through the stand-in cloud: real openstacksdk over HTTP.

Each resolve runs as its own process (``python -m vmsniff``), as an operator runs it: that
keeps openstacksdk's deprecation warnings out of pytest (which turns warnings into errors)
and tests the whole path, from option parsing to exit code. The stand-in counts requests
(``/_stand-in/requests``), so the number of API calls per resolve is asserted, not assumed;
docs/resolve.md documents the same numbers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail
from vmsniff.lab.cloudsetup import MEMBER_CLOUD
from vmsniff.lab.status import env_vars
from vmsniff.lab.topology import HOST, LOCAL_VLAN, OTHER_PROJECT, PROJECT_NAME, Lab

pytestmark = pytest.mark.lab

SOURCES = ["nova", "libvirt", "ovsdb"]
# What one resolve by name costs with --all-projects (or by a name found in the caller's own
# project): identity discovery, token, compute discovery, servers/detail?name=, ports by
# device_id, the port's network. docs/resolve.md, "API calls per resolve".
CALLS_ALL_PROJECTS = {
    "GET /identity/v3": 1,
    "POST /identity/v3/auth/tokens": 1,
    "GET /compute/v2.1": 1,
    "GET /compute/v2.1/servers/detail": 1,
    "GET /network/v2.0/ports": 1,
    "GET /network/v2.0/networks/{id}": 1,
}


@pytest.fixture
def cloud_lab(lab: Lab) -> Lab:
    """The session lab, provided its stand-in cloud is up (``lab up`` starts it)."""
    if "VMSNIFF_LAB_CLOUD_URL" not in env_vars(lab):
        skip_or_fail(f"the lab {lab.prefix} has no stand-in cloud (no {lab.rundir}/cloud.port)")
    return lab


def run(lab: Lab, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """``python -m vmsniff ARGS`` with the lab's environment (cloud included) and ``extra_env``.

    The caller's OS_* variables are dropped and VMSNIFF_CONFIG points at a file that does not
    exist, so that no clouds.yaml or config.toml of the machine running the tests leaks in.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "VMSNIFF_"))}
    env.update(env_vars(lab))
    env["VMSNIFF_CONFIG"] = str(lab.rundir / "no-such-config.toml")
    env.update(extra_env)
    proc = subprocess.run(
        [sys.executable, "-m", "vmsniff", *args], capture_output=True, text=True, env=env,
        timeout=60,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def resolved(lab: Lab, *args: str, **extra_env: str) -> dict[str, Any]:
    proc = run(lab, "resolve", *args, "--json", **extra_env)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def flat(text: str) -> str:
    """Text with every run of whitespace made one space (rich wraps long lines)."""
    return " ".join(text.split())


def _counter(lab: Lab, method: str) -> dict[str, Any]:
    url = env_vars(lab)["VMSNIFF_LAB_CLOUD_URL"] + "/_stand-in/requests"
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as resp:
        body = resp.read()
    data: dict[str, Any] = json.loads(body) if body else {}
    return data


def api_calls(lab: Lab, *args: str, code: int = 0) -> dict[str, int]:
    """Reset the stand-in's counter, run ``vmsniff resolve ARGS``, return the requests made."""
    _counter(lab, "DELETE")
    proc = run(lab, "resolve", *args)
    assert proc.returncode == code, proc.stderr
    counts: dict[str, int] = _counter(lab, "GET")["counts"]
    return counts


# -- success -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["c-private", "c-native"])
def test_cloud_resolve_finds_tap_port_bridge_and_network(cloud_lab: Lab, name: str) -> None:
    lab, vm = cloud_lab, cloud_lab.vm(name)
    data = resolved(lab, name)
    assert data["server"] == {
        "id": vm.server_id,
        "name": name,
        "project_id": lab.project_id,
        "project_name": None,  # Nova gives the project id only
        "status": "ACTIVE",
        "host": HOST,
        "instance_name": vm.instance_name,
    }
    assert data["local"] is True
    assert data["ovsdb"] == lab.ovsdb_remote and data["libvirt_uri"] == lab.libvirt_uri
    assert data["sources"] == SOURCES
    assert data["warnings"] == []
    (nic,) = data["nics"]
    assert nic == {
        "mac": vm.mac,
        "port_id": vm.port_id,
        "network_id": lab.network_id,
        "network_name": "private",
        "fixed_ips": [vm.address],
        "tap": vm.tap,
        "ovs_port": vm.ovs_port,
        "bridge": "br-int",
        "ofport": nic["ofport"],
        "tag": LOCAL_VLAN,
        "mtu": 1500,
        "plug": vm.plug.value,
        "vnic_type": "normal",
        "sources": SOURCES,
        "notes": [],  # matched by iface-id: nothing inferred
    }
    assert isinstance(nic["ofport"], int) and nic["ofport"] > 0


def test_cloud_resolve_of_a_two_nic_vm_lists_both_ports(cloud_lab: Lab) -> None:
    lab, vm = cloud_lab, cloud_lab.vm("c-multi")
    data = resolved(lab, "c-multi")
    assert data["server"]["id"] == vm.server_id and data["server"]["host"] == HOST
    assert data["sources"] == SOURCES and data["warnings"] == []
    assert {
        n["mac"]: (n["port_id"], n["fixed_ips"], n["network_name"], n["tap"], n["ovs_port"],
                   n["tag"], n["plug"], n["sources"], n["notes"])
        for n in data["nics"]
    } == {
        nic.mac: (nic.port_id, [nic.address], "private", nic.tap, nic.ovs_port, LOCAL_VLAN,
                  nic.plug.value, SOURCES, [])
        for nic in vm.nics
    }  # fmt: skip
    # In the guest's order (libvirt's devices), whatever order Neutron lists the ports in.
    assert [n["mac"] for n in data["nics"]] == [nic.mac for nic in vm.nics]
    # Two ports on one network cost what one does: one port listing, one network lookup.
    assert api_calls(lab, "c-multi", "--all-projects") == CALLS_ALL_PROJECTS
    (second,) = resolved(lab, "c-multi", "--nic", vm.nics[1].port_id)["nics"]
    assert second["tap"] == vm.nics[1].tap and second["plug"] == "hybrid"


def test_cloud_resolve_by_server_uuid(cloud_lab: Lab) -> None:
    vm = cloud_lab.vm("c-native")
    data = resolved(cloud_lab, vm.server_id)
    assert data["server"]["name"] == "c-native" and data["server"]["id"] == vm.server_id
    assert data["sources"] == SOURCES
    assert data["nics"][0]["tap"] == vm.tap


def test_human_output_names_sources_and_the_row(cloud_lab: Lab) -> None:
    vm = cloud_lab.vm("c-private")
    proc = run(cloud_lab, "resolve", "c-private")
    assert proc.returncode == 0, proc.stderr
    for text in ("sources: nova, libvirt, ovsdb", vm.tap, vm.ovs_port, vm.address, "private"):
        assert text in proc.stdout
    assert "nova+libvirt+ovsdb" in proc.stdout
    assert proc.stderr == ""


def test_member_without_host_attribute_succeeds_with_host_flag(cloud_lab: Lab) -> None:
    vm = cloud_lab.vm("c-private")
    proc = run(cloud_lab, "resolve", "c-private", "--os-cloud", MEMBER_CLOUD)
    assert proc.returncode == 7, proc.stderr
    message = flat(proc.stderr)
    assert "OS-EXT-SRV-ATTR:host" in message and "needs the admin role" in message
    assert "--host" in message
    data = resolved(cloud_lab, "c-private", "--os-cloud", MEMBER_CLOUD, "--host", HOST)
    assert data["server"]["host"] == HOST and data["local"] is True
    # The member does not see OS-EXT-SRV-ATTR:instance_name: libvirt (found by UUID) tells.
    assert data["server"]["instance_name"] == vm.instance_name
    assert data["sources"] == SOURCES
    assert data["nics"][0]["ovs_port"] == vm.ovs_port
    assert data["warnings"] == []


def test_offline_with_a_cloud_configured_asks_no_api(cloud_lab: Lab) -> None:
    vm = cloud_lab.vm("c-private")
    assert api_calls(cloud_lab, "c-private", "--offline") == {}
    data = resolved(cloud_lab, "c-private", "--offline")
    assert data["sources"] == ["libvirt", "ovsdb"]
    (nic,) = data["nics"]
    assert (nic["tap"], nic["ovs_port"], nic["port_id"]) == (vm.tap, vm.ovs_port, vm.port_id)
    assert nic["network_name"] is None and nic["fixed_ips"] == []  # only Neutron knows these
    assert nic["sources"] == ["libvirt", "ovsdb"]


# -- refusals ------------------------------------------------------------------------------


def test_unknown_vm_suggests_close_names(cloud_lab: Lab) -> None:
    proc = run(cloud_lab, "resolve", "c-privat")
    assert proc.returncode == 3, proc.stderr
    assert "no server named 'c-privat'" in proc.stderr
    assert "in any project" in proc.stderr  # the admin's miss was retried in every project
    assert "did you mean: c-private" in proc.stderr


def test_twins_in_two_projects_are_listed_with_ids_projects_and_hosts(cloud_lab: Lab) -> None:
    lab = cloud_lab
    proc = run(lab, "resolve", "c-twin", "--json")
    assert proc.returncode == 4, proc.stderr
    assert "2 servers are named 'c-twin'" in proc.stderr and "use the server id" in proc.stderr
    error = json.loads(proc.stdout)
    assert error["error"] == "Ambiguous" and error["exit_code"] == 4
    twins = {g.server_id: lab.project_uuid(g.project) for g in lab.ghosts if g.name == "c-twin"}
    assert {lab.project_uuid(PROJECT_NAME), lab.project_uuid(OTHER_PROJECT)} == set(twins.values())
    assert len(error["candidates"]) == 2
    for candidate in error["candidates"]:
        server_id = candidate.split()[0]
        assert f"project {twins[server_id]}" in candidate and f"host {HOST}" in candidate
        assert candidate in proc.stderr
    # The id the error asks for does resolve.
    some_twin = next(iter(twins))
    assert resolved(lab, some_twin)["server"]["id"] == some_twin


def test_vm_not_active_says_its_status(cloud_lab: Lab) -> None:
    proc = run(cloud_lab, "resolve", "c-stopped")
    assert proc.returncode == 5, proc.stderr
    assert "is SHUTOFF, not ACTIVE" in proc.stderr and "start it" in proc.stderr


def test_sriov_nic_says_why_it_cannot_be_mirrored(cloud_lab: Lab) -> None:
    data = resolved(cloud_lab, "c-sriov")
    (nic,) = data["nics"]
    assert nic["plug"] == "sriov" and nic["vnic_type"] == "direct"
    assert nic["tap"] is None and nic["ovs_port"] is None and nic["bridge"] is None
    assert nic["sources"] == ["nova", "libvirt"]  # not on the switch: OVSDB has no row
    (warning,) = data["warnings"]
    assert f"NIC {nic['mac']} is SR-IOV (vnic_type direct)" in warning
    proc = run(cloud_lab, "resolve", "c-sriov")
    assert proc.returncode == 0, proc.stderr
    assert "sriov" in proc.stdout
    message = flat(proc.stderr)
    assert "bypasses Open vSwitch" in message
    assert "cannot be mirrored or captured on the host" in message


def test_nic_selector_matching_nothing_lists_the_nics(cloud_lab: Lab) -> None:
    vm = cloud_lab.vm("c-private")
    proc = run(cloud_lab, "resolve", "c-private", "--nic", "no-such-net")
    assert proc.returncode == 3, proc.stderr
    assert "no NIC matches --nic 'no-such-net'" in proc.stderr
    assert vm.mac in proc.stderr and "private" in proc.stderr
    data = resolved(cloud_lab, "c-private", "--nic", "private")  # by network name
    assert [n["mac"] for n in data["nics"]] == [vm.mac]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_unreachable_cloud_names_the_url_and_the_way_out(
    cloud_lab: Lab, tmp_path: Path, closed_port: int
) -> None:
    auth_url = f"http://127.0.0.1:{closed_port}/identity/v3"
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  dead:\n    auth:\n"
        f"      auth_url: {auth_url}\n      username: admin\n      password: x\n"
        "      project_name: admin\n      user_domain_name: Default\n"
        "      project_domain_name: Default\n"
        "    region_name: RegionOne\n    identity_api_version: '3'\n"
    )
    proc = run(
        cloud_lab, "resolve", "c-private", OS_CLIENT_CONFIG_FILE=str(clouds), OS_CLOUD="dead"
    )
    assert proc.returncode == 6, proc.stderr
    assert "cannot reach cloud 'dead'" in proc.stderr
    assert auth_url in proc.stderr
    assert "auth_url in clouds.yaml" in proc.stderr and "--offline" in proc.stderr
    # keystoneauth's own warning is not let through to the operator's terminal.
    assert "Failed to discover available identity versions" not in proc.stderr


def test_wrong_password_is_a_permission_error(cloud_lab: Lab, tmp_path: Path) -> None:
    original = Path(env_vars(cloud_lab)["OS_CLIENT_CONFIG_FILE"]).read_text()
    assert "lab-admin-secret" in original
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(original.replace("lab-admin-secret", "not-the-password"))
    proc = run(cloud_lab, "resolve", "c-private", OS_CLIENT_CONFIG_FILE=str(clouds))
    assert proc.returncode == 7, proc.stderr
    assert "cloud 'vmsniff-lab' refused the credentials" in proc.stderr
    assert "clouds.yaml" in proc.stderr and "--os-cloud" in proc.stderr


# -- another host ------------------------------------------------------------------------


def test_vm_on_another_host_never_uses_the_local_endpoints(cloud_lab: Lab) -> None:
    lab, vm = cloud_lab, cloud_lab.vm("c-private")
    # The local endpoints are in the environment, and must not be used for compute-9.
    assert {"VMSNIFF_OVSDB", "LIBVIRT_DEFAULT_URI"} <= env_vars(lab).keys()
    data = resolved(lab, "c-private", "--host", "compute-9")
    assert data["server"]["host"] == "compute-9" and data["local"] is False
    assert data["ovsdb"] is None and data["libvirt_uri"] is None
    assert data["sources"] == ["nova"]
    warnings = data["warnings"]
    assert any("Nova says c-private runs on compute-1" in w for w in warnings)
    for what in ("libvirt", "OVSDB"):
        assert any("runs on compute-9" in w and f"no {what} endpoint" in w for w in warnings)
    (nic,) = data["nics"]
    assert nic["sources"] == ["nova"]
    assert nic["tag"] is None and nic["ofport"] is None  # no switch was asked
    # The names come from the os-vif convention, and say so.
    assert nic["tap"] == vm.tap and nic["ovs_port"] == vm.ovs_port
    assert any("naming convention" in note for note in nic["notes"])


def test_vm_on_another_host_resolves_with_a_per_host_config_entry(
    cloud_lab: Lab, tmp_path: Path
) -> None:
    lab, vm = cloud_lab, cloud_lab.vm("c-private")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[hosts."compute-9"]\novsdb = "{lab.ovsdb_remote}"\nlibvirt = "{lab.libvirt_uri}"\n'
    )
    data = resolved(lab, "c-private", "--host", "compute-9", VMSNIFF_CONFIG=str(config))
    assert data["server"]["host"] == "compute-9" and data["local"] is False
    assert data["ovsdb"] == lab.ovsdb_remote and data["libvirt_uri"] == lab.libvirt_uri
    assert data["sources"] == SOURCES
    assert data["warnings"] == ["Nova says c-private runs on compute-1; using --host compute-9 "
                                "as given"]  # fmt: skip
    (nic,) = data["nics"]
    assert nic["sources"] == SOURCES and nic["notes"] == []
    assert (nic["tap"], nic["ovs_port"], nic["tag"]) == (vm.tap, vm.ovs_port, LOCAL_VLAN)


# -- API calls -----------------------------------------------------------------------------


def test_api_calls_per_resolve_are_bounded_and_documented(cloud_lab: Lab) -> None:
    lab = cloud_lab
    assert api_calls(lab, "c-private", "--all-projects") == CALLS_ALL_PROJECTS
    assert sum(CALLS_ALL_PROJECTS.values()) == 6
    # By UUID: one GET servers/{id} instead of the name query.
    by_id = dict(CALLS_ALL_PROJECTS)
    by_id["GET /compute/v2.1/servers/{id}"] = by_id.pop("GET /compute/v2.1/servers/detail")
    assert api_calls(lab, lab.vm("c-private").server_id) == by_id
    # Without --all-projects the admin first asks in its own project (project "admin", where
    # c-private is not), then in every project: one more servers/detail, 7 in all.
    plain = dict(CALLS_ALL_PROJECTS)
    plain["GET /compute/v2.1/servers/detail"] = 2
    assert api_calls(lab, "c-private") == plain
    # A member finds its own project's VM at the first try.
    assert api_calls(lab, "c-private", "--os-cloud", MEMBER_CLOUD, "--host", HOST) == (
        CALLS_ALL_PROJECTS
    )
