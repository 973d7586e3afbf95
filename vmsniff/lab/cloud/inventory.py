"""The stand-in cloud's inventory: who may log in, and which networks, servers and ports exist.

The inventory is immutable data. :func:`build_inventory` checks references (a server's project,
a port's network) and fills every derivable field (ids, MACs, IPs, instance names, creation
times) deterministically, so that the lab and the tests can compute the same ids without
asking the server. :func:`inventory_from_dict` / :func:`inventory_to_dict` convert to and from
the JSON document described in :mod:`vmsniff.lab.cloud`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "DOMAIN_ID",
    "DOMAIN_NAME",
    "SERVER_STATES",
    "Inventory",
    "InventoryError",
    "Network",
    "Port",
    "Project",
    "Server",
    "User",
    "build_inventory",
    "inventory_from_dict",
    "inventory_to_dict",
    "load_inventory",
    "save_inventory",
]

#: The one Keystone domain of the stand-in.
DOMAIN_ID = "default"
DOMAIN_NAME = "Default"

#: Nova server status -> (vm_state, power_state, task_state). Power states are Nova's
#: ``nova.compute.power_state`` numbers (1 RUNNING, 3 PAUSED, 4 SHUTDOWN, 7 SUSPENDED).
SERVER_STATES: Mapping[str, tuple[str, int, str | None]] = {
    "ACTIVE": ("active", 1, None),
    "BUILD": ("building", 0, "spawning"),
    "PAUSED": ("paused", 3, None),
    "SUSPENDED": ("suspended", 7, None),
    "SHUTOFF": ("stopped", 4, None),
    "ERROR": ("error", 0, None),
    "SHELVED_OFFLOADED": ("shelved_offloaded", 4, None),
}

_VNIC_TYPES = frozenset({"normal", "direct", "macvtap"})
_NETWORK_TYPES = frozenset({"vxlan", "geneve", "gre", "vlan", "flat", "local"})
# A fixed namespace so that derived ids are the same on every run and in every process.
_NS = uuid.UUID("6f1c2d9a-5d0e-4f63-9a53-0c6a7e0b5c11")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


class InventoryError(ValueError):
    """The inventory is inconsistent or malformed: the fault of whoever wrote it."""


@dataclass(frozen=True, slots=True)
class Project:
    """A Keystone project (in domain ``Default``); ``id`` is derived from the name if empty."""

    name: str
    id: str = ""


@dataclass(frozen=True, slots=True)
class User:
    """A Keystone user with a password, one project and its role names there."""

    name: str
    password: str
    project: str
    roles: tuple[str, ...] = ("member",)
    id: str = ""

    @property
    def is_admin(self) -> bool:
        """Nova's and Neutron's default policies treat role ``admin`` as the admin."""
        return "admin" in self.roles


@dataclass(frozen=True, slots=True)
class Network:
    """A Neutron network with one IPv4 or IPv6 subnet.

    ``segmentation_id`` is the VNI or VLAN id (``None`` for flat/local networks).
    """

    name: str
    cidr: str
    project: str
    network_type: str = "vxlan"
    segmentation_id: int | None = None
    physical_network: str | None = None
    shared: bool = False
    mtu: int = 0
    id: str = ""

    @property
    def subnet_id(self) -> str:
        """The id of the network's single subnet (derived from the network id)."""
        return str(uuid.uuid5(_NS, f"subnet:{self.id}"))


@dataclass(frozen=True, slots=True)
class Port:
    """A Neutron port bound to a server (``device_id``), as Nova and the ML2 agent left it.

    ``network`` names the network by name or id. ``hybrid_plug`` says whether os-vif plugged
    it tap -> qbr -> qvb/qvo (iptables firewall) or the tap straight into br-int.
    """

    network: str
    mac: str = ""
    ips: tuple[str, ...] = ()
    vnic_type: str = "normal"
    hybrid_plug: bool = False
    id: str = ""


@dataclass(frozen=True, slots=True)
class Server:
    """A Nova server. ``host`` is ``None`` only for SHELVED_OFFLOADED servers."""

    name: str
    project: str
    status: str = "ACTIVE"
    host: str | None = "hv1"
    hypervisor_hostname: str = ""
    instance_name: str = ""
    flavor: str = "m1.tiny"
    image: str = ""
    created: str = ""
    user: str = ""
    ports: tuple[Port, ...] = ()
    id: str = ""

    @property
    def vm_state(self) -> str:
        """``OS-EXT-STS:vm_state`` for the status."""
        return SERVER_STATES[self.status][0]

    @property
    def port_status(self) -> str:
        """Neutron's status for the server's ports: ``ACTIVE`` while its taps exist.

        A stopped, suspended or shelved server has no libvirt domain running, so the agent
        sees its taps vanish and Neutron marks the ports ``DOWN``.
        """
        return "ACTIVE" if self.status in ("ACTIVE", "PAUSED") else "DOWN"


