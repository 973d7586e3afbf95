"""vmsniff.wire.ipv4: the outer IPv4 header (RFC 791) and the fragment reassembler."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.l2 import GRE
from scapy.packet import Raw

from vmsniff.errors import MalformedPacket
from vmsniff.wire.ipv4 import Reassembler, checksum, encode_ipv4, format_ipv4, parse_ipv4

A = bytes([192, 0, 2, 1])
B = bytes([198, 51, 100, 7])


def test_parse_scapy_packet() -> None:
    pkt = bytes(IP(src="192.0.2.1", dst="198.51.100.7", id=77, ttl=9, tos=4) / GRE() / (b"x" * 9))
    head, payload, truncated = parse_ipv4(pkt)
    assert (head.src, head.dst, head.proto, head.ident, head.ttl, head.tos) == (A, B, 47, 77, 9, 4)
    assert head.header_len == 20 and head.total_length == len(pkt)
    assert not head.is_fragment and not truncated
    assert bytes(payload) == pkt[20:]
    assert checksum(pkt[:20]) == 0
    assert format_ipv4(head.src) == "192.0.2.1"


def test_options_and_fragment_fields() -> None:
    pkt = bytes(IP(src="192.0.2.1", dst="198.51.100.7", options=b"\x01" * 4, flags="MF", frag=3))
    head, payload, _ = parse_ipv4(pkt + b"\x00" * 6)  # link padding is not payload
    assert head.header_len == 24 and head.options == b"\x01" * 4
    assert head.mf and not head.df and head.frag_offset == 24 and head.is_fragment
    assert bytes(payload) == b""


def test_truncated_by_snaplen_keeps_claimed_length() -> None:
    pkt = bytes(IP(src="192.0.2.1", dst="198.51.100.7") / UDP() / (b"y" * 100))
    head, payload, truncated = parse_ipv4(pkt[:60])
    assert truncated and head.total_length == len(pkt) and len(payload) == 40


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x45" * 19,
        bytes(IP())[:1].replace(b"\x45", b"\x65") + bytes(IP())[1:],  # version 6
        b"\x44" + bytes(IP())[1:],  # IHL 4 (16 bytes)
        b"\x4f" + bytes(IP())[1:],  # IHL 15 but only 20 bytes
        bytes(IP())[:2] + b"\x00\x10" + bytes(IP())[4:],  # total length 16 < header
    ],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse_ipv4(data)


@given(st.binary(max_size=80))
def test_fuzz_parse(data: bytes) -> None:
    try:
        head, payload, truncated = parse_ipv4(data)
    except MalformedPacket:
        return
    assert head.header_len + len(payload) <= len(data)
    assert truncated == (len(data) < head.total_length)


@given(
    proto=st.integers(0, 255),
    ident=st.integers(0, 0xFFFF),
    ttl=st.integers(0, 255),
    tos=st.integers(0, 255),
    df=st.booleans(),
    mf=st.booleans(),
    off=st.integers(0, 0x1FFF),
    options=st.binary(max_size=10).map(lambda b: b + b"\x00" * (-len(b) % 4)),
    payload=st.binary(max_size=64),
)
def test_round_trip(
    proto: int,
    ident: int,
    ttl: int,
    tos: int,
    df: bool,
    mf: bool,
    off: int,
    options: bytes,
    payload: bytes,
) -> None:
    raw = encode_ipv4(
        A, B, proto, payload, ident=ident, ttl=ttl, tos=tos, df=df, mf=mf,
        frag_offset=off * 8, options=options,
    )  # fmt: skip
    assert checksum(raw[: 20 + len(options)]) == 0
    assert raw == bytes(IP(raw))  # scapy agrees on every byte, checksum included
    head, got, truncated = parse_ipv4(raw)
    assert (head.proto, head.ident, head.ttl, head.tos, head.df, head.mf) == (
        proto, ident, ttl, tos, df, mf,
    )  # fmt: skip
    assert head.frag_offset == off * 8 and head.options == options
    assert bytes(got) == payload and not truncated


def _fragments(size: int = 3000, fragsize: int = 1000, ident: int = 5) -> tuple[bytes, list[bytes]]:
    whole = IP(src="192.0.2.1", dst="198.51.100.7", id=ident, proto=47) / Raw(
        bytes(range(256)) * (size // 256 + 1)
    )
    whole = IP(bytes(whole)[: 20 + size])
    whole.len = None
    whole.chksum = None
    whole = IP(bytes(whole))
    return bytes(whole), [bytes(f) for f in fragment(whole, fragsize=fragsize)]


def _push(r: Reassembler, raw: bytes, now: float = 0.0) -> bytes | None:
    head, payload, _ = parse_ipv4(raw)
    return r.push(head, payload, now)


@given(st.randoms(use_true_random=False))
def test_reassembles_in_any_order(rnd: random.Random) -> None:
    whole, frags = _fragments()
    assert len(frags) == 3
    frags.append(frags[1])  # a duplicate too
    rnd.shuffle(frags)
    r = Reassembler()
    results = [_push(r, f) for f in frags]
    done = [x for x in results if x is not None]
    assert len(done) == 1 and results.index(done[0]) >= 2
    assert done[0] == whole
    head, payload, _ = parse_ipv4(done[0])
    ohead, opayload, _ = parse_ipv4(whole)
    assert bytes(payload) == bytes(opayload) and not head.is_fragment
    assert (head.src, head.dst, head.proto, head.ident) == (ohead.src, ohead.dst, 47, 5)
    assert checksum(done[0][:20]) == 0
    # A duplicate arriving after completion opens a new entry, left for the timeout to drop.
    assert len(r) == (1 if results.index(done[0]) < len(frags) - 1 else 0)


def test_not_a_fragment_passes_through() -> None:
    pkt = encode_ipv4(A, B, 47, b"abcd", ident=3)
    assert _push(Reassembler(), pkt) == pkt


def test_overlap_is_malformed_and_dropped() -> None:
    r = Reassembler()
    _push(r, encode_ipv4(A, B, 47, b"a" * 16, mf=True, ident=1))
    with pytest.raises(MalformedPacket, match="overlap"):
        _push(r, encode_ipv4(A, B, 47, b"b" * 16, mf=True, frag_offset=8, ident=1))
    assert len(r) == 0


def test_bad_fragments() -> None:
    r = Reassembler()
    with pytest.raises(MalformedPacket, match="multiple of 8"):
        _push(r, encode_ipv4(A, B, 47, b"a" * 10, mf=True, ident=1))
    cut = encode_ipv4(A, B, 47, b"a" * 16, mf=True, ident=1)[:30]
    with pytest.raises(MalformedPacket, match="cut short"):
        _push(r, cut)
    with pytest.raises(MalformedPacket, match="65535"):
        _push(r, encode_ipv4(A, B, 47, b"a" * 16, frag_offset=0xFFF8, ident=1))
    _push(r, encode_ipv4(A, B, 47, b"a" * 8, frag_offset=16, ident=2))
    with pytest.raises(MalformedPacket, match="two different last"):
        _push(r, encode_ipv4(A, B, 47, b"a" * 8, frag_offset=32, ident=2))
    _push(r, encode_ipv4(A, B, 47, b"a" * 8, frag_offset=16, ident=3))
    with pytest.raises(MalformedPacket, match="beyond"):
        _push(r, encode_ipv4(A, B, 47, b"a" * 16, mf=True, frag_offset=16, ident=3))


def test_timeout_uses_callers_clock() -> None:
    r = Reassembler(timeout=2.0)
    _push(r, encode_ipv4(A, B, 47, b"a" * 8, mf=True, ident=9), now=100.0)
    assert len(r) == 1 and r.expire(101.0) == 0
    # The last fragment comes too late: the first was dropped, so nothing completes.
    assert _push(r, encode_ipv4(A, B, 47, b"b" * 8, frag_offset=8, ident=9), now=103.0) is None
    assert r.expired == 1 and len(r) == 1


def test_table_is_bounded() -> None:
    r = Reassembler(max_datagrams=2)
    for ident in range(5):
        _push(r, encode_ipv4(A, B, 47, b"a" * 8, mf=True, ident=ident))
    assert len(r) == 2 and r.evicted == 3
    # The newest survive: completing ident 4 works, ident 0 was evicted.
    assert _push(r, encode_ipv4(A, B, 47, b"b" * 8, frag_offset=8, ident=4)) is not None
    assert _push(r, encode_ipv4(A, B, 47, b"b" * 8, frag_offset=8, ident=0)) is None


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Reassembler(max_datagrams=0)
    with pytest.raises(ValueError):
        encode_ipv4(A, B, 47, b"", options=b"\x01")
    with pytest.raises(ValueError):
        encode_ipv4(A, B, 47, b"", frag_offset=3)
