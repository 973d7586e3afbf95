"""The receiver's pipeline, sans-IO: outer frames in, inner packets to write out.

Stages, in order (each is skipped when not asked for)::

    decap (vmsniff.wire) -> --from (outer source) -> --key (session) -> --strip-vlan
        -> filter (libpcap, in C) -> -s snaplen -> Packet

:meth:`Pipeline.push` takes a batch of ``(timestamp_ns, bytes)`` frames of one link type, as a
ring block or a file chunk gives them, and returns the :class:`Packet` values to write; every
frame is counted in :class:`Stats` exactly once as decapsulated-and-written, filtered out,
malformed, not tunnelled (well formed, but not GRE: ARP or DNS in a ``tcpdump -i any``
capture), or held (an IP fragment waiting for the rest of its datagram). Nothing here reads a
clock or touches a socket or file: sources and sinks do that (:mod:`.sources`, :mod:`.sinks`).

Direction (DESIGN.md contract 3): with ``--direction both`` each key K given means K = from-vm
and K+1 = to-vm; with ``from-vm`` or ``to-vm`` every key is that direction. The mark is a pcapng
``epb_flags`` direction: outbound = from-vm, inbound = to-vm. An ERSPAN type III packet with no
such mark gets one from its ``D`` bit (0: ingress into the mirrored port, i.e. sent by the VM).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmsniff.errors import MalformedPacket, UsageError
from vmsniff.filter import InnerFilter
from vmsniff.formats.capture import (
    EPB_FROM_VM,
    EPB_TO_VM,
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    epb_flags_of,
)
from vmsniff.formats.erspan import DIRECTION_EGRESS as ERSPAN_EGRESS
from vmsniff.formats.ethernet import ETH_ADDRS_LEN, TPIDS, VLAN_TAG_LEN, VLAN_VID_MASK
from vmsniff.formats.packet import MAX_SNAPLEN
from vmsniff.manifest import Manifest
from vmsniff.model import Direction
from vmsniff.pcap.encoder import Packet
from vmsniff.pipeline.attribute import Attribution, strip_tag
from vmsniff.wire.decap import NotTunnelled, decap_linktype
from vmsniff.wire.ipv4 import Reassembler

__all__ = [
    "DIRECTIONS",
    "Packet",
    "Pipeline",
    "PipelineConfig",
    "Stats",
    "parse_sources",
]

#: ``--direction`` values (DESIGN.md contract 3).
DIRECTIONS = tuple(d.value for d in Direction)
_TCI = ETH_ADDRS_LEN + 2  # a tag's control information (PCP, DEI, VID) follows its TPID
_TAGGED_HEADER = ETH_ADDRS_LEN + VLAN_TAG_LEN + 2  # addresses, one tag, the EtherType


@dataclass
class Stats:
    """Counters of a receive run; ``kernel_dropped`` is filled in by the live source."""

    received: int = 0
    decapsulated: int = 0
    malformed: int = 0
    not_tunnelled: int = 0
    """Well-formed frames that are not GRE/ERSPAN (read from a file: the live ring only
    takes GRE); not the peer's fault, so not :attr:`malformed`."""
    filtered_out: int = 0
    written: int = 0
    kernel_dropped: int = 0
    fragments_held: int = 0
    malformed_reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The documented JSON keys (docs/receive.md)."""
        return {
            "received": self.received,
            "decapsulated": self.decapsulated,
            "malformed": self.malformed,
            "not_tunnelled": self.not_tunnelled,
            "filtered_out": self.filtered_out,
            "written": self.written,
            "kernel_dropped": self.kernel_dropped,
            "fragments_held": self.fragments_held,
            "malformed_reasons": dict(
                sorted(self.malformed_reasons.items(), key=lambda kv: -kv[1])[:10]
            ),
        }


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_sources(values: Sequence[str]) -> tuple[Network, ...]:
    """``--from ADDR[/LEN]`` values as networks; a bad one is a :class:`UsageError`."""
    out: list[Network] = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise UsageError(f"--from {value!r}: {exc}") from None
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """What the user asked for, checked (build it with the CLI's options)."""

    keys: tuple[int, ...] = ()
    direction: Direction | None = None
    """``--direction``; a string is taken for its :class:`~vmsniff.model.Direction`."""
    strip_vlan: bool = False
    vlan_id: int | None = None
    filter: InnerFilter | None = None
    snaplen: int = MAX_SNAPLEN
    sources: tuple[Network, ...] = ()
    manifest: Manifest | None = None
    """``--manifest``: a multi-VM session's streams; each frame is filed under its NIC
    (:mod:`vmsniff.pipeline.attribute`). It gives the keys and directions itself."""

    def __post_init__(self) -> None:
        if self.manifest is not None and (
            self.keys or self.direction is not None or self.strip_vlan
        ):
            raise UsageError(
                "--manifest gives the session's keys, directions and VLAN tags: leave out "
                "--key, --direction and --strip-vlan"
            )
        if self.direction is not None and not isinstance(self.direction, Direction):
            if self.direction not in DIRECTIONS:
                raise UsageError(f"--direction must be one of {', '.join(DIRECTIONS)}")
            object.__setattr__(self, "direction", Direction(self.direction))
        if self.direction is not None and not self.keys:
            raise UsageError("--direction needs --key: the GRE keys say which way a packet went")
        if self.snaplen < 1:
            raise UsageError("-s must be at least 1")
        for k in self.keys:
            if not 0 <= k <= 0xFFFFFFFF or (self.direction is Direction.BOTH and k == 0xFFFFFFFF):
                raise UsageError(f"--key {k}: out of range")

    def key_directions(self) -> dict[int, int]:
        """Accepted session key -> direction bits (empty: every key, unmarked)."""
        if self.manifest is not None:
            return Attribution(self.manifest).key_directions()
        table: dict[int, int] = {}
        for k in self.keys:
            if self.direction is Direction.BOTH:
                table[k] = EPB_FROM_VM
                table.setdefault(k + 1, EPB_TO_VM)
            else:
                table[k] = epb_flags_of(self.direction)
        return table

    @property
    def marks_direction(self) -> bool:
        """True when packets get from-vm/to-vm marks (pcapng is then the default format)."""
        return self.direction is not None or self.manifest is not None


def _source_matchers(sources: tuple[Network, ...]) -> tuple[tuple[int, int, int], ...]:
    # (address length in bytes, mask, network) as integers: one AND and compare per packet.
    return tuple(
        (net.max_prefixlen // 8, int(net.netmask), int(net.network_address)) for net in sources
    )


class Pipeline:
    """Decapsulate, select, filter and cut frames; count everything in :attr:`stats`."""

    def __init__(self, config: PipelineConfig, *, reassembler: Reassembler | None = None) -> None:
        self.config = config
        self.stats = Stats()
        self.reassembler = reassembler if reassembler is not None else Reassembler()
        self._keys = config.key_directions()
        self._sources = _source_matchers(config.sources)
        self.attribution = None
        if config.manifest is not None:
            self.attribution = Attribution(config.manifest)

    def push(
        self, frames: Iterable[tuple[int, bytes | bytearray | memoryview]], linktype: int
    ) -> list[Packet]:
        """Run a batch of outer frames of ``linktype`` through every stage."""
        out: list[Packet] = []
        append = out.append
        stats = self.stats
        cfg = self.config
        keys = self._keys
        sources = self._sources
        strip = cfg.strip_vlan
        vlan_id = cfg.vlan_id
        snaplen = cfg.snaplen
        flt = cfg.filter
        matchers = {}
        if flt is not None:
            matchers = {lt: flt.matcher(lt) for lt in (LINKTYPE_ETHERNET, LINKTYPE_RAW)}
        reasm = self.reassembler
        reasons = stats.malformed_reasons
        attribution = self.attribution
        for ts_ns, frame in frames:
            stats.received += 1
            try:
                d = decap_linktype(linktype, frame, reasm, ts_ns / 1e9)
            except MalformedPacket as exc:
                if isinstance(exc, NotTunnelled):
                    stats.not_tunnelled += 1
                    continue
                stats.malformed += 1
                reason = exc.message
                reasons[reason] = reasons.get(reason, 0) + 1
                continue
            if d is None:
                stats.fragments_held += 1
                continue
            stats.decapsulated += 1
            if sources:
                src = int.from_bytes(d.outer_src, "big")
                size = len(d.outer_src)
                for nbytes, mask, net in sources:
                    if nbytes == size and src & mask == net:
                        break
                else:
                    stats.filtered_out += 1
                    continue
            session = d.key if d.key is not None else d.erspan_session
            direction = 0
            if keys:
                got = keys.get(session) if session is not None else None
                if got is None:
                    stats.filtered_out += 1
                    continue
                direction = got
            if not direction and d.erspan_direction is not None:
                direction = EPB_TO_VM if d.erspan_direction == ERSPAN_EGRESS else EPB_FROM_VM
            data = bytes(d.inner)
            origlen = d.origlen
            lt = d.linktype
            if attribution is not None and session is not None and lt == LINKTYPE_ETHERNET:
                targets = attribution.targets(session, data)
                erspan = d.erspan_type is not None
                self._attributed(out, targets, ts_ns, data, origlen, session, direction, erspan,
                                 matchers)  # fmt: skip
                continue
            if strip and lt == LINKTYPE_ETHERNET and len(data) >= _TAGGED_HEADER:
                tpid = data[ETH_ADDRS_LEN] << 8 | data[ETH_ADDRS_LEN + 1]
                if tpid in TPIDS and (
                    vlan_id is None or (data[_TCI] << 8 | data[_TCI + 1]) & VLAN_VID_MASK == vlan_id
                ):
                    data = data[:ETH_ADDRS_LEN] + data[ETH_ADDRS_LEN + VLAN_TAG_LEN :]
                    origlen -= VLAN_TAG_LEN
            if flt is not None:
                fn = matchers.get(lt)
                if fn is None or not fn(data):
                    stats.filtered_out += 1
                    continue
            if len(data) > snaplen:
                data = data[:snaplen]
            stats.written += 1
            append(Packet(ts_ns, data, origlen, lt, session, direction, d.erspan_type is not None))
        return out

    def _attributed(
        self,
        out: list[Packet],
        targets: list[Any],
        ts_ns: int,
        frame: bytes,
        origlen: int,
        session: int,
        direction: int,
        erspan: bool,
        matchers: dict[int, Any],
    ) -> None:
        """A frame of a ``--manifest`` session, once per NIC it belongs to (a shared
        stream's to-vm broadcast reached several), each without its NIC's VLAN tag."""
        stats = self.stats
        match = matchers.get(LINKTYPE_ETHERNET)
        snaplen = self.config.snaplen
        kept = False
        for target in targets:
            data, cut = strip_tag(frame, target.tag)
            if match is not None and not match(data):
                continue
            kept = True
            stats.written += 1
            out.append(Packet(ts_ns, data[:snaplen], origlen - cut, LINKTYPE_ETHERNET, session,
                              direction, erspan, target.name))  # fmt: skip
        if not kept:
            stats.filtered_out += 1
