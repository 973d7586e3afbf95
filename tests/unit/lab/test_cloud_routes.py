"""The stand-in cloud's pure handlers, driven through routes.dispatch without a socket."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vmsniff.lab.cloud import Network, Port, Project, Server, User, build_inventory
from vmsniff.lab.cloud._context import Context
from vmsniff.lab.cloud._http import Request, Response
from vmsniff.lab.cloud.routes import RequestCounter, dispatch

HOST = "127.0.0.1:5999"
NOW = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def ctx(clock: Clock) -> Context:
    inventory = build_inventory(
        projects=[Project("admin"), Project("demo"), Project("other")],
        users=[
            User("admin", "admin-pw", "admin", ("admin",)),
            User("alice", "alice-pw", "demo"),
            User("olga", "olga-pw", "other"),
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
                image="70a599e0-31e7-49b7-b260-868f441e862b",
                ports=(
                    Port("private", mac="FA:16:3E:00:00:01", ips=("10.0.0.5",), hybrid_plug=True),
                ),
            ),
            Server("c-stopped", "demo", status="SHUTOFF", host="hv1", ports=(Port("private"),)),
            Server(
                "c-private",
                "other",
                host="hv2",
                ports=(Port("othernet"), Port("othernet", vnic_type="direct")),
            ),
        ],
    )
    return Context(inventory, b"k" * 32, clock=clock)


def call(
    ctx: Context,
    method: str,
    path: str,
    query: dict[str, list[str]] | None = None,
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    counter: RequestCounter | None = None,
) -> Response:
    hdrs = {"host": HOST} | {k.lower(): v for k, v in (headers or {}).items()}
    if token is not None:
        hdrs["x-auth-token"] = token
    raw = json.dumps(body).encode() if body is not None else b""
    return dispatch(Request(method, path, query or {}, hdrs, raw), ctx, counter)


def auth_body(user: str, password: str, project: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "domain": {"name": "Default"}, "password": password}
                },
            }
        }
    }
    if project:
        body["auth"]["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
    return body


def login(ctx: Context, user: str, password: str, project: str | None = None) -> str:
    response = call(
        ctx, "POST", "/identity/v3/auth/tokens", body=auth_body(user, password, project)
    )
    assert response.status == 201, response.json()
    return response.headers["X-Subject-Token"]


@pytest.fixture()
def admin(ctx: Context) -> str:
    return login(ctx, "admin", "admin-pw", "admin")


@pytest.fixture()
def alice(ctx: Context) -> str:
    return login(ctx, "alice", "alice-pw", "demo")


def server_id(ctx: Context, name: str, project: str) -> str:
    return next(s.id for s in ctx.inventory.servers if s.name == name and s.project == project)


# --- Keystone --------------------------------------------------------------------------------


def test_identity_discovery_lists_v3_at_this_host(ctx: Context) -> None:
    root = call(ctx, "GET", "/identity")
    assert root.status == 300
    (version,) = root.json()["versions"]["values"]
    assert version["id"].startswith("v3.")
    assert version["links"][0]["href"] == f"http://{HOST}/identity/v3/"
    v3 = call(ctx, "GET", "/identity/v3/")
    assert v3.status == 200
    assert v3.json()["version"]["status"] == "stable"


def test_token_carries_roles_project_and_catalog(ctx: Context) -> None:
    response = call(
        ctx, "POST", "/identity/v3/auth/tokens", body=auth_body("admin", "admin-pw", "admin")
    )
    assert response.status == 201
    token = response.json()["token"]
    assert token["user"]["name"] == "admin"
    assert token["project"]["name"] == "admin"
    assert [r["name"] for r in token["roles"]] == ["admin", "member", "reader"]
    assert token["expires_at"] == "2023-11-14T23:13:20.000000Z"  # NOW + 3600
    urls = {svc["type"]: svc["endpoints"][0]["url"] for svc in token["catalog"]}
    assert urls == {
        "identity": f"http://{HOST}/identity",
        "compute": f"http://{HOST}/compute/v2.1",
        "network": f"http://{HOST}/network",
    }
    for svc in token["catalog"]:
        assert svc["endpoints"][0]["interface"] == "public"
        assert svc["endpoints"][0]["region_id"] == "RegionOne"


def test_member_token_has_no_admin_role(ctx: Context) -> None:
    response = call(ctx, "POST", "/identity/v3/auth/tokens", body=auth_body("alice", "alice-pw"))
    token = response.json()["token"]
    assert token["project"]["name"] == "demo"  # unscoped request: the user's project
    assert [r["name"] for r in token["roles"]] == ["member", "reader"]


@pytest.mark.parametrize(
    ("user", "password", "project"),
    [
        ("admin", "wrong", "admin"),
        ("nobody", "x", None),
        ("alice", "alice-pw", "other"),
        ("alice", "alice-pw", "no-such-project"),
    ],
)
def test_bad_credentials_are_401_in_keystone_shape(
    ctx: Context, user: str, password: str, project: str | None
) -> None:
    response = call(
        ctx, "POST", "/identity/v3/auth/tokens", body=auth_body(user, password, project)
    )
    assert response.status == 401
    assert "X-Subject-Token" not in response.headers
    error = response.json()["error"]
    assert error["code"] == 401
    assert error["title"] == "Unauthorized"


def test_user_by_id_and_malformed_body(ctx: Context) -> None:
    alice = ctx.inventory.user("alice")
    assert alice is not None
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"id": alice.id, "password": "alice-pw"}},
            }
        }
    }
    assert call(ctx, "POST", "/identity/v3/auth/tokens", body=body).status == 201
    assert call(ctx, "POST", "/identity/v3/auth/tokens", body={"nope": 1}).status == 400


@pytest.mark.parametrize(
    "path", ["/compute/v2.1/servers/detail", "/network/v2.0/ports", "/compute/v2.1/servers/x"]
)
def test_api_needs_a_token(ctx: Context, path: str) -> None:
    response = call(ctx, "GET", path)
    assert response.status == 401
    assert response.json()["error"]["code"] == 401
    assert response.headers["WWW-Authenticate"] == f'Keystone uri="http://{HOST}/identity"'
    assert call(ctx, "GET", path, token="garbage").status == 401


def test_expired_or_foreign_tokens_are_refused(ctx: Context, clock: Clock, alice: str) -> None:
    assert call(ctx, "GET", "/network/v2.0/ports", token=alice).status == 200
    other = Context(ctx.inventory, b"z" * 32, clock=clock)
    assert call(other, "GET", "/network/v2.0/ports", token=alice).status == 401
    clock.now += 3600
    assert call(ctx, "GET", "/network/v2.0/ports", token=alice).status == 401


# --- Nova ------------------------------------------------------------------------------------


def names(response: Response) -> list[tuple[str, str]]:
    return sorted((s["name"], s.get("tenant_id", "")) for s in response.json()["servers"])


def test_version_documents(ctx: Context) -> None:
    version = call(ctx, "GET", "/compute/v2.1").json()["version"]
    assert (version["id"], version["min_version"], version["version"]) == ("v2.1", "2.1", "2.96")
    versions = call(ctx, "GET", "/compute/").json()["versions"]
    assert [v["id"] for v in versions] == ["v2.1"]


def test_name_is_a_regular_expression(ctx: Context, admin: str) -> None:
    def listed(pattern: str) -> list[str]:
        q = {"name": [pattern], "all_tenants": ["True"]}
        return sorted(
            s["name"] for s in call(ctx, "GET", "/compute/v2.1/servers", q, admin).json()["servers"]
        )

    assert listed("^c-private$") == ["c-private", "c-private"]
    assert listed("priv") == ["c-private", "c-private"]
    assert listed("^c-") == ["c-private", "c-private", "c-stopped"]
    assert listed("c-.*ed$") == ["c-stopped"]
    assert listed("^private") == []
    assert listed("(") == []


def test_all_tenants_is_for_admins(ctx: Context, admin: str, alice: str) -> None:
    detail = "/compute/v2.1/servers/detail"
    assert len(call(ctx, "GET", detail, {"all_tenants": ["1"]}, admin).json()["servers"]) == 3
    # Without all_tenants an admin sees their own project only (here: nothing).
    assert call(ctx, "GET", detail, {}, admin).json()["servers"] == []
    assert [n for n, _ in names(call(ctx, "GET", detail, {}, alice))] == ["c-private", "c-stopped"]
    forbidden = call(ctx, "GET", detail, {"all_tenants": ["True"]}, alice)
    assert forbidden.status == 403
    assert forbidden.json()["forbidden"]["code"] == 403
    assert call(ctx, "GET", detail, {"all_tenants": ["maybe"]}, admin).status == 400


def test_status_filter(ctx: Context, alice: str) -> None:
    detail = "/compute/v2.1/servers/detail"
    shutoff = call(ctx, "GET", detail, {"status": ["shutoff"]}, alice)
    assert [s["name"] for s in shutoff.json()["servers"]] == ["c-stopped"]
    assert shutoff.json()["servers"][0]["OS-EXT-STS:vm_state"] == "stopped"
    assert call(ctx, "GET", detail, {"status": ["BOGUS"]}, alice).json() == {"servers": []}
    new = {"OpenStack-API-Version": "compute 2.38"}
    assert call(ctx, "GET", detail, {"status": ["BOGUS"]}, alice, headers=new).status == 400


def test_extended_attributes_only_for_admins(ctx: Context, admin: str, alice: str) -> None:
    sid = server_id(ctx, "c-private", "demo")
    as_admin = call(ctx, "GET", f"/compute/v2.1/servers/{sid}", token=admin).json()["server"]
    assert as_admin["OS-EXT-SRV-ATTR:host"] == "hv1"
    assert as_admin["OS-EXT-SRV-ATTR:hypervisor_hostname"] == "hv1"
    assert as_admin["OS-EXT-SRV-ATTR:instance_name"] == "instance-00000001"
    as_alice = call(ctx, "GET", f"/compute/v2.1/servers/{sid}", token=alice).json()["server"]
    assert not [k for k in as_alice if k.startswith("OS-EXT-SRV-ATTR:")]
    assert "host_status" not in as_alice
    # hostId is for everyone: it reveals co-location, not the host.
    assert as_alice["hostId"] == as_admin["hostId"] != ""
    assert as_alice["addresses"] == {
        "private": [
            {
                "version": 4,
                "addr": "10.0.0.5",
                "OS-EXT-IPS:type": "fixed",
                "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01",
            }
        ]
    }


# Every key Nova 2.96 returns in GET /servers/{id} for an admin (python-openstackclient
# crashes on a missing one, e.g. ``image``).
NOVA_296_KEYS = {
    "id",
    "name",
    "status",
    "tenant_id",
    "user_id",
    "metadata",
    "hostId",
    "image",
    "flavor",
    "created",
    "updated",
    "addresses",
    "accessIPv4",
    "accessIPv6",
    "links",
    "OS-DCF:diskConfig",
    "progress",
    "OS-EXT-AZ:availability_zone",
    "config_drive",
    "key_name",
    "OS-SRV-USG:launched_at",
    "OS-SRV-USG:terminated_at",
    "security_groups",
    "OS-EXT-STS:task_state",
    "OS-EXT-STS:vm_state",
    "OS-EXT-STS:power_state",
    "os-extended-volumes:volumes_attached",
    "OS-EXT-SRV-ATTR:host",
    "OS-EXT-SRV-ATTR:instance_name",
    "OS-EXT-SRV-ATTR:hypervisor_hostname",
    "OS-EXT-SRV-ATTR:reservation_id",
    "OS-EXT-SRV-ATTR:launch_index",
    "OS-EXT-SRV-ATTR:hostname",
    "OS-EXT-SRV-ATTR:kernel_id",
    "OS-EXT-SRV-ATTR:ramdisk_id",
    "OS-EXT-SRV-ATTR:root_device_name",
    "OS-EXT-SRV-ATTR:user_data",
    "host_status",
    "locked",
    "description",
    "tags",
    "trusted_image_certificates",
    "server_groups",
    "locked_reason",
    "pinned_availability_zone",
}


def test_microversions(ctx: Context, admin: str) -> None:
    sid = server_id(ctx, "c-private", "demo")
    path = f"/compute/v2.1/servers/{sid}"
    old = call(ctx, "GET", path, token=admin)
    assert old.headers["OpenStack-API-Version"] == "compute 2.1"
    assert set(old.json()["server"]["flavor"]) == {"id", "links"}
    assert "pinned_availability_zone" not in old.json()["server"]
    new = call(ctx, "GET", path, token=admin, headers={"OpenStack-API-Version": "compute 2.96"})
    assert new.headers["OpenStack-API-Version"] == "compute 2.96"
    assert new.headers["X-OpenStack-Nova-API-Version"] == "2.96"
    assert set(new.json()["server"]) == NOVA_296_KEYS
    assert new.json()["server"]["flavor"]["original_name"] == "m1.tiny"
    legacy = call(ctx, "GET", path, token=admin, headers={"X-OpenStack-Nova-API-Version": "2.47"})
    assert legacy.headers["OpenStack-API-Version"] == "compute 2.47"
    latest = call(
        ctx, "GET", path, token=admin, headers={"OpenStack-API-Version": "compute latest"}
    )
    assert latest.headers["X-OpenStack-Nova-API-Version"] == "2.96"
    too_new = call(
        ctx, "GET", path, token=admin, headers={"OpenStack-API-Version": "compute 2.200"}
    )
    assert too_new.status == 406
    assert "maximum is 2.96" in too_new.json()["computeFault"]["message"]
    garbled = call(ctx, "GET", path, token=admin, headers={"OpenStack-API-Version": "compute x"})
    assert garbled.status == 400


def test_unknown_or_foreign_server_is_404(ctx: Context, alice: str, admin: str) -> None:
    missing = call(ctx, "GET", "/compute/v2.1/servers/nope", token=alice)
    assert missing.status == 404
    assert missing.json() == {
        "itemNotFound": {"code": 404, "message": "Instance nope could not be found."}
    }
    foreign = server_id(ctx, "c-private", "other")
    assert call(ctx, "GET", f"/compute/v2.1/servers/{foreign}", token=alice).status == 404
    assert call(ctx, "GET", f"/compute/v2.1/servers/{foreign}", token=admin).status == 200


def test_limit_and_marker(ctx: Context, admin: str) -> None:
    q = {"all_tenants": ["1"], "limit": ["2"]}
    first = call(ctx, "GET", "/compute/v2.1/servers", q, admin).json()
    assert len(first["servers"]) == 2
    (link,) = first["servers_links"]
    assert link["rel"] == "next"
    marker = first["servers"][-1]["id"]
    assert link["href"].endswith(f"marker={marker}")
    rest = call(ctx, "GET", "/compute/v2.1/servers", q | {"marker": [marker]}, admin).json()
    assert len(rest["servers"]) == 1
    assert "servers_links" not in rest
    everyone = {s["id"] for s in first["servers"] + rest["servers"]}
    assert everyone == {s.id for s in ctx.inventory.servers}
    assert call(ctx, "GET", "/compute/v2.1/servers", q | {"marker": ["x"]}, admin).status == 400


def test_os_interface(ctx: Context, alice: str) -> None:
    sid = server_id(ctx, "c-stopped", "demo")
    (attachment,) = call(
        ctx, "GET", f"/compute/v2.1/servers/{sid}/os-interface", token=alice
    ).json()["interfaceAttachments"]
    (port,) = ctx.inventory.server(sid).ports  # type: ignore[union-attr]
    assert attachment["port_id"] == port.id
    assert attachment["mac_addr"] == port.mac
    assert attachment["port_state"] == "DOWN"
    assert attachment["fixed_ips"][0]["ip_address"] == port.ips[0]


def test_wrong_method_is_405(ctx: Context, admin: str) -> None:
    response = call(ctx, "POST", "/compute/v2.1/servers", token=admin)
    assert response.status == 405
    assert response.headers["Allow"] == "GET"


# --- Neutron ---------------------------------------------------------------------------------


def ports(ctx: Context, token: str, **filters: list[str]) -> list[dict[str, Any]]:
    response = call(ctx, "GET", "/network/v2.0/ports", dict(filters), token)
    assert response.status == 200, response.json()
    result: list[dict[str, Any]] = response.json()["ports"]
    return result


def test_port_filters(ctx: Context, admin: str) -> None:
    sid = server_id(ctx, "c-private", "other")
    by_device = ports(ctx, admin, device_id=[sid])
    assert len(by_device) == 2
    assert {p["device_id"] for p in by_device} == {sid}
    (by_mac,) = ports(ctx, admin, mac_address=["fa:16:3e:00:00:01"])
    assert by_mac["fixed_ips"][0]["ip_address"] == "10.0.0.5"
    assert len(ports(ctx, admin, id=[p["id"] for p in by_device])) == 2
    net = ctx.inventory.network("private")
    assert net is not None
    assert len(ports(ctx, admin, network_id=[net.id])) == 2
    assert ports(ctx, admin, device_id=["nope"]) == []
    bad = call(ctx, "GET", "/network/v2.0/ports", {"devcie_id": ["x"]}, admin)
    assert bad.status == 400
    assert bad.json()["NeutronError"]["message"] == "[devcie_id] is invalid attribute for filtering"


def test_port_binding_details(ctx: Context, admin: str, alice: str) -> None:
    (hybrid,) = ports(ctx, admin, mac_address=["fa:16:3e:00:00:01"])
    assert hybrid["binding:host_id"] == "hv1"
    assert hybrid["binding:vif_type"] == "ovs"
    assert hybrid["binding:vif_details"]["ovs_hybrid_plug"] is True
    assert hybrid["binding:vif_details"]["port_filter"] is True
    assert hybrid["binding:vnic_type"] == "normal"
    assert hybrid["status"] == "ACTIVE"
    sid = server_id(ctx, "c-private", "other")
    direct, normal = sorted(
        ports(ctx, admin, device_id=[sid]), key=lambda p: p["binding:vnic_type"]
    )
    assert normal["binding:vif_details"]["ovs_hybrid_plug"] is False
    assert direct["binding:vif_type"] == "hw_veb"
    assert direct["binding:vnic_type"] == "direct"
    # Members see their own ports only, and no binding details.
    mine = ports(ctx, alice)
    assert len(mine) == 2
    for port in mine:
        assert "binding:host_id" not in port
        assert "binding:vif_details" not in port
        assert port["binding:vnic_type"] == "normal"
    assert {p["status"] for p in mine} == {"ACTIVE", "DOWN"}


def test_port_and_network_show(ctx: Context, admin: str, alice: str) -> None:
    (port,) = ports(ctx, admin, mac_address=["fa:16:3e:00:00:01"])
    shown = call(ctx, "GET", f"/network/v2.0/ports/{port['id']}", token=alice).json()["port"]
    assert shown["id"] == port["id"]
    missing = call(ctx, "GET", "/network/v2.0/ports/nope", token=admin)
    assert missing.status == 404
    assert missing.json()["NeutronError"]["type"] == "PortNotFound"

    net_id = port["network_id"]
    as_admin = call(ctx, "GET", f"/network/v2.0/networks/{net_id}", token=admin).json()["network"]
    assert as_admin["provider:network_type"] == "vxlan"
    assert as_admin["provider:segmentation_id"] == 1001
    assert as_admin["mtu"] == 1450
    as_alice = call(ctx, "GET", f"/network/v2.0/networks/{net_id}", token=alice).json()["network"]
    assert not [k for k in as_alice if k.startswith("provider:")]
    other = ctx.inventory.network("othernet")
    assert other is not None
    hidden = call(ctx, "GET", f"/network/v2.0/networks/{other.id}", token=alice)
    assert hidden.status == 404
    assert hidden.json()["NeutronError"]["type"] == "NetworkNotFound"
    listed = call(ctx, "GET", "/network/v2.0/networks", {"name": ["othernet"]}, admin).json()
    assert [n["provider:physical_network"] for n in listed["networks"]] == ["physnet1"]


def test_network_discovery(ctx: Context) -> None:
    versions = call(ctx, "GET", "/network").json()["versions"]
    assert versions[0]["id"] == "v2.0"
    assert versions[0]["links"][0]["href"] == f"http://{HOST}/network/v2.0/"


# --- the request counter ---------------------------------------------------------------------


def test_counter_counts_by_template_and_resets(ctx: Context, admin: str) -> None:
    counter = RequestCounter()
    sid = server_id(ctx, "c-private", "demo")
    call(ctx, "GET", f"/compute/v2.1/servers/{sid}", token=admin, counter=counter)
    call(ctx, "GET", "/compute/v2.1/servers/nope", token=admin, counter=counter)
    call(ctx, "GET", "/network/v2.0/ports", token=None, counter=counter)  # 401, still counted
    call(ctx, "GET", "/nowhere", counter=counter)
    seen = call(ctx, "GET", "/_stand-in/requests", counter=counter).json()
    assert seen == {
        "counts": {
            "GET /compute/v2.1/servers/{id}": 2,
            "GET /network/v2.0/ports": 1,
            "GET /nowhere": 1,
        },
        "total": 4,
    }
    assert call(ctx, "DELETE", "/_stand-in/requests", counter=counter).status == 204
    assert call(ctx, "GET", "/_stand-in/requests", counter=counter).json() == {
        "counts": {},
        "total": 0,
    }
    assert call(ctx, "POST", "/_stand-in/requests", counter=counter).status == 405
