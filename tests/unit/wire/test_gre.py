"""vmsniff.wire.gre: RFC 2784 GRE with the RFC 2890 key and sequence number."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.l2 import GRE

from vmsniff.errors import MalformedPacket
from vmsniff.wire.gre import FLAG_C, FLAG_K, FLAG_S, encode_gre, parse_gre, verify_gre_checksum

PAYLOAD = bytes(range(40))


@pytest.mark.parametrize(("csum", "key", "seq"), list(itertools.product([0, 1], repeat=3)))
def test_every_flag_combination_matches_scapy(csum: int, key: int, seq: int) -> None:
    sc = GRE(proto=0x6558, chksum_present=csum, key_present=key, seqnum_present=seq)
    if key:
        sc.key = 0xDEADBEEF
    if seq:
        sc.sequence_number = 4242
    raw = bytes(sc / PAYLOAD)  # scapy fills in the checksum (RFC 2784 section 2.5)
    head = parse_gre(raw)
    assert head.proto == 0x6558
    assert head.header_len == 4 + 4 * (csum + key + seq)
    assert head.key == (0xDEADBEEF if key else None)
    assert head.seq == (4242 if seq else None)
    assert (head.checksum is not None) == bool(csum)
    assert bool(head.flags & FLAG_C) == bool(csum) and bool(head.flags & FLAG_K) == bool(key)
    assert bool(head.flags & FLAG_S) == bool(seq)
    assert raw[head.header_len :] == PAYLOAD
    ours = encode_gre(
        0x6558,
        PAYLOAD,
        key=head.key,
        seq=head.seq,
        with_checksum=bool(csum),
    )
    assert ours == raw
    assert verify_gre_checksum(raw) is (True if csum else None)


def test_bad_checksum_detected() -> None:
    raw = bytearray(encode_gre(0x0800, PAYLOAD, with_checksum=True))
    raw[-1] ^= 0xFF
    assert verify_gre_checksum(raw) is False


def test_version_1_pptp_is_unsupported() -> None:
    raw = bytes.fromhex("3001880b00000000000000ff")  # K+S, version 1, PPP (RFC 2637)
    with pytest.raises(MalformedPacket, match="version 1"):
        parse_gre(raw)


def test_routing_bit_is_unsupported() -> None:
    with pytest.raises(MalformedPacket, match="routing"):
        parse_gre(b"\x40\x00\x08\x00\x00\x00\x00\x00")


def test_strict_route_and_recursion_bits_are_accepted() -> None:
    # Flags 0x1d00 as in tcpdump's erspan-type-iii-pb-1 capture: S, s and recursion 5.
    raw = bytes.fromhex("1d0022eb0000002a")
    head = parse_gre(raw)
    assert head.seq == 42 and head.proto == 0x22EB and head.header_len == 8
    assert encode_gre(0x22EB, seq=42, extra_flags=0x0D00) == raw


@pytest.mark.parametrize(
    "raw", [b"", b"\x00\x00\x65", b"\x20\x00\x65\x58\x00\x00", b"\xb0" + b"\x00" * 10]
)
def test_cut_headers(raw: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse_gre(raw)


@given(st.binary(max_size=24))
def test_fuzz(raw: bytes) -> None:
    try:
        head = parse_gre(raw)
    except MalformedPacket:
        return
    assert 4 <= head.header_len <= len(raw)
    assert encode_gre(head.proto, raw[head.header_len :], key=head.key, seq=head.seq,
                      with_checksum=head.checksum is not None,
                      extra_flags=head.flags)[4 + 4 * (head.checksum is not None):] == raw[
        4 + 4 * (head.checksum is not None) :
    ]  # fmt: skip


@given(
    proto=st.integers(0, 0xFFFF),
    key=st.none() | st.integers(0, 2**32 - 1),
    seq=st.none() | st.integers(0, 2**32 - 1),
    csum=st.booleans(),
    payload=st.binary(max_size=32),
)
def test_round_trip(
    proto: int, key: int | None, seq: int | None, csum: bool, payload: bytes
) -> None:
    raw = encode_gre(proto, payload, key=key, seq=seq, with_checksum=csum)
    head = parse_gre(raw)
    assert (head.proto, head.key, head.seq) == (proto, key, seq)
    assert raw[head.header_len :] == payload
    assert verify_gre_checksum(raw) is (True if csum else None)
    assert bytes(GRE(raw)) == raw
