"""Neutron (networking API v2.0): version discovery, ports and networks (list and show).

Visibility follows Neutron's default policy: admins see every port and network, others the
ones of their project (plus shared networks). The ``binding:host_id``, ``binding:vif_type``,
``binding:vif_details`` and ``binding:profile`` attributes and the ``provider:*`` attributes
are admin-only and omitted for other callers. Filters are query parameters named like the
attributes, repeated for "any of"; an unknown filter is a 400, as with Neutron's
filter-validation extension (so that a typo in a client cannot silently list everything).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from vmsniff.lab.cloud._context import Auth, Context
from vmsniff.lab.cloud._http import Request, Response, json_response, neutron_error
from vmsniff.lab.cloud.inventory import Network, Port, Server

__all__ = [
    "network_root",
    "network_show",
    "network_v20",
    "networks_list",
    "port_show",
    "ports_list",
    "render_network",
    "render_port",
]

_STAMP = "2024-01-01T00:00:00Z"
_PAGING = frozenset({"fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"})
_NS = uuid.UUID("0c1d7e5b-8a5c-4bb4-9d6f-3b2f0f3c5e21")


def network_root(req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]) -> Response:
    """``GET /network``: the version list."""
    link = {"rel": "self", "href": f"{req.base_url}/network/v2.0/"}
    return json_response(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [link]}]})


def network_v20(req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]) -> Response:
    """``GET /network/v2.0``: the resources this stand-in serves."""
    resources = [
        {
            "name": name,
            "collection": f"{name}s",
            "links": [{"rel": "self", "href": f"{req.base_url}/network/v2.0/{name}s"}],
        }
        for name in ("network", "port")
    ]
    return json_response(200, {"resources": resources})


def _project_id(ctx: Context, name: str) -> str:
    project = ctx.inventory.project(name)
    assert project is not None  # build_inventory checked the reference
    return project.id


def _vif(server: Server, port: Port, net: Network) -> tuple[str, dict[str, Any]]:
    """``binding:vif_type`` and ``binding:vif_details`` as ML2 leaves them after binding."""
    if server.host is None:
        return "unbound", {}
    if port.vnic_type in ("direct", "macvtap"):
        # SR-IOV agent (sriovnicswitch): the VF is passed through, OVS never sees it.
        return "hw_veb", {
            "connectivity": "l2",
            "port_filter": False,
            "vlan": str(net.segmentation_id or 0),
            "bound_drivers": {"0": "sriovnicswitch"},
        }
    # The OVS agent: with the iptables hybrid firewall os-vif plugs tap -> qbr -> qvb/qvo
    # (ovs_hybrid_plug true); with the native openvswitch firewall the tap joins br-int.
    return "ovs", {
        "connectivity": "l2",
        "port_filter": True,
        "ovs_hybrid_plug": port.hybrid_plug,
        "datapath_type": "system",
        "bridge_name": "br-int",
        "bound_drivers": {"0": "openvswitch"},
    }


def render_port(server: Server, port: Port, ctx: Context, admin: bool) -> dict[str, Any]:
    """A port as Neutron returns it (binding details for admins only)."""
    net = ctx.inventory.network(port.network)
    assert net is not None
    project_id = _project_id(ctx, server.project)
    out: dict[str, Any] = {
        "id": port.id,
        "name": "",
        "network_id": net.id,
        "tenant_id": project_id,
        "project_id": project_id,
        "mac_address": port.mac,
        "admin_state_up": True,
        "status": server.port_status,
        "device_id": server.id,
        "device_owner": "compute:nova",
        "fixed_ips": [{"subnet_id": net.subnet_id, "ip_address": ip} for ip in port.ips],
        "allowed_address_pairs": [],
        "extra_dhcp_opts": [],
        "security_groups": [str(uuid.uuid5(_NS, f"default-sg:{project_id}"))],
        "port_security_enabled": True,
        "description": "",
        "binding:vnic_type": port.vnic_type,
        "ip_allocation": "immediate",
        "dns_name": "",
        "qos_policy_id": None,
        "qos_network_policy_id": None,
        "propagate_uplink_status": False,
        "tags": [],
        "created_at": server.created,
        "updated_at": server.created,
        "revision_number": 1,
    }
    if admin:
        vif_type, vif_details = _vif(server, port, net)
        out["binding:host_id"] = server.host or ""
        out["binding:profile"] = {}
        out["binding:vif_type"] = vif_type
        out["binding:vif_details"] = vif_details
    return out


def render_network(net: Network, ctx: Context, admin: bool) -> dict[str, Any]:
    """A network as Neutron returns it (``provider:*`` for admins only)."""
    project_id = _project_id(ctx, net.project)
    out: dict[str, Any] = {
        "id": net.id,
        "name": net.name,
        "tenant_id": project_id,
        "project_id": project_id,
        "admin_state_up": True,
        "status": "ACTIVE",
        "subnets": [net.subnet_id],
        "shared": net.shared,
        "router:external": False,
        "mtu": net.mtu,
        "port_security_enabled": True,
        "availability_zone_hints": [],
        "availability_zones": ["nova"],
        "ipv4_address_scope": None,
        "ipv6_address_scope": None,
        "is_default": False,
        "l2_adjacency": True,
        "qos_policy_id": None,
        "dns_domain": "",
        "description": "",
        "tags": [],
        "created_at": _STAMP,
        "updated_at": _STAMP,
        "revision_number": 1,
    }
    if admin:
        out["provider:network_type"] = net.network_type
        out["provider:physical_network"] = net.physical_network
        out["provider:segmentation_id"] = net.segmentation_id
    return out


def _matches(item: dict[str, Any], key: str, values: list[str]) -> bool:
    if key not in item:
        return False
    value = item[key]
    if isinstance(value, bool):
        return str(value).lower() in {v.lower() for v in values}
    if key == "mac_address":
        return str(value).lower() in {v.lower() for v in values}
    return str(value) in values


def _listing(
    req: Request,
    collection: str,
    items: Iterable[dict[str, Any]],
    filterable: frozenset[str],
) -> Response:
    unknown = sorted(set(req.query) - filterable - _PAGING)
    if unknown:
        return neutron_error(
            400, "HTTPBadRequest", f"[{', '.join(unknown)}] is invalid attribute for filtering"
        )
    selected = [
        item
        for item in items
        if all(_matches(item, k, v) for k, v in req.query.items() if k not in _PAGING)
    ]
    selected.sort(key=lambda item: str(item["id"]))
    body: dict[str, Any] = {}
    marker = req.first("marker")
    if marker is not None:
        selected = [item for item in selected if str(item["id"]) > marker]
    limit_raw = req.first("limit")
    if limit_raw is not None and limit_raw.isdigit() and 0 < int(limit_raw) < len(selected):
        selected = selected[: int(limit_raw)]
        href = (
            f"{req.base_url}/network/v2.0/{collection}?limit={limit_raw}"
            f"&marker={selected[-1]['id']}"
        )
        body[f"{collection}_links"] = [{"rel": "next", "href": href}]
    fields = req.query.get("fields")
    if fields:
        selected = [{k: v for k, v in item.items() if k in fields} for item in selected]
    return json_response(200, {collection: selected, **body})


def _visible_ports(ctx: Context, auth: Auth) -> Iterable[tuple[Server, Port]]:
    for server, port in ctx.inventory.ports():
        if auth.is_admin or server.project == auth.project.name:
            yield server, port


def _visible_networks(ctx: Context, auth: Auth) -> Iterable[Network]:
    for net in ctx.inventory.networks:
        if auth.is_admin or net.shared or net.project == auth.project.name:
            yield net


_PORT_FILTERS = frozenset(
    "id name network_id tenant_id project_id mac_address admin_state_up status device_id"
    " device_owner description binding:vnic_type binding:host_id binding:vif_type"
    " port_security_enabled ip_allocation dns_name revision_number".split()
)


def ports_list(req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]) -> Response:
    """``GET /network/v2.0/ports`` with attribute filters (``device_id``, ``mac_address``…)."""
    assert auth is not None
    items = (render_port(s, p, ctx, auth.is_admin) for s, p in _visible_ports(ctx, auth))
    return _listing(req, "ports", items, _PORT_FILTERS)


def port_show(req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]) -> Response:
    """``GET /network/v2.0/ports/{id}`` (404 ``PortNotFound``)."""
    assert auth is not None
    for server, port in _visible_ports(ctx, auth):
        if port.id == params["id"]:
            return json_response(200, {"port": render_port(server, port, ctx, auth.is_admin)})
    return neutron_error(404, "PortNotFound", f"Port {params['id']} could not be found.")


def networks_list(
    req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]
) -> Response:
    """``GET /network/v2.0/networks`` with attribute filters."""
    assert auth is not None
    items = [render_network(n, ctx, auth.is_admin) for n in _visible_networks(ctx, auth)]
    filters = frozenset(
        "id name tenant_id project_id admin_state_up status shared router:external mtu"
        " description provider:network_type provider:physical_network"
        " provider:segmentation_id is_default revision_number".split()
    )
    return _listing(req, "networks", items, filters)


def network_show(req: Request, ctx: Context, auth: Auth | None, params: dict[str, str]) -> Response:
    """``GET /network/v2.0/networks/{id}`` (404 ``NetworkNotFound``)."""
    assert auth is not None
    for net in _visible_networks(ctx, auth):
        if net.id == params["id"]:
            return json_response(200, {"network": render_network(net, ctx, auth.is_admin)})
    return neutron_error(404, "NetworkNotFound", f"Network {params['id']} could not be found.")
