"""Which VM NIC a received frame belongs to, by its stream (key) and, when shared, its MAC.

Sans-IO: built from a :class:`~vmsniff.manifest.Manifest`, asked per frame by
:class:`~vmsniff.pipeline.core.Pipeline`. The rules (docs/scale.md):

- a dedicated stream's frames are its NIC's;
- in a shared stream, a from-vm frame is the NIC's whose MAC is its source, a to-vm frame the
  NIC's whose MAC is its destination; a to-vm broadcast or multicast frame went to every NIC
  of the stream on its VLAN but its sender, so it is filed under each of them (as each VM's
  own tcpdump would have seen it once);
- a frame no rule places (a MAC the manifest does not list: a spoofing VM, or an unknown
  unicast flooded to the ports) is filed under ``HOST/unattributed`` and counted.

Each NIC's bridge-local VLAN tag (which mirrored frames carry and the VM never sees) is taken
off its frames.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmsniff.formats.capture import epb_flags_of
from vmsniff.formats.ethernet import ETH_ADDRS_LEN, TPIDS, VLAN_TAG_LEN, VLAN_VID_MASK
from vmsniff.manifest import Manifest
from vmsniff.model import Direction

__all__ = ["Attribution", "Target"]

_MAC_LEN = 6
_TCI = ETH_ADDRS_LEN + 2


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", "").replace("-", ""))


@dataclass(frozen=True, slots=True)
class Target:
    """Where one frame goes: the interface name and the VLAN tag to take off (or None)."""

    name: str
    tag: int | None


@dataclass(frozen=True, slots=True)
class _Stream:
    flags: int  #: epb_flags direction bits
    from_vm: bool
    single: Target | None  #: a dedicated stream's one NIC
    by_mac: dict[bytes, Target]  #: a shared stream's NICs by MAC
    unknown: Target


class Attribution:
    """A manifest's streams, ready for one lookup per frame."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.unattributed = 0  #: frames filed under HOST/unattributed
        self._streams: dict[int, _Stream] = {}
        for s in manifest.streams:
            nics = [manifest.nic(n) for n in s.nics]
            targets = {_mac(n.mac): Target(n.name, n.tag) for n in nics}
            self._streams[s.key] = _Stream(
                flags=epb_flags_of(s.direction),
                from_vm=s.direction is Direction.FROM_VM,
                single=Target(nics[0].name, nics[0].tag) if len(nics) == 1 else None,
                by_mac=targets,
                unknown=Target(f"{s.host}/unattributed", None),
            )

    def key_directions(self) -> dict[int, int]:
        """Every stream's key -> its direction bits (the pipeline's --key table)."""
        return {key: s.flags for key, s in self._streams.items()}

    def targets(self, key: int, frame: bytes) -> list[Target]:
        """Where ``frame`` of stream ``key`` goes (at least one place)."""
        s = self._streams[key]
        if s.single is not None:
            return [s.single]
        if s.from_vm:
            hit = s.by_mac.get(frame[_MAC_LEN:ETH_ADDRS_LEN])
        else:
            dst = frame[:_MAC_LEN]
            hit = s.by_mac.get(dst)
            if hit is None and dst and dst[0] & 1:  # broadcast or multicast
                src = frame[_MAC_LEN:ETH_ADDRS_LEN]
                vid = _vid(frame)
                flood = [
                    t
                    for m, t in s.by_mac.items()
                    if m != src and (vid is None or t.tag in (None, vid))
                ]
                if flood:
                    return flood
        if hit is None:
            self.unattributed += 1
            return [s.unknown]
        return [hit]


def _vid(frame: bytes) -> int | None:
    if len(frame) >= _TCI + 2 and (frame[ETH_ADDRS_LEN] << 8 | frame[ETH_ADDRS_LEN + 1]) in TPIDS:
        return (frame[_TCI] << 8 | frame[_TCI + 1]) & VLAN_VID_MASK
    return None


def strip_tag(frame: bytes, tag: int | None) -> tuple[bytes, int]:
    """``frame`` without its outer VLAN tag when that tag is ``tag``; and the bytes removed."""
    if tag is not None and _vid(frame) == tag:
        return frame[:ETH_ADDRS_LEN] + frame[ETH_ADDRS_LEN + VLAN_TAG_LEN :], VLAN_TAG_LEN
    return frame, 0
