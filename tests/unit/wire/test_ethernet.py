"""vmsniff.wire.ethernet: Ethernet II, 802.1Q and 802.1ad tags, strip_vlan."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

from vmsniff.errors import MalformedPacket
from vmsniff.wire.ethernet import VlanTag, encode_ethernet, parse_ethernet, strip_vlan

DST, SRC = "02:00:00:00:00:01", "02:00:00:00:00:02"


def test_untagged() -> None:
    raw = bytes(Ether(dst=DST, src=SRC) / IP())
    h = parse_ethernet(raw)
    assert h.dst == bytes.fromhex("020000000001") and h.src == bytes.fromhex("020000000002")
    assert h.tags == () and h.ethertype == 0x0800 and h.header_len == 14


def test_qinq_matches_scapy() -> None:
    raw = bytes(
        Ether(dst=DST, src=SRC) / Dot1AD(vlan=100, prio=5, dei=1) / Dot1Q(vlan=42, prio=3) / IP()
    )
    h = parse_ethernet(raw)
    assert h.tags == (VlanTag(0x88A8, 5, 1, 100), VlanTag(0x8100, 3, 0, 42))
    assert h.ethertype == 0x0800 and h.header_len == 22
    assert encode_ethernet(h.dst, h.src, h.ethertype, raw[22:], h.tags) == raw


def test_strip_vlan() -> None:
    inner = Ether(dst=DST, src=SRC) / IP()
    tagged = bytes(Ether(dst=DST, src=SRC) / Dot1Q(vlan=7) / IP())
    assert strip_vlan(tagged) == bytes(inner)
    assert strip_vlan(tagged, vid=7) == bytes(inner)
    assert strip_vlan(tagged, vid=8) == tagged  # another VLAN: left alone
    assert strip_vlan(bytes(inner)) == bytes(inner)  # no tag: unchanged
    qinq = bytes(Ether(dst=DST, src=SRC) / Dot1AD(vlan=100) / Dot1Q(vlan=7) / IP())
    assert strip_vlan(qinq, vid=100) == tagged  # only the outermost goes


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 13,
        b"\x00" * 12 + b"\x81\x00\x00",
        b"\x00" * 12 + b"\x81\x00" * 9 + b"\x00\x00",
    ],
)
def test_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse_ethernet(raw)


def test_strip_vlan_malformed() -> None:
    with pytest.raises(MalformedPacket):
        strip_vlan(b"\x00" * 10)
    with pytest.raises(MalformedPacket):
        strip_vlan(b"\x00" * 12 + b"\x81\x00\x00")


@given(st.binary(max_size=64), st.none() | st.integers(0, 4095))
def test_fuzz(raw: bytes, vid: int | None) -> None:
    try:
        h = parse_ethernet(raw)
    except MalformedPacket:
        pass
    else:
        assert h.header_len == 14 + 4 * len(h.tags) <= len(raw)
    try:
        out = strip_vlan(raw, vid)
    except MalformedPacket:
        return
    assert len(out) in (len(raw), len(raw) - 4)


@given(
    tags=st.lists(
        st.builds(
            VlanTag,
            tpid=st.sampled_from([0x8100, 0x88A8, 0x9100]),
            pcp=st.integers(0, 7),
            dei=st.integers(0, 1),
            vid=st.integers(0, 4095),
        ),
        max_size=8,
    ),
    ethertype=st.integers(0, 0xFFFF).filter(lambda t: t not in (0x8100, 0x88A8, 0x9100)),
    payload=st.binary(max_size=16),
)
def test_round_trip(tags: list[VlanTag], ethertype: int, payload: bytes) -> None:
    raw = encode_ethernet(b"\x01" * 6, b"\x02" * 6, ethertype, payload, tuple(tags))
    h = parse_ethernet(raw)
    assert h.tags == tuple(tags) and h.ethertype == ethertype
    assert raw[h.header_len :] == payload
