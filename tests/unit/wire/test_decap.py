"""vmsniff.wire.decap: scapy-crafted GRE and ERSPAN packets through both entry points."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.layers.inet import ICMP, IP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import GRE, Dot1Q, Ether
from scapy.packet import Packet

from vmsniff.errors import MalformedPacket
from vmsniff.formats.capture import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)
from vmsniff.wire.decap import Decapsulated, decap_ethernet, decap_ip, decap_linktype
from vmsniff.wire.erspan import parse_erspan_ii, parse_erspan_iii
from vmsniff.wire.gre import encode_gre, parse_gre
from vmsniff.wire.ipv4 import Reassembler, parse_ipv4

OUTER = IP(src="192.0.2.1", dst="198.51.100.7")
INNER_ETH = Ether(src="fa:16:3e:00:00:01", dst="fa:16:3e:00:00:02") / IP(
    src="10.0.0.1", dst="10.0.0.2"
) / ICMP() / (b"p" * 32)  # fmt: skip
INNER_IP = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / (b"q" * 20)


def _eth() -> Ether:
    return Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")


def _both(pkt: Packet) -> list[Decapsulated]:
    """Decap via the raw-socket path (IP) and the offline path (Ethernet), both must agree."""
    ip = bytes(pkt)
    eth = bytes(_eth() / pkt)
    a, b = decap_ip(ip), decap_ethernet(eth)
    assert a is not None and b is not None
    assert a._replace(inner=b"") == b._replace(inner=b"")
    assert bytes(a.inner) == bytes(b.inner)
    return [a, b]


@pytest.mark.parametrize("csum", [0, 1])
@pytest.mark.parametrize("key", [None, 0x1234])
@pytest.mark.parametrize("seq", [None, 99])
def test_gre_ethernet_inner(csum: int, key: int | None, seq: int | None) -> None:
    gre = GRE(proto=0x6558, chksum_present=csum)
    if key is not None:
        gre.key_present, gre.key = 1, key
    if seq is not None:
        gre.seqnum_present, gre.sequence_number = 1, seq
    for d in _both(OUTER / gre / INNER_ETH):
        assert bytes(d.inner) == bytes(INNER_ETH)
        assert d.linktype == LINKTYPE_ETHERNET and d.proto == 0x6558
        assert (d.key, d.seq) == (key, seq)
        assert d.erspan_type is None and d.erspan_version is None and d.erspan_session is None
        assert d.outer_src == bytes([192, 0, 2, 1]) and d.outer_dst == bytes([198, 51, 100, 7])
        assert d.caplen == d.origlen == len(INNER_ETH) and not d.truncated


@pytest.mark.parametrize("inner", [INNER_IP, IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP()])
def test_gre_ip_inner(inner: Packet) -> None:
    for d in _both(OUTER / GRE(key_present=1, key=7) / inner):
        assert d.linktype == LINKTYPE_RAW and bytes(d.inner) == bytes(inner)
        assert d.proto == (0x0800 if isinstance(inner, IP) else 0x86DD) and d.key == 7


def test_erspan_type_i() -> None:
    for d in _both(OUTER / GRE(proto=0x88BE, seqnum_present=0) / INNER_ETH):
        assert d.erspan_type == 1 and d.erspan_version is None and d.seq is None
        assert d.linktype == LINKTYPE_ETHERNET and bytes(d.inner) == bytes(INNER_ETH)


def test_erspan_type_ii() -> None:
    pkt = OUTER / GRE(proto=0x88BE, seqnum_present=1, sequence_number=171) / ERSPAN_II(
        vlan=342, session_id=666, index=5
    ) / INNER_ETH  # fmt: skip
    for d in _both(pkt):
        assert (d.erspan_type, d.erspan_version, d.erspan_session, d.erspan_vlan) == (
            2,
            1,
            666,
            342,
        )
        assert d.seq == 171 and d.erspan_direction is None
        assert bytes(d.inner) == bytes(INNER_ETH)


@pytest.mark.parametrize("direction", [0, 1])
@pytest.mark.parametrize("platform", [False, True])
def test_erspan_type_iii(direction: int, platform: bool) -> None:
    hdr: Packet = ERSPAN_III(vlan=20, session_id=1000, d=direction, o=int(platform), hw=3)
    if platform:
        hdr = hdr / ERSPAN_PlatformSpecific(platf_id=3, info2=77)
    for d in _both(OUTER / GRE(proto=0x22EB) / hdr / INNER_ETH):
        assert (d.erspan_type, d.erspan_version, d.erspan_session) == (3, 2, 1000)
        assert d.erspan_direction == direction and d.erspan_vlan == 20
        assert bytes(d.inner) == bytes(INNER_ETH) and d.linktype == LINKTYPE_ETHERNET


def test_erspan_type_iii_ip_frame() -> None:
    for d in _both(OUTER / GRE(proto=0x22EB) / ERSPAN_III(ft=2) / INNER_IP):
        assert d.linktype == LINKTYPE_RAW and bytes(d.inner) == bytes(INNER_IP)


def test_outer_vlan_and_padding() -> None:
    pkt = OUTER / GRE(proto=0x0800) / IP(src="10.0.0.1", dst="10.0.0.2")
    frame = bytes(_eth() / Dot1Q(vlan=5) / Dot1Q(vlan=6) / pkt) + b"\x00" * 10  # link padding
    d = decap_ethernet(frame)
    assert d is not None and bytes(d.inner) == bytes(pkt[GRE].payload)


def test_outer_ipv6() -> None:
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrDestOpt() / GRE(
        proto=0x6558, key_present=1, key=3
    ) / INNER_ETH  # fmt: skip
    d = decap_ip(bytes(pkt))
    assert d is not None and d.key == 3 and bytes(d.inner) == bytes(INNER_ETH)
    assert d.outer_src == bytes.fromhex("20010db8000000000000000000000001")


def test_snaplen_cut_reports_original_length() -> None:
    # OVS Mirror.snaplen=100 with a keyed GRE port: 100 bytes on the wire counting outer
    # Ethernet (14) + IPv4 (20) + GRE with key (8); the outer total length is not fixed up.
    full = bytes(_eth() / OUTER / GRE(proto=0x6558, key_present=1, key=1) / INNER_ETH)
    d = decap_ethernet(full[:100])
    assert d is not None and d.truncated
    assert d.caplen == 100 - 42 and d.origlen == len(INNER_ETH)
    assert bytes(d.inner) == bytes(INNER_ETH)[:58]


def test_linktypes() -> None:
    pkt = bytes(OUTER / GRE(proto=0x6558) / INNER_ETH)
    for lt, prefix in [(LINKTYPE_RAW, b""), (LINKTYPE_NULL, b"\x02\x00\x00\x00"),
                       (LINKTYPE_LINUX_SLL, b"\x00" * 14 + b"\x08\x00")]:  # fmt: skip
        d = decap_linktype(lt, prefix + pkt)
        assert d is not None and bytes(d.inner) == bytes(INNER_ETH)
    with pytest.raises(MalformedPacket, match="link type"):
        decap_linktype(147, pkt)
    with pytest.raises(MalformedPacket):
        decap_linktype(LINKTYPE_LINUX_SLL, b"\x00" * 10)


def test_fragmented_outer_packet() -> None:
    big = INNER_ETH.copy()
    big[ICMP].remove_payload()
    big = big / (b"z" * 3000)
    whole = OUTER.copy()
    whole.id = 321
    whole = IP(bytes(whole / GRE(proto=0x6558, key_present=1, key=9) / big))
    frags = [bytes(f) for f in fragment(whole, fragsize=1400)]
    assert len(frags) == 3
    with pytest.raises(MalformedPacket, match="fragment"):
        decap_ip(frags[0])
    r = Reassembler()
    assert decap_ip(frags[2], r, 1.0) is None
    assert decap_ethernet(bytes(_eth() / IP(frags[0])), r, 1.1) is None
    d = decap_ip(frags[1], r, 1.2)
    assert d is not None and d.key == 9 and bytes(d.inner) == bytes(big)


@pytest.mark.parametrize("with_hop_by_hop", [False, True])
def test_fragmented_outer_ipv6_packet(with_hop_by_hop: bool) -> None:
    """An IPv6 underlay fragments at the sender (RFC 8200 section 4.5): the pieces are put back
    together, in any order, unfragmentable extension headers kept."""
    from scapy.layers.inet6 import IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, fragment6

    big = INNER_ETH.copy()
    big[ICMP].remove_payload()
    big = big / (b"z" * 3000)
    head = IPv6(src="fd00::1", dst="fd00::2")
    if with_hop_by_hop:
        head = head / IPv6ExtHdrHopByHop()
    whole = head / IPv6ExtHdrFragment(id=77) / GRE(proto=0x6558, key_present=1, key=9) / big
    frags = [bytes(f) for f in fragment6(whole, 1280)]
    assert len(frags) == 3
    with pytest.raises(MalformedPacket, match="fragment"):
        decap_ip(frags[0])
    r = Reassembler()
    assert decap_ip(frags[2], r, 1.0) is None
    assert decap_ip(frags[0], r, 1.1) is None
    d = decap_ip(frags[1], r, 1.2)
    assert d is not None and d.key == 9 and bytes(d.inner) == bytes(big)
    assert d.outer_src == bytes.fromhex("fd00" + "00" * 13 + "01") and len(r) == 0
    # overlapping pieces are a peer's fault: dropped and counted as malformed
    r = Reassembler()
    assert decap_ip(frags[0], r, 1.0) is None
    with pytest.raises(MalformedPacket, match="overlap"):
        decap_ip(frags[0][:-8] + b"x" * 8, r, 1.1)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (bytes(OUTER / UDP()), "not GRE"),
        (bytes(OUTER / GRE(proto=0x880B)), "unsupported protocol"),
        (bytes(OUTER / GRE(version=1, proto=0x880B, key_present=1)), "PPTP"),
        (bytes(OUTER / GRE(routing_present=1)), "flags"),
        (bytes(OUTER / GRE(key_present=1))[:26], "cut short"),
        (bytes(OUTER / GRE(seqnum_present=1))[:26], "cut short"),
        (bytes(OUTER / GRE(chksum_present=1))[:26], "cut short"),
        (bytes(OUTER / GRE(proto=0x88BE, seqnum_present=1) / b"\x10\x00"), "ERSPAN II"),
        (bytes(OUTER / GRE(proto=0x88BE, seqnum_present=1) / (b"\x20" + b"\x00" * 7)), "version"),
        (bytes(OUTER / GRE(proto=0x22EB) / (b"\x20" + b"\x00" * 5)), "ERSPAN III"),
        (bytes(OUTER / GRE(proto=0x22EB) / (b"\x10" + b"\x00" * 11)), "version"),
        (bytes(OUTER / GRE(proto=0x22EB) / ERSPAN_III(ft=1)), "frame type"),
        (bytes(OUTER / GRE(proto=0x22EB) / ERSPAN_III(o=1)), "platform"),
        (bytes(OUTER / GRE())[:22], "GRE"),
        (b"", "no header"),
        (b"\x55" + bytes(20), "version 5"),
        (b"\x45" + bytes(10), "shorter"),
        (b"\x42" + bytes(OUTER / GRE())[1:], "header length"),
        (bytes(IPv6(nh=47)), "jumbogram"),
        (bytes(IPv6() / UDP()), "not GRE"),
        (bytes(IPv6(nh=60, plen=8)) + b"\x2f\x05" + bytes(6), "beyond"),
        (bytes(IPv6(nh=60, plen=8)) + b"\x2f", "cut short"),
        (bytes(IPv6())[:30], "shorter"),
    ],
)
def test_malformed(raw: bytes, match: str) -> None:
    with pytest.raises(MalformedPacket, match=match):
        decap_ip(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00" * 13,
        b"\x00" * 12 + b"\x81\x00\x00\x05",
        b"\x00" * 12 + b"\x08\x06" + bytes(28),
        b"\x00" * 12 + b"\x81\x00\x00\x05" * 9 + b"\x08\x00" + bytes(OUTER / GRE()),
    ],
)
def test_malformed_ethernet(raw: bytes) -> None:
    with pytest.raises(MalformedPacket):
        decap_ethernet(raw)


@given(st.binary(max_size=96), st.sampled_from([0, 1, 101, 113, 228, 229, 147]))
def test_fuzz(raw: bytes, linktype: int) -> None:
    r = Reassembler(max_datagrams=4)
    for call in (lambda: decap_ip(raw, r), lambda: decap_ethernet(raw, r),
                 lambda: decap_linktype(linktype, raw, r)):  # fmt: skip
        try:
            d = call()
        except MalformedPacket:
            continue
        if d is not None:
            assert len(d.inner) == d.caplen <= d.origlen


_PREFIX = bytes([0x45, 0, 0, 0, 0, 0, 0, 0, 64, 47, 0, 0]) + bytes(8)


@given(
    gre_proto=st.sampled_from([0x6558, 0x0800, 0x86DD, 0x88BE, 0x22EB]),
    key=st.none() | st.integers(0, 2**32 - 1),
    seq=st.none() | st.integers(0, 2**32 - 1),
    csum=st.booleans(),
    erspan=st.binary(min_size=20, max_size=20),
    payload=st.binary(max_size=40),
    cut=st.integers(0, 120),
)
def test_agrees_with_layer_parsers(
    gre_proto: int,
    key: int | None,
    seq: int | None,
    csum: bool,
    erspan: bytes,
    payload: bytes,
    cut: int,
) -> None:
    """The inline hot path decodes exactly what the layer parsers decode."""
    body = encode_gre(gre_proto, erspan + payload, key=key, seq=seq, with_checksum=csum)
    total = 20 + len(body)
    packet = bytearray(_PREFIX)
    packet[2:4] = total.to_bytes(2, "big")
    packet += body
    packet = packet[: max(20, len(packet) - cut)]
    try:
        got = decap_ip(packet)
    except MalformedPacket:
        got = None
    head, ip_payload, _ = parse_ipv4(packet)
    expected = None
    try:
        gre = parse_gre(ip_payload)
        off = gre.header_len
        session = vlan = direction = etype = None
        if gre_proto == 0x88BE and gre.seq is not None:
            e2 = parse_erspan_ii(ip_payload[off:])
            session, vlan, etype, off = e2.session_id, e2.vlan, 2, off + e2.header_len
        elif gre_proto == 0x88BE:
            etype = 1
        elif gre_proto == 0x22EB:
            e3 = parse_erspan_iii(ip_payload[off:])
            if e3.ft not in (0, 2):
                raise MalformedPacket("frame type")
            session, vlan, direction, etype = e3.session_id, e3.vlan, e3.d, 3
            off += e3.header_len
        if off > len(ip_payload):
            raise MalformedPacket("cut")
        expected = (gre.key, gre.seq, etype, session, vlan, direction,
                    bytes(ip_payload[off:]), total - 20 - off)  # fmt: skip
    except MalformedPacket:
        pass
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert (got.key, got.seq, got.erspan_type, got.erspan_session, got.erspan_vlan,
                got.erspan_direction, bytes(got.inner), got.origlen) == expected  # fmt: skip
