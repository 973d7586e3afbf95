"""Resolve a VM name or UUID to a :class:`~vmsniff.model.Target`.

Sources, each optional: Nova/Neutron (:mod:`.nova`), libvirt (:mod:`.libvirt`) and OVSDB
(:mod:`.ovsdb`); endpoints per host from :mod:`.endpoints`; cross-checks in :mod:`.merge`.
With a cloud configured, Nova is the source of record for identity and host; without one
(``--offline`` or no OS_CLOUD), libvirt's Nova metadata names the VM on this host.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from vmsniff.errors import (
    Ambiguous,
    InvalidState,
    NotFound,
    PermissionDenied,
    UsageError,
    VmsniffError,
)
from vmsniff.model import Server, Target
from vmsniff.resolve.endpoints import Endpoints, endpoints_for, load_config
from vmsniff.resolve.libvirt import DomainInfo, LibvirtSource
from vmsniff.resolve.merge import merge_nics, select_nics, single_nic
from vmsniff.resolve.nova import CloudPort, CloudServer, NovaSource, cloud_configured
from vmsniff.resolve.ovsdb import OvsIface

__all__ = ["ResolveOptions", "resolve", "select_nics", "single_nic"]


@dataclass(frozen=True, slots=True)
class ResolveOptions:
    """Everything ``resolve`` (and every command that resolves first) accepts."""

    query: str
    nic: str | None = None
    os_cloud: str | None = None
    all_projects: bool = False
    offline: bool = False  #: do not ask the cloud API even if one is configured
    host: str | None = None  #: the compute host, when the cloud does not tell (non-admin)
    ovsdb: str | None = None
    libvirt: str | None = None
    use_libvirt: bool = True
    use_ovsdb: bool = True
    require_active: bool = True


def _suggest(query: str, names: list[str]) -> str | None:
    close = difflib.get_close_matches(query, sorted(set(names)), n=5, cutoff=0.5)
    return f"did you mean: {', '.join(close)}?" if close else None


def _from_cloud(
    opts: ResolveOptions, shared: NovaSource | None = None
) -> tuple[CloudServer, list[CloudPort], str]:
    nova = shared or NovaSource(opts.os_cloud)
    try:
        all_projects = opts.all_projects
        found = nova.find(opts.query, all_projects=all_projects)
        if not found and not all_projects:
            # An operator with the admin role expects to find any tenant's VM, as with
            # `openstack server show --all-projects`; a member gets 403 and keeps the miss.
            try:
                found = nova.find(opts.query, all_projects=True)
                all_projects = True
            except PermissionDenied:
                pass
        if not found:
            scope = "any project" if all_projects else "your project"
            hint = _suggest(opts.query, nova.names(all_projects=all_projects))
            raise NotFound(
                f"no server named {opts.query!r} (or with that id) in {scope}", hint=hint
            )
        if len(found) > 1:
            raise Ambiguous(
                f"{len(found)} servers are named {opts.query!r}; use the server id",
                candidates=[
                    f"{s.id}  project {s.project_id or '?'}  host {s.host or '?'}  {s.status}"
                    for s in found
                ],
                hint="vmsniff resolve SERVER-ID",
            )
        server = found[0]
        if opts.require_active and server.status != "ACTIVE":
            raise InvalidState(
                f"server {server.name} ({server.id}) is {server.status}, not ACTIVE",
                hint="only a running VM has traffic to see; start it first",
            )
        host = opts.host or server.host
        if not host:
            raise PermissionDenied(
                f"the cloud does not show which host runs {server.name}: the "
                "OS-EXT-SRV-ATTR:host attribute needs the admin role",
                hint="use admin credentials, or pass --host COMPUTE-HOST",
            )
        return server, nova.ports(server.id), host
    finally:
        if shared is None:
            nova.close()


def _domain(opts: ResolveOptions, ep: Endpoints, server: CloudServer | None) -> DomainInfo | None:
    if not opts.use_libvirt or not ep.libvirt:
        return None
    source = LibvirtSource(ep.libvirt)
    try:
        if server is not None:
            hits = source.find(server.instance_name or server.id)
            hits = [d for d in hits if d.uuid == server.id] or hits
            return hits[0] if hits else None
        hits = source.find(opts.query)
        if not hits:
            domains = source.domains()
            names = [d.display_name or d.name for d in domains] + [d.name for d in domains]
            raise NotFound(
                f"no libvirt domain on {ep.host} is named {opts.query!r} (by Nova display "
                "name, instance name or UUID)",
                hint=_suggest(opts.query, names)
                or f"libvirt {ep.libvirt} has {len(domains)} domains; is the VM on another host?",
            )
        if len(hits) > 1:
            raise Ambiguous(
                f"{len(hits)} domains on {ep.host} are named {opts.query!r}; use the UUID",
                candidates=[f"{d.uuid}  {d.name}  project {d.project_name or '?'}" for d in hits],
            )
        return hits[0]
    finally:
        source.close()


def _ovs(opts: ResolveOptions, ep: Endpoints) -> tuple[list[OvsIface] | None, bool]:
    if not opts.use_ovsdb or not ep.ovsdb:
        return None, False
    from vmsniff.ovs.connection import ovsdb
    from vmsniff.resolve.ovsdb import snapshot

    try:
        with ovsdb(ep.ovsdb) as api:
            ifaces, system_ids = snapshot(api)
    except VmsniffError as exc:
        if not ep.local:  # say whose switch it is (a remote host's, from config.toml)
            exc.message = f"host {ep.host}: {exc.message}"
            exc.args = (exc.message,)
        raise
    return ifaces, "ovn-remote" in system_ids


def resolve(
    opts: ResolveOptions, env: Mapping[str, str] = os.environ, *, nova: NovaSource | None = None
) -> Target:
    """Resolve ``opts.query``; raise a VmsniffError that says what to do when it cannot.
    ``nova``: a cloud connection to use (and leave open), for many VMs in a row."""
    config = load_config(env)
    use_cloud = not opts.offline and cloud_configured(opts.os_cloud, env)
    if not use_cloud and not opts.use_libvirt:
        raise UsageError(
            "nothing to resolve with: no cloud configured and libvirt disabled",
            hint="set OS_CLOUD / --os-cloud, or drop --no-libvirt",
        )
    server: CloudServer | None = None
    ports: list[CloudPort] = []
    host = opts.host
    sources: list[str] = []
    warnings: list[str] = []
    if use_cloud:
        server, ports, host = _from_cloud(opts, nova)
        sources.append("nova")
        if opts.host and server.host and opts.host != server.host:
            warnings.append(
                f"Nova says {server.name} runs on {server.host}; using --host {opts.host} as given"
            )
    ep = endpoints_for(
        host, ovsdb_flag=opts.ovsdb, libvirt_flag=opts.libvirt, env=env, config=config
    )
    for what, value in (("libvirt", ep.libvirt), ("OVSDB", ep.ovsdb)):
        if value is None:
            warnings.append(
                f"the VM runs on {ep.host}, not on this host, and no {what} endpoint is "
                f"configured for it (--{what.lower()} or config.toml)"
            )
    domain = _domain(opts, ep, server)
    if domain is not None:
        sources.append("libvirt")
        if server is not None and domain.uuid != server.id:
            warnings.append(f"libvirt domain {domain.name} has UUID {domain.uuid}, not {server.id}")
    elif server is not None and ep.libvirt and opts.use_libvirt:
        warnings.append(
            f"libvirt at {ep.libvirt} has no domain {server.instance_name or server.id}"
        )
    if server is None and domain is None:  # offline, and no libvirt to ask
        raise UsageError(
            f"offline, {opts.query!r} can only be found through libvirt, and none is configured "
            f"for {ep.host}",
            hint="give --libvirt URI (and --ovsdb) for that host, or resolve through the cloud",
        )
    if server is None:
        assert domain is not None
        if opts.require_active and not domain.running:
            raise InvalidState(
                f"domain {domain.name} ({domain.display_name or '?'}) is {domain.state}, "
                "not running",
                hint="only a running VM has traffic to see; start it first",
            )
    ifaces, ovn = _ovs(opts, ep)
    if ifaces is not None:
        sources.append("ovsdb")
    if server is not None:
        ident = Server(
            id=server.id,
            name=server.name,
            project_id=server.project_id,
            status=server.status,
            host=host,
            instance_name=server.instance_name or (domain.name if domain else None),
        )
    else:
        assert domain is not None
        ident = Server(
            id=domain.uuid,
            name=domain.display_name or domain.name,
            project_id=domain.project_id,
            project_name=domain.project_name,
            status="ACTIVE" if domain.running else domain.state.upper(),
            host=ep.host,
            instance_name=domain.name,
        )
    nics, nic_warnings = merge_nics(ident.id, ports, domain, ifaces, ovn=ovn)
    return Target(
        server=ident,
        nics=tuple(select_nics(nics, opts.nic)),
        local=ep.local,
        ovsdb=ep.ovsdb,
        libvirt_uri=ep.libvirt if domain is not None else None,
        sources=tuple(sources),
        warnings=tuple(warnings + nic_warnings),
    )