@dataclass(frozen=True, slots=True)
class Inventory:
    """The whole cloud, references checked and every id filled (see :func:`build_inventory`)."""

    projects: tuple[Project, ...] = ()
    users: tuple[User, ...] = ()
    networks: tuple[Network, ...] = ()
    servers: tuple[Server, ...] = ()
    region: str = "RegionOne"

    def project(self, name_or_id: str) -> Project | None:
        """The project with this name or id."""
        return _lookup(name_or_id, self.projects)

    def user(self, name_or_id: str) -> User | None:
        """The user with this name or id."""
        return _lookup(name_or_id, self.users)

    def network(self, name_or_id: str) -> Network | None:
        """The network with this id or (unique) name."""
        return _lookup(name_or_id, self.networks)

    def server(self, server_id: str) -> Server | None:
        """The server with this id (Nova looks servers up by id only)."""
        for server in self.servers:
            if server.id == server_id:
                return server
        return None

    def ports(self) -> Iterable[tuple[Server, Port]]:
        """Every port with the server it is bound to."""
        for server in self.servers:
            for port in server.ports:
                yield server, port


_Named = TypeVar("_Named", Project, User, Network)


def _lookup(key: str, items: Sequence[_Named]) -> _Named | None:
    for item in items:
        if item.id == key or item.name == key:
            return item
    return None


def _derived(kind: str, *parts: str) -> uuid.UUID:
    return uuid.uuid5(_NS, ":".join((kind, *parts)))


def _mac_for(port_id: str) -> str:
    # fa:16:3e is the OUI Neutron uses for the MACs it allocates.
    digest = hashlib.sha256(port_id.encode()).digest()
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in digest[:3])


