"""The sans-IO pipeline: decap, --from, --key/--direction, --strip-vlan, filter, snaplen, stats."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.pipeline.helpers import HV, erspan2, erspan3, gre, icmp_frame
from vmsniff.errors import UsageError
from vmsniff.filter import InnerFilter
from vmsniff.formats.capture import EPB_FROM_VM, EPB_TO_VM, LINKTYPE_ETHERNET, LINKTYPE_RAW
from vmsniff.pipeline.core import Pipeline, PipelineConfig, parse_sources
from vmsniff.wire.ipv4 import encode_ipv4


def run(cfg: PipelineConfig, packets: list[bytes], linktype: int = LINKTYPE_RAW) -> Pipeline:
    p = Pipeline(cfg)
    p.out = p.push([(i * 1000, pkt) for i, pkt in enumerate(packets)], linktype)  # type: ignore[attr-defined]
    return p


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"key": 7}, {"seq": 3}, {"key": 7, "seq": 3}, {"checksum": True, "key": 1, "seq": 2}],
)
def test_gre_variants_give_the_inner_frame(kwargs: dict[str, object]) -> None:
    inner = icmp_frame(1, size=20)
    p = run(PipelineConfig(), [gre(inner, **kwargs)])  # type: ignore[arg-type]
    (pkt,) = p.out  # type: ignore[attr-defined]
    assert pkt.data == inner and pkt.origlen == len(inner) and pkt.linktype == LINKTYPE_ETHERNET
    assert pkt.session == kwargs.get("key")
    assert p.stats.as_dict()["written"] == 1


def test_ip_in_gre_is_raw_ip() -> None:
    ip = icmp_frame(2)[14:]
    (pkt,) = run(PipelineConfig(), [gre(ip, proto=0x0800)]).out  # type: ignore[attr-defined]
    assert pkt.linktype == LINKTYPE_RAW and pkt.data == ip


def test_direction_both_marks_k_and_k_plus_1_and_drops_other_keys() -> None:
    cfg = PipelineConfig(keys=(100,), direction="both")
    frames = [gre(icmp_frame(i), key=k) for i, k in enumerate((100, 101, 102, 100))]
    p = run(cfg, frames)
    got = [(pkt.session, pkt.direction) for pkt in p.out]  # type: ignore[attr-defined]
    assert got == [(100, EPB_FROM_VM), (101, EPB_TO_VM), (100, EPB_FROM_VM)]
    assert p.stats.filtered_out == 1 and p.stats.written == 3


def test_keys_without_direction_select_but_do_not_mark() -> None:
    p = run(PipelineConfig(keys=(5, 9)), [gre(icmp_frame(0), key=k) for k in (5, 6, 9)])
    assert [(x.session, x.direction) for x in p.out] == [(5, 0), (9, 0)]  # type: ignore[attr-defined]


def test_direction_needs_keys() -> None:
    with pytest.raises(UsageError, match="--key"):
        PipelineConfig(direction="both")


def test_erspan_sessions_and_type_iii_direction_bit() -> None:
    p = run(PipelineConfig(), [erspan2(icmp_frame(0), 7), erspan3(icmp_frame(1), 9, d=0),
                               erspan3(icmp_frame(2), 9, d=1)])  # fmt: skip
    got = [(x.session, x.direction, x.erspan) for x in p.out]  # type: ignore[attr-defined]
    assert got == [(7, 0, True), (9, EPB_FROM_VM, True), (9, EPB_TO_VM, True)]


def test_from_filters_on_outer_source() -> None:
    cfg = PipelineConfig(sources=parse_sources(["10.250.0.0/24"]))
    p = run(cfg, [gre(icmp_frame(0)), gre(icmp_frame(1), src=bytes([10, 9, 9, 9]))])
    assert len(p.out) == 1 and p.stats.filtered_out == 1  # type: ignore[attr-defined]
    assert parse_sources(["10.250.0.1"]) == (ipaddress.ip_network("10.250.0.1/32"),)
    with pytest.raises(UsageError):
        parse_sources(["10.250.0.300"])


@pytest.mark.parametrize(("vid", "stripped"), [(None, True), (1, True), (2, False)])
def test_strip_vlan(vid: int | None, stripped: bool) -> None:
    plain = icmp_frame(3)
    tagged = icmp_frame(3, vlan=1)
    (pkt,) = run(PipelineConfig(strip_vlan=True, vlan_id=vid), [gre(tagged)]).out  # type: ignore[attr-defined]
    assert pkt.data == (plain if stripped else tagged)
    assert pkt.origlen == len(pkt.data)


def test_filter_runs_after_vlan_strip() -> None:
    tagged = gre(icmp_frame(0, vlan=1))
    flt = InnerFilter("icmp")
    assert run(PipelineConfig(filter=flt), [tagged]).stats.filtered_out == 1
    p = run(PipelineConfig(filter=flt, strip_vlan=True), [tagged])
    assert p.stats.written == 1 and p.stats.filtered_out == 0


def test_snaplen_cut_keeps_origlen() -> None:
    inner = icmp_frame(0, size=200)
    (pkt,) = run(PipelineConfig(snaplen=60), [gre(inner)]).out  # type: ignore[attr-defined]
    assert pkt.data == inner[:60] and pkt.origlen == len(inner)


def test_mirror_snaplen_truncation_trusts_captured_bytes() -> None:
    # OVS Mirror.snaplen: the wire packet is cut, the outer IPv4 length still claims the whole.
    inner = icmp_frame(0, size=300)
    whole = gre(inner, key=1)
    cut = whole[:100]
    (pkt,) = run(PipelineConfig(), [cut]).out  # type: ignore[attr-defined]
    assert pkt.data == inner[: 100 - 28] and pkt.origlen == len(inner)


def test_outer_fragments_are_reassembled() -> None:
    inner = icmp_frame(0, size=400)
    payload = gre(inner, key=4)[20:]
    first = encode_ipv4(HV, bytes([10, 250, 0, 2]), 47, payload[:208], ident=9, mf=True)
    second = encode_ipv4(HV, bytes([10, 250, 0, 2]), 47, payload[208:], ident=9, frag_offset=208)
    p = run(PipelineConfig(), [first, second])
    assert [x.data for x in p.out] == [inner]  # type: ignore[attr-defined]
    assert p.stats.fragments_held == 1 and p.stats.received == 2


def test_ethernet_outer_link_type() -> None:
    outer = bytes(12) + b"\x08\x00" + gre(icmp_frame(5), key=2)
    (pkt,) = run(PipelineConfig(), [outer], LINKTYPE_ETHERNET).out  # type: ignore[attr-defined]
    assert pkt.data == icmp_frame(5)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=20), st.sampled_from([LINKTYPE_RAW, 1, 113, 276]))
def test_random_bytes_never_crash_and_are_counted(frames: list[bytes], linktype: int) -> None:
    p = Pipeline(PipelineConfig(filter=None, strip_vlan=True))
    out = p.push([(0, f) for f in frames], linktype)
    s = p.stats
    assert s.received == len(frames)
    assert s.received == s.malformed + s.not_tunnelled + s.decapsulated + s.fragments_held
    assert s.decapsulated == s.filtered_out + s.written == len(out) + s.filtered_out
    assert sum(s.malformed_reasons.values()) == s.malformed


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 2**32 - 1))
def test_random_inner_frames_with_filter_never_crash(inner: bytes, key: int) -> None:
    p = Pipeline(PipelineConfig(filter=InnerFilter("tcp port 80"), strip_vlan=True))
    p.push([(0, gre(inner, key=key)), (0, gre(inner, proto=0x0800))], LINKTYPE_RAW)
    assert p.stats.decapsulated == 2 == p.stats.filtered_out + p.stats.written


def _cooked(linktype: int, proto: int, payload: bytes) -> bytes:
    """A Linux cooked header (v1: 16 bytes, protocol at 14; v2: 20 bytes, protocol at 0)."""
    if linktype == 113:
        return bytes(14) + proto.to_bytes(2, "big") + payload
    return proto.to_bytes(2, "big") + bytes(18) + payload


@pytest.mark.parametrize("linktype", [113, 276])
def test_cooked_captures_and_frames_that_are_not_tunnelled(linktype: int) -> None:
    p = Pipeline(PipelineConfig())
    udp = encode_ipv4(bytes(4), bytes(4), 17, bytes(8))
    out = p.push(
        [
            (1, _cooked(linktype, 0x0800, gre(icmp_frame(1), key=3))),
            (2, _cooked(linktype, 0x0806, bytes(28))),  # ARP
            (3, _cooked(linktype, 0x0800, udp)),
            (4, _cooked(linktype, 0x0800, b"\x45")),  # cut short: malformed
        ],
        linktype,
    )
    assert [(x.data, x.session) for x in out] == [(icmp_frame(1), 3)]
    s = p.stats
    assert (s.received, s.written, s.not_tunnelled, s.malformed) == (4, 1, 2, 1)
    assert s.as_dict()["not_tunnelled"] == 2
