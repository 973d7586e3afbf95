"""The libvirt source: domains by instance name, UUID or Nova display name; their NICs.

Nova writes ``<nova:instance>`` metadata (display name, owner) into each domain's XML, so
a compute node with no API credentials can still resolve ``c-private`` to
``instance-00000001`` and its taps. XML parsing is pure (:func:`parse_domain`); only
:class:`LibvirtSource` talks to libvirt, and translates its errors at this boundary.
"""

from __future__ import annotations

import errno
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from vmsniff.errors import MissingDependency, PermissionDenied, Unreachable

__all__ = ["DomainIface", "DomainInfo", "LibvirtSource", "NOVA_NS", "parse_domain"]

NOVA_NS = "http://openstack.org/xmlns/libvirt/nova/1.1"
_STATES = {
    0: "nostate",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutdown",
    5: "shutoff",
    6: "crashed",
    7: "pmsuspended",
}


@dataclass(frozen=True, slots=True)
class DomainIface:
    """One ``<interface>`` of a domain."""

    mac: str
    kind: str  #: the interface type attribute: bridge, ethernet, vhostuser, hostdev, direct
    tap: str | None  #: <target dev>
    source_bridge: str | None
    interface_id: str | None  #: <virtualport><parameters interfaceid> (the Neutron port)
    mtu: int | None


@dataclass(frozen=True, slots=True)
class DomainInfo:
    """What libvirt knows about one domain."""

    name: str
    uuid: str
    state: str
    display_name: str | None
    project_id: str | None
    project_name: str | None
    ifaces: tuple[DomainIface, ...]

    @property
    def running(self) -> bool:
        return self.state == "running"


def parse_domain(xml: str, state: str = "running") -> DomainInfo:
    """Parse a domain's XML (as ``virsh dumpxml`` prints it) into a :class:`DomainInfo`."""
    root = ET.fromstring(xml)
    nova = root.find(f"metadata/{{{NOVA_NS}}}instance")
    display = project_id = project_name = None
    if nova is not None:
        display = nova.findtext(f"{{{NOVA_NS}}}name")
        project = nova.find(f"{{{NOVA_NS}}}owner/{{{NOVA_NS}}}project")
        if project is not None:
            project_id, project_name = project.get("uuid"), project.text
    ifaces = []
    for iface in root.findall("devices/interface"):
        mac = iface.find("mac")
        target = iface.find("target")
        source = iface.find("source")
        params = iface.find("virtualport/parameters")
        mtu = iface.find("mtu")
        ifaces.append(
            DomainIface(
                mac=(mac.get("address") or "").lower() if mac is not None else "",
                kind=iface.get("type", ""),
                # libvirt names a target even for PCI passthrough; only a kernel tap counts.
                tap=(
                    target.get("dev")
                    if target is not None and iface.get("type") not in ("hostdev", "vhostuser")
                    else None
                ),
                source_bridge=source.get("bridge") if source is not None else None,
                interface_id=params.get("interfaceid") if params is not None else None,
                mtu=int(mtu.get("size", "0")) or None if mtu is not None else None,
            )
        )
    return DomainInfo(
        name=root.findtext("name") or "",
        uuid=root.findtext("uuid") or "",
        state=state,
        display_name=display,
        project_id=project_id,
        project_name=project_name,
        ifaces=tuple(ifaces),
    )


_URI_HINT = "pass --libvirt URI (or set LIBVIRT_DEFAULT_URI), or --no-libvirt"
_ROOT_HINT = "run vmsniff as root (or a user libvirt lets in: the libvirt group, polkit)"
_AUTH_ERRORS = (45, 94)  #: VIR_ERR_AUTH_FAILED, VIR_ERR_AUTH_UNAVAILABLE
_EACCES = os.strerror(errno.EACCES)  #: how libvirt's system errors say EACCES on a socket


def _check_test_driver_file(uri: str) -> None:
    """``test:///PATH``: say what is wrong with PATH ourselves. libvirt would say "failed to
    parse xml document" for a missing or unreadable file alike, after libxml2 printed an
    "I/O warning" on stderr that no error handler catches."""
    if not uri.startswith("test:///") or uri == "test:///default":
        return
    path = uri.removeprefix("test://")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise PermissionDenied(
            f"cannot read libvirt test driver file {path} ({uri}): permission denied",
            hint=_ROOT_HINT,
        ) from None
    except OSError as exc:
        raise Unreachable(
            f"cannot connect to libvirt at {uri}: {path}: {exc.strerror}", hint=_URI_HINT
        ) from None


class LibvirtSource:
    """Reads domains from one libvirt connection (read-only)."""

    name = "libvirt"

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._conn: Any = None

    def _connect(self) -> Any:
        if self._conn is None:
            try:
                import libvirt
            except ImportError as exc:  # pragma: no cover - install step covers it
                raise MissingDependency(
                    "libvirt-python is not installed", hint="pip install libvirt-python"
                ) from exc
            # Keep libvirt from printing its errors on stderr by itself (FACTS.md).
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
            _check_test_driver_file(self.uri)
            try:
                self._conn = libvirt.openReadOnly(self.uri)
            except libvirt.libvirtError as exc:
                message = f"cannot connect to libvirt at {self.uri}: {exc.get_error_message()}"
                if exc.get_error_code() in _AUTH_ERRORS or _EACCES in exc.get_error_message():
                    raise PermissionDenied(message, hint=_ROOT_HINT) from None
                raise Unreachable(message, hint=_URI_HINT) from None
        return self._conn

    def domains(self) -> list[DomainInfo]:
        """Every domain of the connection, parsed."""
        import libvirt

        conn = self._connect()
        try:
            found = []
            for dom in conn.listAllDomains():
                state = _STATES.get(dom.state()[0], "unknown")
                found.append(parse_domain(dom.XMLDesc(0), state))
            return found
        except libvirt.libvirtError as exc:
            raise Unreachable(f"libvirt at {self.uri} failed: {exc.get_error_message()}") from None

    def find(self, query: str) -> list[DomainInfo]:
        """Domains whose instance name, UUID or Nova display name is ``query``."""
        q = query.lower()
        return [
            d
            for d in self.domains()
            if q in (d.name.lower(), d.uuid.lower()) or d.display_name == query
        ]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
