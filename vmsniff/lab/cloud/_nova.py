"""Nova (compute API v2.1): version documents, server list/show, and os-interface.

Visibility follows Nova's default policy: a caller sees the servers of the project their token
is scoped to; ``all_tenants`` needs role ``admin`` (403 otherwise); the ``OS-EXT-SRV-ATTR:*``
keys and ``host_status`` are shown to admins only (policy
``os_compute_api:os-extended-server-attributes``). Keys appear from the microversion that
introduced them (nova/api/openstack/compute/views/servers.py), so that clients pinned to an
older version get what a real Nova would give them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Any

from vmsniff.lab.cloud._context import MAX_MICROVERSION, Auth, Context
from vmsniff.lab.cloud._http import Request, Response, json_response, nova_error
from vmsniff.lab.cloud.inventory import SERVER_STATES, Server

__all__ = [
    "compute_root",
    "compute_v21",
    "parse_microversion",
    "server_interfaces",
    "server_show",
    "servers_detail",
    "servers_list",
]

Version = tuple[int, int]
_MIN = (2, 1)
# Flavor sizes for the usual names; other names get m1.tiny's.
_FLAVORS = {
    "m1.tiny": (1, 512, 1),
    "m1.small": (1, 2048, 20),
    "m1.medium": (2, 4096, 40),
    "m1.large": (4, 8192, 80),
}
# Nova's valid ``status`` filter values (nova/api/openstack/common.py, _STATE_MAP).
_STATUSES = frozenset(
    "ACTIVE BUILD DELETED ERROR HARD_REBOOT MIGRATING PASSWORD PAUSED REBOOT REBUILD RESCUE"
    " RESIZE REVERT_RESIZE SHELVED SHELVED_OFFLOADED SHUTOFF SOFT_DELETED SUSPENDED UNKNOWN"
    " VERIFY_RESIZE".split()
)
_TRUE = frozenset({"1", "t", "true", "on", "y", "yes", ""})
_FALSE = frozenset({"0", "f", "false", "off", "n", "no"})


def _fmt(v: Version) -> str:
    return f"{v[0]}.{v[1]}"


def _version_doc(base: str, current: bool) -> dict[str, Any]:
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": _fmt(MAX_MICROVERSION),
        "min_version": _fmt(_MIN),
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": f"{base}/compute/v2.1/"}],
        **(
            {
                "media-types": [
                    {
                        "base": "application/json",
                        "type": "application/vnd.openstack.compute+json;version=2.1",
                    }
                ]
            }
            if current
            else {}
        ),
    }


def compute_root(req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]) -> Response:
    """``GET /compute``: the version list (only v2.1, with microversions)."""
    return json_response(200, {"versions": [_version_doc(req.base_url, current=False)]})


def compute_v21(req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]) -> Response:
    """``GET /compute/v2.1``: the version document keystoneauth reads the microversions from."""
    return json_response(200, {"version": _version_doc(req.base_url, current=True)})


def parse_microversion(req: Request) -> Version | Response:
    """The requested microversion (2.1 if none), or Nova's 400/406 answer.

    ``OpenStack-API-Version: compute 2.x`` wins over ``X-OpenStack-Nova-API-Version: 2.x``;
    ``latest`` means the maximum.
    """
    raw = ""
    for part in req.header("openstack-api-version").split(","):
        service, _, value = part.strip().partition(" ")
        if service.lower() == "compute":
            raw = value.strip()
    raw = raw or req.header("x-openstack-nova-api-version").strip()
    if not raw:
        return _MIN
    if raw.lower() == "latest":
        return MAX_MICROVERSION
    match = re.fullmatch(r"(\d+)\.(\d+)", raw)
    if not match:
        return nova_error(
            400,
            f"API Version String {raw} is of invalid format. Must be of format MajorNum.MinorNum.",
        )
    version = (int(match[1]), int(match[2]))
    if not _MIN <= version <= MAX_MICROVERSION:
        return nova_error(
            406,
            f"Version {raw} is not supported by the API. Minimum is {_fmt(_MIN)} and maximum is"
            f" {_fmt(MAX_MICROVERSION)}.",
        )
    return version


def _headers(version: Version) -> dict[str, str]:
    return {
        "OpenStack-API-Version": f"compute {_fmt(version)}",
        "X-OpenStack-Nova-API-Version": _fmt(version),
        "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version",
    }


def _links(base: str, kind: str, ident: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": f"{base}/compute/v2.1/{kind}/{ident}"},
        {"rel": "bookmark", "href": f"{base}/compute/{kind}/{ident}"},
    ]


def _addresses(server: Server, ctx: Context) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for port in server.ports:
        net = ctx.inventory.network(port.network)
        assert net is not None  # build_inventory checked the reference
        for ip in port.ips:
            out.setdefault(net.name, []).append(
                {
                    "version": ipaddress.ip_address(ip).version,
                    "addr": ip,
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": port.mac,
                }
            )
    return out


def _flavor(server: Server, base: str, version: Version) -> dict[str, Any]:
    if version < (2, 47):
        flavor_id = hashlib.md5(server.flavor.encode(), usedforsecurity=False).hexdigest()[:8]
        return {"id": flavor_id, "links": [_links(base, "flavors", flavor_id)[1]]}
    vcpus, ram, disk = _FLAVORS.get(server.flavor, _FLAVORS["m1.tiny"])
    return {
        "vcpus": vcpus,
        "ram": ram,
        "disk": disk,
        "ephemeral": 0,
        "swap": 0,
        "original_name": server.flavor,
        "extra_specs": {},
    }


def render_server(
    server: Server, req: Request, ctx: Context, auth: Auth, version: Version, show: bool
) -> dict[str, Any]:
    """The server as ``GET /servers/{id}`` (``show``) or ``/servers/detail`` returns it."""
    base = req.base_url
    vm_state, power_state, task_state = SERVER_STATES[server.status]
    project = ctx.inventory.project(server.project)
    user = ctx.inventory.user(server.user) if server.user else None
    assert project is not None
    # hostId: sha224(project_id + host), so a tenant sees co-location but not the host name.
    host_id = hashlib.sha224((project.id + server.host).encode()).hexdigest() if server.host else ""
    launched = None if server.status == "BUILD" else server.created.replace("Z", ".000000")
    out: dict[str, Any] = {
        "id": server.id,
        "name": server.name,
        "status": server.status,
        "tenant_id": project.id,
        "user_id": user.id if user else "",
        "metadata": {},
        "hostId": host_id,
        # An empty string is what Nova returns for a volume-backed server.
        "image": (
            {"id": server.image, "links": [_links(base, "images", server.image)[1]]}
            if server.image
            else ""
        ),
        "flavor": _flavor(server, base, version),
        "created": server.created,
        "updated": server.created,
        "addresses": _addresses(server, ctx),
        "accessIPv4": "",
        "accessIPv6": "",
        "links": _links(base, "servers", server.id),
        "OS-DCF:diskConfig": "MANUAL",
        "progress": 0,
        "OS-EXT-AZ:availability_zone": "nova" if server.host else "",
        "config_drive": "",
        "key_name": None,
        "OS-SRV-USG:launched_at": launched,
        "OS-SRV-USG:terminated_at": None,
        "security_groups": [{"name": "default"}] if server.ports else [],
        "OS-EXT-STS:task_state": task_state,
        "OS-EXT-STS:vm_state": vm_state,
        "OS-EXT-STS:power_state": power_state,
        "os-extended-volumes:volumes_attached": [],
    }
    if auth.is_admin:
        out["OS-EXT-SRV-ATTR:host"] = server.host
        out["OS-EXT-SRV-ATTR:instance_name"] = server.instance_name
        out["OS-EXT-SRV-ATTR:hypervisor_hostname"] = server.hypervisor_hostname or None
        if version >= (2, 3):
            out.update(
                {
                    "OS-EXT-SRV-ATTR:reservation_id": "r-" + server.id[:8],
                    "OS-EXT-SRV-ATTR:launch_index": 0,
                    "OS-EXT-SRV-ATTR:hostname": server.name,
                    "OS-EXT-SRV-ATTR:kernel_id": "",
                    "OS-EXT-SRV-ATTR:ramdisk_id": "",
                    "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
                    "OS-EXT-SRV-ATTR:user_data": None,
                }
            )
        if version >= (2, 16):
            out["host_status"] = "UP" if server.host else ""
    if version >= (2, 9):
        out["locked"] = False
    if version >= (2, 19):
        out["description"] = None
    if version >= (2, 26):
        out["tags"] = []
    if version >= (2, 63):
        out["trusted_image_certificates"] = None
    if version >= (2, 71) and show:
        out["server_groups"] = []
    if version >= (2, 73):
        out["locked_reason"] = None
    if version >= (2, 96):
        out["pinned_availability_zone"] = None
    return out


def _visible(server: Server, auth: Auth, all_tenants: bool) -> bool:
    return all_tenants or server.project == auth.project.name


def _servers(req: Request, ctx: Context, auth: Auth | None, detail: bool) -> Response:
    assert auth is not None
    version = parse_microversion(req)
    if isinstance(version, Response):
        return version
    headers = _headers(version)
    raw_all = req.first("all_tenants")
    all_tenants = False
    if raw_all is not None:
        if raw_all.lower() not in _TRUE | _FALSE:
            return nova_error(400, f"Invalid all_tenants value: {raw_all}", headers)
        all_tenants = raw_all.lower() in _TRUE
    if all_tenants and not auth.is_admin:
        which = "detail" if detail else "index"
        return nova_error(
            403,
            f"Policy doesn't allow os_compute_api:servers:{which}:get_all_tenants to be performed.",
            headers,
        )
    servers = [s for s in ctx.inventory.servers if _visible(s, auth, all_tenants)]

    name = req.first("name")
    if name is not None:
        # Nova matches ``name`` as a regular expression anywhere in the name (REGEXP in MySQL,
        # re.search with sqlite), not as an exact string.
        try:
            pattern = re.compile(name)
        except re.error:
            return json_response(200, {"servers": []}, headers)
        servers = [s for s in servers if pattern.search(s.name)]
    statuses = req.query.get("status")
    if statuses:
        wanted = {s.upper() for s in statuses}
        if not wanted <= _STATUSES:
            # Since 2.38 an unknown status is a 400; before, an empty list.
            if version >= (2, 38):
                return nova_error(400, "Invalid status value", headers)
            return json_response(200, {"servers": []}, headers)
        servers = [s for s in servers if s.status in wanted]
    project_filter = req.first("project_id") or req.first("tenant_id")
    if project_filter and all_tenants:
        servers = [s for s in servers if project_filter in (s.project, _project_id(s, ctx))]
    host_filter = req.first("host")
    if host_filter and auth.is_admin:
        servers = [s for s in servers if s.host == host_filter]

    # Nova's default order: created_at desc, then id desc.
    servers.sort(key=lambda s: (s.created, s.id), reverse=True)
    marker = req.first("marker")
    if marker is not None:
        ids = [s.id for s in servers]
        if marker not in ids:
            return nova_error(400, f"marker [{marker}] not found", headers)
        servers = servers[ids.index(marker) + 1 :]
    body: dict[str, Any] = {}
    limit_raw = req.first("limit")
    if limit_raw is not None:
        if not limit_raw.isdigit():
            return nova_error(
                400, f"Invalid input for query parameters limit: {limit_raw}", headers
            )
        limit = int(limit_raw)
        if len(servers) > limit:
            servers = servers[:limit]
            kind = "servers/detail" if detail else "servers"
            href = f"{req.base_url}/compute/v2.1/{kind}?limit={limit}&marker={servers[-1].id}"
            body["servers_links"] = [{"rel": "next", "href": href}]
    if detail:
        rendered = [render_server(s, req, ctx, auth, version, show=False) for s in servers]
    else:
        rendered = [
            {"id": s.id, "name": s.name, "links": _links(req.base_url, "servers", s.id)}
            for s in servers
        ]
    return json_response(200, {"servers": rendered, **body}, headers)


def _project_id(server: Server, ctx: Context) -> str:
    project = ctx.inventory.project(server.project)
    return project.id if project else ""


def servers_list(req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]) -> Response:
    """``GET /compute/v2.1/servers``: ids, names and links."""
    return _servers(req, ctx, auth, detail=False)


def servers_detail(
    req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]
) -> Response:
    """``GET /compute/v2.1/servers/detail``: full server records."""
    return _servers(req, ctx, auth, detail=True)


def _find(ctx: Context, auth: Auth, server_id: str) -> Server | None:
    server = ctx.inventory.server(server_id)
    # Nova's show policy is admin-or-owner: an admin sees any project's server.
    if server is None or not (auth.is_admin or server.project == auth.project.name):
        return None
    return server


def server_show(req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]) -> Response:
    """``GET /compute/v2.1/servers/{id}`` (404 ``itemNotFound`` for an unknown or foreign id)."""
    assert auth is not None
    version = parse_microversion(req)
    if isinstance(version, Response):
        return version
    server = _find(ctx, auth, params["id"])
    if server is None:
        return nova_error(404, f"Instance {params['id']} could not be found.", _headers(version))
    body = {"server": render_server(server, req, ctx, auth, version, show=True)}
    return json_response(200, body, _headers(version))


def server_interfaces(
    req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]
) -> Response:
    """``GET /compute/v2.1/servers/{id}/os-interface``: the server's Neutron ports."""
    assert auth is not None
    version = parse_microversion(req)
    if isinstance(version, Response):
        return version
    server = _find(ctx, auth, params["id"])
    if server is None:
        return nova_error(404, f"Instance {params['id']} could not be found.", _headers(version))
    attachments = []
    for port in server.ports:
        net = ctx.inventory.network(port.network)
        assert net is not None
        item: dict[str, Any] = {
            "port_id": port.id,
            "net_id": net.id,
            "mac_addr": port.mac,
            "port_state": server.port_status,
            "fixed_ips": [{"subnet_id": net.subnet_id, "ip_address": ip} for ip in port.ips],
        }
        if version >= (2, 70):
            item["tag"] = None
        attachments.append(item)
    return json_response(200, {"interfaceAttachments": attachments}, _headers(version))
