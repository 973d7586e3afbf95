"""vmsniff.dissect.flow_key: the flow fields decode()'s layers give, never an exception."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.dissect.test_dissect import _crafted
from tests.unit.wire.conftest import captures_path, require_captures
from vmsniff.dissect import (
    Erspan,
    Ethernet,
    FlowKey,
    Frame,
    Geneve,
    Gre,
    Icmp,
    ICMPv6,
    IPv4,
    IPv6,
    Tcp,
    Udp,
    Vlan,
    Vxlan,
    decode,
    flow_key,
)
from vmsniff.errors import MalformedPacket
from vmsniff.formats.capture import LINKTYPE_ETHERNET, LINKTYPE_RAW
from vmsniff.pcap.reader import read_records

_CARRIES = {0x6558, 0x0800, 0x86DD, 0x88BE, 0x22EB}  # what GRE carries that is followed


def _addr(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def expected(frame: Frame) -> FlowKey | None:
    """The flow key by the rules of vmsniff.dissect.flow, from the frame's layers' fields:
    the innermost packet (not inside an IP fragment), its first VLAN tag, and the VNI and
    mirror key of the tunnels it came through; None when it could not be read."""
    eth: Ethernet | None = None
    ip: Any = None
    l4: Any = None
    vlan = vni = mirror = inner_vni = inner_mirror = None
    inside = False
    previous: Any = None
    for layer in frame.layers:
        if isinstance(layer, Ethernet):
            eth, ip, vlan, vni, mirror, inside = layer, None, None, inner_vni, inner_mirror, False
        elif isinstance(layer, IPv4 | IPv6):
            if ip is not None:
                eth, vlan, vni, mirror = None, None, inner_vni, inner_mirror
            ip, l4, inside = layer, None, False
        elif isinstance(layer, Tcp | Udp | Icmp | ICMPv6):
            l4 = layer
        elif isinstance(layer, Vlan):
            vlan = layer.vid if vlan is None else vlan
        elif isinstance(layer, Vxlan | Geneve | Gre):
            if ip is not None and (ip.is_fragment if isinstance(ip, IPv4) else
                                   ip.fragment_id is not None):  # fmt: skip
                break
            if isinstance(layer, Gre):
                inner_vni = None if isinstance(previous, Udp) else vni
                inner_mirror, inside = layer.key, layer.proto in _CARRIES
            else:
                inner_vni, inner_mirror = layer.vni, mirror
                inside = isinstance(layer, Vxlan) or layer.proto == 0x6558
        elif isinstance(layer, Erspan) and layer.type != 1:
            inner_mirror = layer.session
        previous = layer
    wire = frame.wire_length
    if inside:
        return None
    if ip is None:
        if eth is None or eth.ethertype in (0x0800, 0x86DD):
            return None
        src, dst = bytes.fromhex(eth.src.replace(":", "")), bytes.fromhex(eth.dst.replace(":", ""))
        return FlowKey(eth.ethertype, src, dst, 0, 0, wire, False, vlan, vni, mirror)
    src, dst = _addr(ip.src), _addr(ip.dst)
    fragment = (ip.ident if ip.is_fragment else None) if isinstance(ip, IPv4) else ip.fragment_id
    if ip.fragment_offset:
        return FlowKey(ip.proto, src, dst, -1, -1, wire, True, vlan, vni, mirror, 0, 0, fragment)
    if ip.proto in (6, 17, 1, 58) and l4 is None:
        return None
    sport = dport = flags = payload = 0
    if isinstance(l4, Tcp | Udp):
        sport, dport = l4.sport, l4.dport
    if isinstance(l4, Tcp):
        flags, payload = l4.flags, l4.payload_length
    if isinstance(l4, Icmp | ICMPv6):
        sport = dport = l4.ident or 0
    return FlowKey(ip.proto, src, dst, sport, dport, wire, True, vlan, vni, mirror, flags,
                   payload, fragment)  # fmt: skip


REAL = [p for p in sorted(captures_path().rglob("*.pcap*")) if p.suffix in (".pcap", ".pcapng")]


@pytest.mark.parametrize("path", REAL or [Path("absent")], ids=lambda p: p.name)
def test_flow_key_agrees_with_decode_on_the_real_captures(path: Path) -> None:
    require_captures()
    records = []
    try:
        for rec in read_records([path.read_bytes()]):
            records.append(rec)
    except MalformedPacket:  # a damaged file: the frames before the damage
        pass
    for rec in records:
        frame = decode(rec.data, rec.linktype, length=rec.origlen)
        assert flow_key(rec.data, rec.linktype, rec.origlen) == expected(frame), frame
        for cut in range(0, len(rec.data), 7):  # and every 7th truncation of it
            data = rec.data[:cut]
            assert flow_key(data, rec.linktype) == expected(decode(data, rec.linktype))


def test_flow_key_on_crafted_frames() -> None:
    frames = _crafted()
    syn = flow_key(frames[0], LINKTYPE_ETHERNET, 100)
    assert syn == FlowKey(6, _addr("10.0.0.1"), _addr("10.0.0.2"), 1234, 80, 100, True,
                          tcp_flags=0x02)  # fmt: skip
    qinq = flow_key(frames[2])
    assert qinq is not None and qinq.vlan == 7 and (qinq.sport, qinq.dport) == (5000, 6000)
    vxlan = flow_key(frames[8])
    assert vxlan is not None and vxlan.vni == 42 and vxlan.src == _addr("192.168.0.5")
    gre = flow_key(frames[9])
    assert gre is not None and gre.mirror == 100 and gre.vni is None and gre.dport == 22
    arp = flow_key(frames[6])
    assert arp is not None and not arp.ip and arp.proto == 0x0806
    for frame in frames:
        assert flow_key(frame) == expected(decode(frame))
        assert flow_key(memoryview(frame)) == flow_key(frame)  # zero-copy input, same key


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([LINKTYPE_ETHERNET, LINKTYPE_RAW, 113, 276, 0]))
def test_flow_key_of_arbitrary_bytes_never_raises_and_agrees(data: bytes, linktype: int) -> None:
    assert flow_key(data, linktype) == expected(decode(data, linktype))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 9), st.integers(0, 199), st.binary(min_size=1, max_size=4))
def test_flow_key_of_damaged_frames_agrees(which: int, at: int, junk: bytes) -> None:
    """Arbitrary bytes rarely get past Ethernet: damage real-looking frames instead."""
    frame = bytearray(_crafted()[which])
    at %= len(frame)
    frame[at : at + len(junk)] = junk
    data = bytes(frame)
    assert flow_key(data) == expected(decode(data))
