"""A multi-VM session's description, from ``vmsniff mirror VM… --manifest F`` to ``receive``.

A session over several VM NICs on several hosts sends each host's mirrored frames in tunnel
*streams*, one GRE key (or ERSPAN session id) per stream and direction. The manifest says which
NIC each stream carries, so that ``vmsniff receive --manifest F`` files every frame under an
interface named after its NIC (``c-private/eth0``) with its direction:

- a *dedicated* stream carries one NIC: every frame is that NIC's;
- a *shared* stream (one Mirror selecting many ports, for more NICs on a host than Open
  vSwitch's 32 mirrors per bridge allow) carries several: a from-vm frame belongs to the NIC
  whose MAC is its source, a to-vm frame to the NIC whose MAC is its destination, and a to-vm
  broadcast or multicast frame to every NIC of the stream on that VLAN but its sender
  (:mod:`vmsniff.pipeline.attribute`).

The file is JSON (``docs/scale.md`` documents its keys); this module only builds, encodes and
checks it: pure, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vmsniff.errors import UsageError
from vmsniff.model import Direction

__all__ = ["FORMAT", "Manifest", "ManifestNic", "Stream", "parse_manifest"]

#: The ``format`` key's value: a receiver refuses any other (a newer vmsniff's file).
FORMAT = "vmsniff-session/1"


@dataclass(frozen=True, slots=True)
class ManifestNic:
    """One mirrored VM NIC."""

    name: str  #: the pcapng interface name: VM name / NIC name (``c-private/eth0``)
    vm: str
    vm_id: str
    mac: str  #: lower case, colon-separated
    host: str
    port_id: str | None = None
    tag: int | None = None
    """The bridge-local VLAN tag of its OVS port: mirrored frames carry it, the VM does not see
    it, so the receiver takes it off."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "vm": self.vm, "vm_id": self.vm_id, "mac": self.mac,
            "host": self.host, "port_id": self.port_id, "tag": self.tag,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Stream:
    """One tunnel key and what it carries."""

    key: int
    direction: Direction  #: FROM_VM or TO_VM
    host: str
    nics: tuple[str, ...]  #: NIC names: one (dedicated) or several (shared, by MAC)

    @property
    def shared(self) -> bool:
        return len(self.nics) > 1

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "direction": self.direction.value, "host": self.host,
                "nics": list(self.nics)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Manifest:
    """A session as its receiver needs it."""

    session: str
    to: str  #: the receiver's address
    encap: str  #: gre or erspan
    expires: str
    nics: tuple[ManifestNic, ...]
    streams: tuple[Stream, ...]
    via: str = "ovs"  #: ovs (OVSDB Mirror rows per host) or ovn (Northbound Mirror rows)

    def __post_init__(self) -> None:
        names = [n.name for n in self.nics]
        if len(set(names)) != len(names):
            raise UsageError("manifest: two NICs have the same name")
        keys = [s.key for s in self.streams]
        if len(set(keys)) != len(keys):
            raise UsageError("manifest: two streams have the same key")
        known = set(names)
        for s in self.streams:
            if s.direction is Direction.BOTH:
                raise UsageError(f"manifest: stream {s.key} must be from-vm or to-vm")
            missing = [n for n in s.nics if n not in known]
            if not s.nics or missing:
                raise UsageError(f"manifest: stream {s.key} names unknown NICs {missing}")

    def nic(self, name: str) -> ManifestNic:
        return next(n for n in self.nics if n.name == name)

    @property
    def keys(self) -> tuple[int, ...]:
        return tuple(s.key for s in self.streams)

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n.host for n in self.nics))

    def receive_command(self, path: str) -> str:
        """What to run on the receiver (the file copied there under the same name)."""
        return f"vmsniff receive --manifest {path} -w session-{self.session[:8]}.pcapng"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "session": self.session,
            "via": self.via,
            "to": self.to,
            "encap": self.encap,
            "expires": self.expires,
            "nics": [n.to_dict() for n in self.nics],
            "streams": [s.to_dict() for s in self.streams],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        what = getattr(kind, "__name__", "value")
        raise UsageError(f"manifest: {where}{key} is missing or not a {what}")
    return value


def parse_manifest(text: str | bytes, origin: str = "manifest") -> Manifest:
    """The manifest in ``text``; a :class:`UsageError` naming ``origin`` when it is not one."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{origin} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(
            f"{origin} is not a vmsniff session manifest ({FORMAT})",
            hint="give the file `vmsniff mirror VM… --manifest FILE` wrote",
        )
    try:
        nics = tuple(
            ManifestNic(
                name=_field(n, "name", str, "nics[]."),
                vm=_field(n, "vm", str, "nics[]."),
                vm_id=_field(n, "vm_id", str, "nics[]."),
                mac=_field(n, "mac", str, "nics[].").lower(),
                host=_field(n, "host", str, "nics[]."),
                port_id=n.get("port_id"),
                tag=n.get("tag"),
            )
            for n in _field(data, "nics", list, "")
        )
        streams = tuple(
            Stream(
                key=_field(s, "key", int, "streams[]."),
                direction=Direction(_field(s, "direction", str, "streams[].")),
                host=_field(s, "host", str, "streams[]."),
                nics=tuple(_field(s, "nics", list, "streams[].")),
            )
            for s in _field(data, "streams", list, "")
        )
        return Manifest(
            session=_field(data, "session", str, ""),
            to=_field(data, "to", str, ""),
            encap=_field(data, "encap", str, ""),
            expires=_field(data, "expires", str, ""),
            nics=nics,
            streams=streams,
            via=data.get("via", "ovs"),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, UsageError):
            raise
        raise UsageError(f"{origin}: {exc}") from None


def nic_names(vm: str, count: int) -> Sequence[str]:
    """NIC names as the guest usually has them, in the order of the VM's interfaces."""
    return [f"{vm}/eth{i}" for i in range(count)]
