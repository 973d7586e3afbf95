"""vmsniff.wire.erspan: ERSPAN type II and III headers (draft-foschiano-erspan-03)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific

from vmsniff.errors import MalformedPacket
from vmsniff.wire.erspan import (
    ErspanII,
    ErspanIII,
    encode_erspan_ii,
    encode_erspan_iii,
    parse_erspan_ii,
    parse_erspan_iii,
)


def test_type_ii_matches_scapy() -> None:
    raw = bytes(ERSPAN_II(vlan=342, cos=5, en=3, t=1, session_id=666, index=0xABCDE))
    h = parse_erspan_ii(raw)
    assert h == ErspanII(vlan=342, cos=5, en=3, t=1, session_id=666, index=0xABCDE)
    assert encode_erspan_ii(h) == raw and h.header_len == 8


def test_type_iii_matches_scapy() -> None:
    sc = ERSPAN_III(
        vlan=20, cos=3, bso=2, t=1, session_id=1023, timestamp=0x01020304, sgt_other=0xBEEF,
        p=1, ft=2, hw=63, d=1, gra=2, o=0,
    )  # fmt: skip
    raw = bytes(sc)
    h = parse_erspan_iii(raw)
    assert (h.vlan, h.cos, h.bso, h.t, h.session_id) == (20, 3, 2, 1, 1023)
    assert (h.timestamp, h.sgt, h.p, h.ft, h.hw_id, h.d, h.gra, h.o) == (
        0x01020304, 0xBEEF, 1, 2, 63, 1, 2, 0,
    )  # fmt: skip
    assert h.header_len == 12 and encode_erspan_iii(h) == raw


def test_type_iii_platform_subheader_matches_scapy() -> None:
    sc = ERSPAN_III(session_id=7, d=0, o=1) / ERSPAN_PlatformSpecific(
        platf_id=5, info1=0x123456, info2=0x89ABCDEF
    )
    raw = bytes(sc)
    h = parse_erspan_iii(raw)
    assert h.o == 1 and h.header_len == 20 and h.platf_id == 5
    assert h.platf_info == (0x123456 << 32) | 0x89ABCDEF
    assert encode_erspan_iii(h) == raw


@pytest.mark.parametrize(
    ("parse", "raw"),
    [
        (parse_erspan_ii, b"\x10\x00\x00"),
        (parse_erspan_ii, b"\x20" + b"\x00" * 7),  # version 2 in a type II slot
        (parse_erspan_iii, b"\x20" + b"\x00" * 10),
        (parse_erspan_iii, b"\x10" + b"\x00" * 11),
        (parse_erspan_iii, b"\x20" + b"\x00" * 10 + b"\x01" + b"\x00" * 4),  # O set, 5 of 8 bytes
    ],
)
def test_malformed(parse: object, raw: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse(raw)  # type: ignore[operator]


@given(st.binary(max_size=24))
def test_fuzz(raw: bytes) -> None:
    for parse in (parse_erspan_ii, parse_erspan_iii):
        try:
            h = parse(raw)
        except MalformedPacket:
            continue
        assert h.header_len <= len(raw)


@given(
    st.builds(
        ErspanII,
        vlan=st.integers(0, 0xFFF),
        cos=st.integers(0, 7),
        en=st.integers(0, 3),
        t=st.integers(0, 1),
        session_id=st.integers(0, 0x3FF),
        index=st.integers(0, 0xFFFFF),
    )
)
def test_round_trip_ii(h: ErspanII) -> None:
    raw = encode_erspan_ii(h)
    assert parse_erspan_ii(raw) == h
    assert bytes(ERSPAN_II(raw)) == raw


@given(
    st.builds(
        ErspanIII,
        vlan=st.integers(0, 0xFFF),
        cos=st.integers(0, 7),
        bso=st.integers(0, 3),
        t=st.integers(0, 1),
        session_id=st.integers(0, 0x3FF),
        timestamp=st.integers(0, 2**32 - 1),
        sgt=st.integers(0, 0xFFFF),
        p=st.integers(0, 1),
        ft=st.integers(0, 31),
        hw_id=st.integers(0, 63),
        d=st.integers(0, 1),
        gra=st.integers(0, 3),
        platf_id=st.none() | st.integers(0, 63),
    ).flatmap(
        lambda h: (
            st.just(h)
            if h.platf_id is None
            else st.integers(0, 2**58 - 1).map(
                lambda info: ErspanIII(**{**_fields(h), "platf_info": info})
            )
        )
    )
)
def test_round_trip_iii(h: ErspanIII) -> None:
    raw = encode_erspan_iii(h)
    assert parse_erspan_iii(raw) == h


def _fields(h: ErspanIII) -> dict[str, object]:
    return {name: getattr(h, name) for name in ErspanIII.__dataclass_fields__}