def _unique(kind: str, values: Iterable[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise InventoryError(f"duplicate {kind} {value!r}")
        seen.add(value)


def build_inventory(
    *,
    projects: Sequence[Project],
    users: Sequence[User],
    networks: Sequence[Network] = (),
    servers: Sequence[Server] = (),
    region: str = "RegionOne",
) -> Inventory:
    """Check references and fill every derivable field; raise :class:`InventoryError`.

    Derived values: project/user ids (uuid5 hex), network and server ids (uuid5), port ids,
    MACs (``fa:16:3e:…``), IPs (the next free address from ``.10`` of the network's subnet),
    ``instance-%08x`` names (by position), ``hypervisor_hostname`` (= host), creation times
    (one minute apart from 2024-01-01) and the server's user (the project's first user).
    """
    projs = tuple(
        dataclasses.replace(p, id=p.id or _derived("project", p.name).hex) for p in projects
    )
    _unique("project name", (p.name for p in projs))
    _unique("project id", (p.id for p in projs))
    by_project = {p.name: p for p in projs} | {p.id: p for p in projs}

    usrs: list[User] = []
    for u in users:
        project = by_project.get(u.project)
        if project is None:
            raise InventoryError(f"user {u.name!r}: unknown project {u.project!r}")
        if not u.roles:
            raise InventoryError(f"user {u.name!r} has no role")
        usrs.append(
            dataclasses.replace(
                u,
                id=u.id or _derived("user", u.name).hex,
                project=project.name,
                roles=tuple(u.roles),
            )
        )
    _unique("user name", (u.name for u in usrs))

    nets: list[Network] = []
    for n in networks:
        if n.project not in by_project:
            raise InventoryError(f"network {n.name!r}: unknown project {n.project!r}")
        if n.network_type not in _NETWORK_TYPES:
            raise InventoryError(f"network {n.name!r}: unknown network_type {n.network_type!r}")
        try:
            ipaddress.ip_network(n.cidr)
        except ValueError as exc:
            raise InventoryError(f"network {n.name!r}: {exc}") from None
        # Neutron subtracts the tunnel overhead from the physical MTU (1500 - 50 for VXLAN);
        # the stand-in uses 1450 for every tunnel type.
        mtu = n.mtu or (1450 if n.network_type in {"vxlan", "geneve", "gre"} else 1500)
        nets.append(
            dataclasses.replace(
                n,
                id=n.id or str(_derived("network", n.name)),
                project=by_project[n.project].name,
                mtu=mtu,
            )
        )
    _unique("network id", (n.id for n in nets))
    _unique("network name", (n.name for n in nets))
    by_network = {n.name: n for n in nets} | {n.id: n for n in nets}
    used_ips: dict[str, set[str]] = {n.id: set() for n in nets}
    for s in servers:
        for p in s.ports:
            if p.network in by_network:
                used_ips[by_network[p.network].id].update(p.ips)

    srvs: list[Server] = []
    for index, s in enumerate(servers):
        project = by_project.get(s.project)
        if project is None:
            raise InventoryError(f"server {s.name!r}: unknown project {s.project!r}")
        if s.status not in SERVER_STATES:
            known = ", ".join(sorted(SERVER_STATES))
            raise InventoryError(f"server {s.name!r}: status {s.status!r} is not one of {known}")
        if s.host is None and s.status != "SHELVED_OFFLOADED":
            raise InventoryError(f"server {s.name!r}: only SHELVED_OFFLOADED servers have no host")
        server_id = s.id or str(_derived("server", project.name, s.name))
        owner = s.user or next((u.name for u in usrs if u.project == project.name), "")
        if s.user and not any(u.name == s.user for u in usrs):
            raise InventoryError(f"server {s.name!r}: unknown user {s.user!r}")
        ports = tuple(
            _fill_port(s.name, server_id, i, p, by_network, used_ips) for i, p in enumerate(s.ports)
        )
        srvs.append(
            dataclasses.replace(
                s,
                id=server_id,
                project=project.name,
                user=owner,
                hypervisor_hostname=s.hypervisor_hostname or (s.host or ""),
                instance_name=s.instance_name or f"instance-{index + 1:08x}",
                created=s.created
                or (_EPOCH + timedelta(minutes=index)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                ports=ports,
            )
        )
    _unique("server id", (s.id for s in srvs))
    _unique("port id", (p.id for s in srvs for p in s.ports))
    _unique("MAC address", (p.mac for s in srvs for p in s.ports))
    return Inventory(
        projects=projs, users=tuple(usrs), networks=tuple(nets), servers=tuple(srvs), region=region
    )


def _fill_port(
    server_name: str,
    server_id: str,
    index: int,
    port: Port,
    by_network: Mapping[str, Network],
    used_ips: dict[str, set[str]],
) -> Port:
    net = by_network.get(port.network)
    if net is None:
        raise InventoryError(f"server {server_name!r}: unknown network {port.network!r}")
    if port.vnic_type not in _VNIC_TYPES:
        raise InventoryError(f"server {server_name!r}: unknown vnic_type {port.vnic_type!r}")
    subnet = ipaddress.ip_network(net.cidr)
    ips = tuple(port.ips)
    for ip in ips:
        try:
            inside = ipaddress.ip_address(ip) in subnet
        except ValueError as exc:
            raise InventoryError(f"server {server_name!r}: {exc}") from None
        if not inside:
            raise InventoryError(f"server {server_name!r}: {ip} is not in {net.name} ({net.cidr})")
    if not ips:
        taken = used_ips[net.id]
        free = next(
            (a for a in subnet.hosts() if int(a) - int(subnet[0]) >= 10 and str(a) not in taken),
            None,
        )
        if free is None:
            raise InventoryError(f"network {net.name!r} has no free address")
        taken.add(str(free))
        ips = (str(free),)
    port_id = port.id or str(_derived("port", server_id, str(index)))
    return dataclasses.replace(
        port, id=port_id, network=net.id, ips=ips, mac=(port.mac or _mac_for(port_id)).lower()
    )


# --- JSON ----------------------------------------------------------------------------------


def _take(cls: type[Any], raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise InventoryError(f"{where}: expected an object, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise InventoryError(f"{where}: unknown keys {sorted(unknown)}")
    return dict(raw)


def inventory_from_dict(raw: Mapping[str, Any]) -> Inventory:
    """Build an inventory from the JSON document (see the package docstring)."""
    if not isinstance(raw, Mapping):
        raise InventoryError("the inventory must be a JSON object")
    unknown = set(raw) - {"region", "projects", "users", "networks", "servers"}
    if unknown:
        raise InventoryError(f"inventory: unknown keys {sorted(unknown)}")
    try:
        projects = [Project(**_take(Project, p, "project")) for p in raw.get("projects", [])]
        users = []
        for u in raw.get("users", []):
            fields = _take(User, u, "user")
            fields["roles"] = tuple(fields.get("roles", ("member",)))
            users.append(User(**fields))
        networks = [Network(**_take(Network, n, "network")) for n in raw.get("networks", [])]
        servers = []
        for s in raw.get("servers", []):
            fields = _take(Server, s, "server")
            ports = []
            for p in fields.get("ports", []):
                pf = _take(Port, p, f"server {fields.get('name')!r} port")
                pf["ips"] = tuple(pf.get("ips", ()))
                ports.append(Port(**pf))
            fields["ports"] = tuple(ports)
            servers.append(Server(**fields))
    except TypeError as exc:  # a required key is missing
        raise InventoryError(str(exc)) from None
    return build_inventory(
        projects=projects,
        users=users,
        networks=networks,
        servers=servers,
        region=str(raw.get("region", "RegionOne")),
    )


def inventory_to_dict(inventory: Inventory) -> dict[str, Any]:
    """The JSON document for an inventory (with every derived field written out)."""

    def plain(obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, tuple):
                value = [plain(v) if dataclasses.is_dataclass(v) else v for v in value]
            out[f.name] = value
        return out

    return {
        "region": inventory.region,
        "projects": [plain(p) for p in inventory.projects],
        "users": [plain(u) for u in inventory.users],
        "networks": [plain(n) for n in inventory.networks],
        "servers": [plain(s) for s in inventory.servers],
    }


def load_inventory(path: str | Path) -> Inventory:
    """Read an inventory JSON file; raise :class:`InventoryError` if it is not valid."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InventoryError(f"{path}: not JSON: {exc}") from None
    return inventory_from_dict(raw)


def save_inventory(inventory: Inventory, path: str | Path) -> None:
    """Write an inventory as JSON, atomically; it holds passwords, so with mode 0600."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(inventory_to_dict(inventory), indent=2) + "\n")
    tmp.replace(target)
