"""The Nova/Neutron source, through openstacksdk (clouds.yaml, OS_CLOUD, OS_* variables).

API calls for one resolve by name (documented in docs/resolve.md, counted by the lab's
stand-in): Keystone token (1, plus version discovery), compute discovery (1), servers by
exact name (1), ports by device_id (1), one network per distinct network (usually 1).
Errors of openstacksdk/keystoneauth are translated here.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from vmsniff.errors import NotFound, PermissionDenied, Unreachable, UsageError, VmsniffError

__all__ = ["CloudPort", "CloudServer", "NovaSource", "cloud_configured"]

_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I)


def cloud_configured(os_cloud: str | None, env: Mapping[str, str] = os.environ) -> bool:
    """Whether the user pointed us at a cloud (flag, OS_CLOUD or OS_AUTH_URL)."""
    return bool(os_cloud or env.get("OS_CLOUD") or env.get("OS_AUTH_URL"))


@dataclass(frozen=True, slots=True)
class CloudPort:
    """A Neutron port of the server."""

    id: str
    mac: str
    network_id: str
    network_name: str | None
    fixed_ips: tuple[str, ...]
    vnic_type: str | None
    vif_type: str | None
    hybrid_plug: bool | None
    host: str | None


@dataclass(frozen=True, slots=True)
class CloudServer:
    """A Nova server, with the admin-only attributes when visible."""

    id: str
    name: str
    project_id: str | None
    status: str
    host: str | None
    instance_name: str | None


_CREDENTIALS = (
    "check username, password and project of the cloud in clouds.yaml (or the OS_* "
    "variables), or pick another entry with --os-cloud"
)


def _translate(exc: Exception, cloud: str | None) -> VmsniffError:
    from keystoneauth1 import exceptions as ks
    from openstack import exceptions as sdk

    where = f"cloud {cloud!r}" if cloud else "the cloud (OS_CLOUD / OS_* variables)"
    if isinstance(exc, sdk.ConfigException):
        return UsageError(
            f"no usable OpenStack configuration for {where}: {exc}",
            hint="set OS_CLOUD or pass --os-cloud NAME (clouds.yaml), or --offline",
        )
    if isinstance(exc, ks.Unauthorized | sdk.NotFoundException) and "auth" in str(exc).lower():
        return PermissionDenied(f"{where} refused the credentials: {exc}", hint=_CREDENTIALS)
    if isinstance(exc, ks.ConnectFailure | ks.ConnectTimeout | ks.DiscoveryFailure):
        return Unreachable(
            f"cannot reach {where}: {exc}",
            hint="check auth_url in clouds.yaml, or resolve offline with --offline",
        )
    if isinstance(exc, sdk.ForbiddenException | ks.Forbidden):
        return PermissionDenied(
            f"{where} forbids this request: {exc}",
            hint="use credentials with the admin role, drop --all-projects, or pass --host "
            "COMPUTE-HOST (or --offline on the VM's host)",
        )
    if isinstance(exc, ks.Unauthorized):
        return PermissionDenied(f"{where} refused the credentials: {exc}", hint=_CREDENTIALS)
    return Unreachable(
        f"the OpenStack API of {where} failed: {exc}",
        hint="retry; if it persists, check the cloud's API services, or use --offline",
    )


class NovaSource:
    """Servers from Nova, ports and networks from Neutron."""

    name = "nova"

    def __init__(self, cloud: str | None = None, timeout: float = 10.0) -> None:
        self.cloud = cloud
        self.timeout = timeout
        self._conn: Any = None
        self._networks: dict[str, str | None] = {}  #: network id -> name, asked once
        self._servers: list[CloudServer] | None = None  #: prefetch(): every project's servers
        self._ports_of: dict[str, list[Any]] = {}  #: prefetch(): server id -> its ports

    @contextmanager
    def _errors(self) -> Iterator[None]:
        from keystoneauth1 import exceptions as ks
        from openstack import exceptions as sdk

        try:
            yield
        except (sdk.SDKException, ks.ClientException) as exc:
            raise _translate(exc, self.cloud) from None

    def _connect(self) -> Any:
        if self._conn is None:
            # keystoneauth warns on stderr (logging's last resort) before it fails, e.g.
            # "Failed to discover available identity versions"; the translated error says it.
            logging.getLogger("keystoneauth").setLevel(logging.ERROR)
            import openstack

            with self._errors():
                self._conn = openstack.connect(
                    cloud=self.cloud, api_timeout=self.timeout, load_envvars=True
                )
        return self._conn

    def prefetch(self, server_ids: Sequence[str] = ()) -> bool:
        """For many VMs in a row (``mirror VM VM…``): list every project's servers once, and
        the ports of ``server_ids`` (or of every listed server) in one Neutron request, so that
        :meth:`find` and :meth:`ports` answer from memory. False (nothing cached) when the
        cloud refuses the all-projects listing (not admin): each VM is then asked for alone."""
        from openstack import exceptions as sdk

        conn = self._connect()
        try:
            with self._errors():
                servers = [_server(s) for s in conn.compute.servers(details=True,
                                                                    all_projects=True)]  # fmt: skip
        except PermissionDenied:
            return False
        ids = list(server_ids) or [s.id for s in servers]
        with self._errors():
            try:
                ports = list(conn.network.ports(device_id=ids)) if ids else []
            except sdk.SDKException:
                return False
        self._servers = servers
        self._ports_of = {}
        for port in ports:
            self._ports_of.setdefault(port.device_id, []).append(port)
        return True

    def find(self, query: str, *, all_projects: bool = False) -> list[CloudServer]:
        """Servers whose id is ``query`` or whose name is exactly ``query``."""
        from openstack import exceptions as sdk

        conn = self._connect()
        if self._servers is not None:
            hits = [s for s in self._servers if query in (s.id, s.name)]
            if all_projects:
                return hits
            mine = getattr(conn, "current_project_id", None)
            return [s for s in hits if s.project_id == mine]
        with self._errors():
            if _UUID.match(query):
                try:
                    return [_server(conn.compute.get_server(query))]
                except sdk.NotFoundException:
                    pass
            # Nova's name filter is a regular expression: anchor it for an exact match.
            servers = conn.compute.servers(
                details=True, name=f"^{re.escape(query)}$", all_projects=all_projects
            )
            return [_server(s) for s in servers if s.name == query]

    def select(
        self,
        *,
        project: str | None = None,
        network: str | None = None,
        host: str | None = None,
        port_id: str | None = None,
    ) -> list[tuple[str, set[str] | None]]:
        """Servers matching every selector given (``vmsniff mirror --project/--network/--host
        /--port-id``), as (server id, the port ids chosen, or None for all its ports).

        Every project is searched (admin); ``--host`` is Nova's admin-only ``host`` filter,
        ``--network`` the Neutron ports on that network (name or id) with a ``compute:``
        owner, ``--port-id`` that one port's server.
        """
        from openstack import exceptions as sdk

        conn = self._connect()
        chosen: dict[str, set[str]] | None = None  # server id -> port ids
        with self._errors():
            if port_id:
                try:
                    port = conn.network.get_port(port_id)
                except sdk.NotFoundException:
                    raise NotFound(f"no Neutron port {port_id}") from None
                if not port.device_id or not str(port.device_owner or "").startswith("compute:"):
                    raise NotFound(f"Neutron port {port_id} is not a VM's port")
                chosen = {port.device_id: {port.id}}
            if network:
                net = conn.network.find_network(network, ignore_missing=True)
                if net is None:
                    raise NotFound(f"no network {network!r}")
                on_net: dict[str, set[str]] = {}
                for p in conn.network.ports(network_id=net.id):
                    if p.device_id and str(p.device_owner or "").startswith("compute:"):
                        on_net.setdefault(p.device_id, set()).add(p.id)
                chosen = (
                    on_net
                    if chosen is None
                    else {
                        s: chosen[s] & on_net[s] for s in chosen if chosen[s] & on_net.get(s, set())
                    }
                )
            filters: dict[str, str] = {}
            if project:
                filters["project_id"] = project
            if host:
                filters["compute_host"] = host  # the query parameter `host`
            servers = [
                _server(s) for s in conn.compute.servers(details=True, all_projects=True, **filters)
            ]
        if host:  # a member's call ignores the admin-only filter: never take every server
            servers = [s for s in servers if s.host == host]
        if project:
            servers = [s for s in servers if s.project_id == project] or servers
        out: list[tuple[str, set[str] | None]] = []
        for s in servers:
            if chosen is None:
                out.append((s.id, None))
            elif s.id in chosen:
                out.append((s.id, chosen[s.id]))
        return out

    def names(self, *, all_projects: bool = False) -> list[str]:
        """Every visible server name (for close-name suggestions after a miss)."""
        conn = self._connect()
        with self._errors():
            return [s.name for s in conn.compute.servers(details=False, all_projects=all_projects)]

    def ports(self, server_id: str) -> list[CloudPort]:
        """The server's Neutron ports, with network names."""
        conn = self._connect()
        with self._errors():
            if self._servers is not None and server_id in self._ports_of:
                ports = self._ports_of[server_id]
            else:
                ports = list(conn.network.ports(device_id=server_id))
            networks = self._networks
            for port in ports:
                if port.network_id not in networks:
                    try:
                        networks[port.network_id] = conn.network.get_network(port.network_id).name
                    except Exception:  # a network we may not see: keep the id
                        networks[port.network_id] = None
        return [
            CloudPort(
                id=p.id,
                mac=(p.mac_address or "").lower(),
                network_id=p.network_id,
                network_name=networks.get(p.network_id),
                fixed_ips=tuple(ip["ip_address"] for ip in p.fixed_ips or ()),
                vnic_type=p.binding_vnic_type,
                vif_type=p.binding_vif_type,
                hybrid_plug=(p.binding_vif_details or {}).get("ovs_hybrid_plug"),
                host=p.binding_host_id,
            )
            for p in ports
        ]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _server(s: Any) -> CloudServer:
    return CloudServer(
        id=s.id,
        name=s.name,
        project_id=s.project_id,
        status=s.status,
        host=s.compute_host,
        instance_name=s.instance_name,
    )
