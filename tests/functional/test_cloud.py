"""The stand-in cloud against the real openstacksdk over HTTP on 127.0.0.1.

Needs no root: the stand-in is a plain process. It checks what vmsniff's resolver relies on:
that openstacksdk authenticates, discovers, lists and fetches against it as against a real
cloud, with the visibility of Nova's and Neutron's default policies, in a bounded number of
requests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
from keystoneauth1 import exceptions as ks_exceptions

from vmsniff.lab.cloud import (
    Inventory,
    Network,
    Port,
    Project,
    Server,
    StandInServer,
    User,
    build_inventory,
    save_inventory,
    start_in_thread,
    write_clouds_yaml,
)

pytestmark = [
    # openstacksdk 4.22 warns about its own internals on every connection and request, with
    # nothing a caller can change: CloudRegion always receives an influxdb config dict (all
    # values None) and warns; Proxy passes service_type to its own _extract_name; Resource
    # calls its own deprecated _compute_attributes. Only these three messages are ignored.
    pytest.mark.filterwarnings(
        "ignore:Support for InfluxDB:openstack.warnings.RemovedInSDK60Warning"
    ),
    pytest.mark.filterwarnings(
        "ignore:The 'service_type' parameter is unnecesary:openstack.warnings.RemovedInSDK50Warning"
    ),
    pytest.mark.filterwarnings(
        "ignore:The _compute_attributes method is deprecated:"
        "openstack.warnings.RemovedInSDK50Warning"
    ),
]


def lab_inventory() -> Inventory:
    return build_inventory(
        projects=[Project("admin"), Project("demo"), Project("other")],
        users=[
            User("admin", "admin-pw", "admin", ("admin",)),
            User("alice", "alice-pw", "demo"),
        ],
        networks=[
            Network("private", "10.0.0.0/24", "demo", segmentation_id=1001),
            Network(
                "othernet",
                "10.9.0.0/24",
                "other",
                network_type="vlan",
                segmentation_id=42,
                physical_network="physnet1",
            ),
        ],
        servers=[
            Server(
                "c-private",
                "demo",
                host="hv1",
                instance_name="instance-0000002a",
                image="70a599e0-31e7-49b7-b260-868f441e862b",
                ports=(Port("private", ips=("10.0.0.5",), hybrid_plug=True),),
            ),
            Server("c-stopped", "demo", status="SHUTOFF", host="hv1", ports=(Port("private"),)),
            # Same name in another project: only all_tenants shows the ambiguity.
            Server("c-private", "other", host="hv2", ports=(Port("othernet"),)),
        ],
    )


class Lab:
    """The running stand-in and one clouds.yaml per user (each file holds one cloud)."""

    def __init__(self, server: StandInServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.server = server
        self.port = server.port
        self._monkeypatch = monkeypatch
        self._files = {
            name: write_clouds_yaml(tmp_path / f"{name}.yaml", name, self.port, *creds)
            for name, creds in {
                "lab-admin": ("admin", "admin-pw", "admin"),
                "lab-member": ("alice", "alice-pw", "demo"),
                "lab-wrong": ("admin", "not-the-password", "admin"),
            }.items()
        }

    def connect(self, cloud: str) -> Any:
        self._monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(self._files[cloud]))
        return openstack.connect(cloud=cloud)


@pytest.fixture()
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    for name in list(os.environ):
        if name.startswith("OS_"):  # a developer's own cloud must not leak in
            monkeypatch.delenv(name)
    server, _ = start_in_thread(lab_inventory(), log_path=tmp_path / "requests.log")
    try:
        yield Lab(server, tmp_path, monkeypatch)
    finally:
        server.stop()


def counts(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stand-in/requests") as response:
        data: dict[str, Any] = json.load(response)
    result: dict[str, int] = data["counts"]
    return result


def test_admin_resolves_name_to_host_domain_and_ports(cloud: Lab) -> None:
    conn = cloud.connect("lab-admin")
    found = list(conn.compute.servers(name="^c-private$", all_projects=True, details=True))
    assert sorted(s.compute_host for s in found) == ["hv1", "hv2"]  # ambiguous across projects
    mine = next(s for s in found if s.compute_host == "hv1")
    server = conn.compute.get_server(mine.id)
    assert server.name == "c-private"
    assert server.compute_host == "hv1"
    assert server.hypervisor_hostname == "hv1"
    assert server.instance_name == "instance-0000002a"
    assert server.vm_state == "active"
    assert server.status == "ACTIVE"
    (port,) = conn.network.ports(device_id=server.id)
    assert port.binding_host_id == "hv1"
    assert port.binding_vif_type == "ovs"
    assert port.binding_vif_details["ovs_hybrid_plug"] is True
    assert port.binding_vnic_type == "normal"
    assert port.fixed_ips[0]["ip_address"] == "10.0.0.5"
    network = conn.network.get_network(port.network_id)
    assert network.name == "private"
    assert network.provider_network_type == "vxlan"
    assert network.provider_segmentation_id == 1001
    (attachment,) = conn.compute.server_interfaces(server.id)
    assert attachment.port_id == port.id
    assert attachment.mac_addr == port.mac_address


def test_stopped_server_and_status_filter(cloud: Lab) -> None:
    conn = cloud.connect("lab-admin")
    (stopped,) = conn.compute.servers(status="SHUTOFF", all_projects=True)
    assert stopped.name == "c-stopped"
    (port,) = conn.network.ports(device_id=stopped.id)
    assert port.status == "DOWN"


def test_member_sees_own_project_without_host(cloud: Lab) -> None:
    conn = cloud.connect("lab-member")
    found = list(conn.compute.servers(name="^c-private$", details=True))
    assert len(found) == 1
    server = conn.compute.get_server(found[0].id)
    assert server.compute_host is None
    assert server.hypervisor_hostname is None
    assert server.instance_name is None
    assert server.host_id  # co-location hash, not the host
    (port,) = conn.network.ports(device_id=server.id)
    assert port.binding_host_id is None
    assert port.binding_vif_details is None
    network = conn.network.get_network(port.network_id)
    assert network.provider_network_type is None
    with pytest.raises(openstack.exceptions.ForbiddenException):
        list(conn.compute.servers(all_projects=True))
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.compute.get_server("00000000-0000-0000-0000-000000000000")


def test_wrong_password_is_an_auth_error(cloud: Lab) -> None:
    conn = cloud.connect("lab-wrong")
    with pytest.raises(ks_exceptions.Unauthorized):
        list(conn.compute.servers())


def test_one_resolve_costs_six_requests(cloud: Lab) -> None:
    port = cloud.port
    conn = cloud.connect("lab-admin")
    (server,) = conn.compute.servers(name="^c-stopped$", all_projects=True, details=True)
    (nic,) = conn.network.ports(device_id=server.id)
    conn.network.get_network(nic.network_id)
    assert counts(port) == {
        "GET /identity/v3": 1,  # keystoneauth's discovery of the auth URL
        "POST /identity/v3/auth/tokens": 1,
        "GET /compute/v2.1": 1,  # microversion discovery
        "GET /compute/v2.1/servers/detail": 1,
        "GET /network/v2.0/ports": 1,
        "GET /network/v2.0/networks/{id}": 1,
    }
    # The same connection resolves again without re-authenticating or re-discovering.
    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{port}/_stand-in/requests", method="DELETE")
    ).close()
    list(conn.compute.servers(name="^c-stopped$", all_projects=True, details=True))
    assert counts(port) == {"GET /compute/v2.1/servers/detail": 1}


def test_request_log_is_written(cloud: Lab, tmp_path: Path) -> None:
    conn = cloud.connect("lab-admin")
    list(conn.network.ports())
    log = (tmp_path / "requests.log").read_text().splitlines()
    assert any(" GET /network/v2.0/ports 200 " in line for line in log)


def test_runner_writes_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.json"
    save_inventory(lab_inventory(), inventory)
    port_file, pidfile = tmp_path / "port", tmp_path / "pid"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vmsniff.lab.cloud",
            "--inventory",
            str(inventory),
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--pidfile",
            str(pidfile),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while not port_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the stand-in did not write its port file"
            time.sleep(0.05)
        port = int(port_file.read_text())
        assert int(pidfile.read_text()) == proc.pid
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/identity/v3") as response:
            assert json.load(response)["version"]["status"] == "stable"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert (out, err) == (b"", b"")
    assert not port_file.exists()
    assert not pidfile.exists()


def test_runner_refuses_a_public_address(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.json"
    save_inventory(lab_inventory(), inventory)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vmsniff.lab.cloud",
            "--inventory",
            str(inventory),
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "127.0.0.0/8 or 10.250.0.0/16 only" in result.stderr
