"""The stand-in cloud's inventory model, JSON form, clouds.yaml helper and bind check."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from vmsniff.lab.cloud import (
    InventoryError,
    Network,
    Port,
    Project,
    Server,
    User,
    build_inventory,
    inventory_from_dict,
    inventory_to_dict,
    load_inventory,
    save_inventory,
    write_clouds_yaml,
)
from vmsniff.lab.cloud.server import check_bind_address

DOC: dict[str, Any] = {
    "projects": [{"name": "demo"}],
    "users": [{"name": "alice", "password": "pw", "project": "demo"}],
    "networks": [{"name": "private", "cidr": "10.0.0.0/24", "project": "demo"}],
    "servers": [
        {"name": "a", "project": "demo", "ports": [{"network": "private"}]},
        {
            "name": "b",
            "project": "demo",
            "status": "SHUTOFF",
            "ports": [{"network": "private", "ips": ["10.0.0.10"]}, {"network": "private"}],
        },
    ],
}


def test_derived_fields_are_deterministic_and_filled() -> None:
    first, second = inventory_from_dict(DOC), inventory_from_dict(DOC)
    assert first == second
    a, b = first.servers
    assert a.id != b.id
    assert (a.instance_name, b.instance_name) == ("instance-00000001", "instance-00000002")
    assert a.created < b.created
    assert a.user == "alice"
    assert a.hypervisor_hostname == "hv1"
    net = first.network("private")
    assert net is not None
    assert a.ports[0].network == net.id
    assert net.mtu == 1450
    # 10.0.0.10 is taken explicitly by b, so derived addresses skip it.
    assert a.ports[0].ips == ("10.0.0.11",)
    assert b.ports[1].ips == ("10.0.0.12",)
    macs = [p.mac for s in first.servers for p in s.ports]
    assert len(set(macs)) == 3
    assert all(m.startswith("fa:16:3e:") for m in macs)


def test_json_round_trip(tmp_path: Path) -> None:
    inventory = inventory_from_dict(DOC)
    assert inventory_from_dict(json.loads(json.dumps(inventory_to_dict(inventory)))) == inventory
    path = tmp_path / "inventory.json"
    save_inventory(inventory, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_inventory(path) == inventory


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"users": [{"name": "x", "password": "p", "project": "nope"}]}, "unknown project"),
        (
            {"servers": [{"name": "a", "project": "demo", "ports": [{"network": "n"}]}]},
            "unknown network",
        ),
        (
            {
                "servers": [
                    {
                        "name": "a",
                        "project": "demo",
                        "ports": [{"network": "private", "ips": ["10.1.0.1"]}],
                    }
                ]
            },
            "is not in",
        ),
        ({"servers": [{"name": "a", "project": "demo", "status": "RUNNING"}]}, "status"),
        (
            {"servers": [{"name": "a", "project": "demo"}, {"name": "a", "project": "demo"}]},
            "duplicate server id",
        ),
        ({"servers": [{"name": "a", "project": "demo", "colour": "red"}]}, "unknown keys"),
        ({"servers": [{"project": "demo"}]}, "name"),
        ({"networks": [{"name": "n", "cidr": "10.0.0.0/33", "project": "demo"}]}, "network 'n'"),
        ({"servers": [{"name": "a", "project": "demo", "host": None}]}, "SHELVED_OFFLOADED"),
    ],
)
def test_inconsistent_inventories_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        inventory_from_dict(DOC | change)


def test_shared_mac_is_refused() -> None:
    with pytest.raises(InventoryError, match="duplicate MAC"):
        build_inventory(
            projects=[Project("p")],
            users=[User("u", "pw", "p")],
            networks=[Network("n", "10.0.0.0/24", "p")],
            servers=[
                Server("a", "p", ports=(Port("n", mac="fa:16:3e:00:00:01"),)),
                Server("b", "p", ports=(Port("n", mac="FA:16:3E:00:00:01"),)),
            ],
        )


def test_clouds_yaml(tmp_path: Path) -> None:
    path = write_clouds_yaml(tmp_path / "clouds.yaml", "lab", 5000, "admin", 'p"w:1', "admin")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cloud = yaml.safe_load(path.read_text())["clouds"]["lab"]
    assert cloud["auth"] == {
        "auth_url": "http://127.0.0.1:5000/identity/v3",
        "username": "admin",
        "password": 'p"w:1',
        "project_name": "admin",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
    }
    assert (cloud["region_name"], cloud["identity_api_version"], cloud["interface"]) == (
        "RegionOne",
        "3",
        "public",
    )


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "10.0.0.1", "10.251.0.1", "192.0.2.2", "::1", "localhost", ""]
)
def test_only_ipv4_loopback_or_the_lab_block_is_bound(host: str) -> None:
    with pytest.raises(ValueError):
        check_bind_address(host)
    assert check_bind_address("127.0.0.1") == "127.0.0.1"
    assert check_bind_address("10.250.200.9") == "10.250.200.9"  # a lab management address
