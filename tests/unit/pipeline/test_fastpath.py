"""The numpy fast path writes exactly what the packet-by-packet pipeline and encoder write."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.pipeline.blocks import block
from tests.unit.pipeline.helpers import erspan2, erspan3, gre, icmp_frame
from vmsniff.filter import InnerFilter
from vmsniff.formats.capture import LINKTYPE_RAW
from vmsniff.formats.packet import PACKET_OUTGOING
from vmsniff.manifest import Manifest, ManifestNic, Stream
from vmsniff.model import Direction
from vmsniff.pcap.encoder import new_encoder
from vmsniff.pcap.pcap import file_header
from vmsniff.pcap.reader import CaptureReader
from vmsniff.pipeline.core import Pipeline, PipelineConfig, parse_sources
from vmsniff.pipeline.fastpath import FastPath
from vmsniff.pipeline.scatter import joined
from vmsniff.wire.ipv4 import encode_ipv4

HV = bytes([10, 250, 0, 1])
OTHER = bytes([10, 9, 9, 9])
RX = bytes([10, 250, 0, 2])


def reference(cfg: PipelineConfig, fmt: str, packets: list[tuple[Any, ...]]) -> tuple[bytes, Any]:
    pipe = Pipeline(cfg)
    enc = new_encoder(fmt, cfg.snaplen)
    frames = [(p[0], p[1]) for p in packets if (p[2] if len(p) == 3 else 0) != PACKET_OUTGOING]
    out = b"".join(enc.encode(pkt) for pkt in pipe.push(frames, LINKTYPE_RAW))
    return out, pipe.stats


def fast(
    cfg: PipelineConfig, fmt: str, packets: list[tuple[Any, ...]], **layout: int
) -> tuple[bytes, Any]:
    mem, base, count, first = block(packets, **layout)
    pipe = Pipeline(cfg)
    enc = new_encoder(fmt, cfg.snaplen)
    size = layout.get("size", 1 << 16)
    fp = FastPath(mem, size, pipe, enc, kernel_filtered=False)
    out = joined(fp.process(base, count, first))
    fp.close()
    pipe.stats.copied = fp.copied  # type: ignore[attr-defined]
    return out, pipe.stats


def pcapng_view(data: bytes) -> list[tuple[Any, ...]]:
    """Each packet of a pcapng stream as (interface name, ts, caplen, origlen, flags, bytes):
    the same capture whatever order its interfaces were declared in."""
    names: list[str] = []
    out: list[tuple[Any, ...]] = []
    off = 0
    while off < len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        assert blen >= 12 and blen % 4 == 0 and off + blen <= len(data)
        assert struct.unpack_from("<I", data, off + blen - 4)[0] == blen
        body = data[off + 8 : off + blen - 4]
        if btype == 1:
            opts, name = body[8:], ""
            while opts:
                code, olen = struct.unpack_from("<HH", opts)
                if code == 2:
                    name = opts[4 : 4 + olen].decode()
                opts = opts[4 + olen + (-olen % 4) :]
            names.append(name)
        elif btype == 6:
            ifid, hi, lo, cap, orig = struct.unpack_from("<IIIII", body)
            pkt = body[20 : 20 + cap]
            opts = body[20 + cap + (-cap % 4) :]
            flags = None
            while opts:
                code, olen = struct.unpack_from("<HH", opts)
                if code == 2:
                    flags = struct.unpack_from("<I", opts, 4)[0]
                opts = opts[4 + olen + (-olen % 4) :]
            out.append((names[ifid], hi << 32 | lo, cap, orig, flags, pkt))
        off += blen
    return out


def same_capture(fmt: str, got: bytes, want: bytes) -> None:
    if fmt == "pcap":
        assert got == want
    else:
        assert pcapng_view(got) == pcapng_view(want)


def mixed_traffic() -> list[tuple[int, bytes] | tuple[int, bytes, int]]:
    frames: list[tuple[int, bytes] | tuple[int, bytes, int]] = []
    ts = 1_700_000_000_000_000_000
    variants: list[dict[str, Any]] = [
        {"key": 100},
        {"key": 101},
        {"key": 102},
        {},
        {"seq": 9},
        {"key": 100, "seq": 1},
        {"checksum": True, "key": 101},
        {"checksum": True},
        {"checksum": True, "key": 100, "seq": 3},
    ]
    n = 0
    for v in variants:
        for size in (0, 30, 1400):
            for vlan in (None, 1, 7):
                frames.append((ts + n, gre(icmp_frame(n, vlan=vlan, size=size), **v)))
                n += 1
    # snaplen-cut by a mirror: the outer length claims more than there is
    inner = icmp_frame(n, size=500)
    whole = gre(inner, key=100)
    frames.append((ts + n, gre(inner[:100], key=100, total_length=len(whole))))
    # Ethernet padding after a short packet: the outer length claims less
    frames.append((ts + n + 1, gre(icmp_frame(n + 1)[:16], key=100) + bytes(6)))
    # from another hypervisor
    frames.append((ts + n + 2, gre(icmp_frame(n + 2), key=100, src=OTHER)))
    # not the fast shape: ERSPAN, raw IP in GRE, a fragment, IPv4 options, not GRE, garbage
    frames.append((ts + n + 3, erspan2(icmp_frame(n + 3), 100)))
    frames.append((ts + n + 4, erspan3(icmp_frame(n + 4), 101, d=1)))
    frames.append((ts + n + 5, gre(icmp_frame(n + 5)[14:], proto=0x0800, key=100)))
    whole = gre(icmp_frame(n + 6, size=200), key=100)
    payload = whole[20:]
    frames.append((ts + n + 6, encode_ipv4(HV, RX, 47, payload[:120], ident=77, mf=True)))
    frames.append((ts + n + 7, encode_ipv4(HV, RX, 47, payload[120:], ident=77, frag_offset=120)))
    frames.append((ts + n + 8, encode_ipv4(HV, RX, 47, payload, options=bytes(4))))
    frames.append((ts + n + 9, encode_ipv4(HV, RX, 17, bytes(30))))
    frames.append((ts + n + 10, b"\x45\x00"))
    frames.append((ts + n + 11, gre(b"", key=100)))
    # what this host sent: never counted
    frames.append((ts + n + 12, gre(icmp_frame(n + 12), key=100), PACKET_OUTGOING))
    frames.append((ts + n + 13, gre(icmp_frame(n + 13), key=100)))
    # a shared stream's to-vm frames: to a NIC's MAC, broadcast, to a stranger; tagged too
    to_c = icmp_frame(n + 14)
    frames.append((ts + n + 14, gre(to_c, key=103)))
    frames.append((ts + n + 15, gre(b"\xff" * 6 + to_c[6:], key=103)))
    frames.append((ts + n + 16, gre(bytes.fromhex("020000000077") + to_c[6:], key=103)))
    frames.append((ts + n + 17, gre(icmp_frame(n + 17, vlan=1), key=103)))
    frames.append((ts + n + 18, gre(to_c[:6] + bytes.fromhex("020000000077") + to_c[12:], key=102)))
    frames.append((ts + n + 19, gre(to_c[:10], key=103)))
    return frames


def manifest(*, shared: bool) -> Manifest:
    """Keys 100/101: one NIC (tag 7); 102/103: the frames' source and destination MACs,
    shared or not."""
    nics = (
        ManifestNic("a/eth0", "a", "a-id", "02:00:00:00:00:09", "hv1", tag=7),
        ManifestNic("b/eth0", "b", "b-id", "02:00:00:00:00:01", "hv2", tag=1),
        ManifestNic("c/eth0", "c", "c-id", "02:00:00:00:00:02", "hv2"),
    )
    two = ("b/eth0", "c/eth0") if shared else ("b/eth0",)
    streams = (
        Stream(100, Direction.FROM_VM, "hv1", ("a/eth0",)),
        Stream(101, Direction.TO_VM, "hv1", ("a/eth0",)),
        Stream(102, Direction.FROM_VM, "hv2", two),
        Stream(103, Direction.TO_VM, "hv2", two),
    )
    return Manifest("s", "10.250.0.2", "gre", "2026-12-04T00:00:00Z", nics, streams)


CONFIGS = {
    "plain": PipelineConfig(),
    "keys both": PipelineConfig(keys=(100,), direction="both"),
    "keys unmarked": PipelineConfig(keys=(100, 102)),
    "to-vm": PipelineConfig(keys=(101,), direction="to-vm"),
    "strip": PipelineConfig(strip_vlan=True),
    "strip 7": PipelineConfig(strip_vlan=True, vlan_id=7, keys=(100,), direction="both"),
    "snaplen": PipelineConfig(snaplen=40),
    "from": PipelineConfig(sources=parse_sources(["10.250.0.0/24"])),
    "from v6 only": PipelineConfig(sources=parse_sources(["fd00::/8"])),
    "manifest dedicated": PipelineConfig(manifest=manifest(shared=False)),
    "manifest shared": PipelineConfig(manifest=manifest(shared=True)),
}


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fast_path_equals_the_pipeline(name: str, fmt: str) -> None:
    cfg = CONFIGS[name]
    packets = mixed_traffic()
    want, want_stats = reference(cfg, fmt, packets)
    got, got_stats = fast(cfg, fmt, packets, size=1 << 17)
    same_capture(fmt, got, want)
    assert got_stats.as_dict() == want_stats.as_dict()


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_filter_in_userspace_when_not_in_the_kernel(fmt: str) -> None:
    cfg = PipelineConfig(filter=InnerFilter("icmp and ip[4:2] < 20"), keys=(100,), direction="both")
    packets = mixed_traffic()
    want, want_stats = reference(cfg, fmt, packets)
    got, got_stats = fast(cfg, fmt, packets, size=1 << 17)
    same_capture(fmt, got, want)
    assert got_stats.as_dict() == want_stats.as_dict()
    assert 0 < want_stats.written < want_stats.decapsulated


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("mac", [68, 82, 96])
def test_only_fast_packets_and_a_full_block(fmt: str, mac: int) -> None:
    """All-fast blocks take the vectorised branch; the last record fits or is copied."""
    cfg = PipelineConfig(keys=(100,), direction="both")
    packets: list[tuple[int, bytes]] = []
    size = 1 << 14
    n = 0
    used = 48
    while used + 2 * (mac + 200) <= size:
        pkt = gre(icmp_frame(n, size=n % 50), key=100 + n % 2)
        packets.append((n * 1000, pkt))
        used += (mac + len(pkt) + 7) & ~7
        n += 1
    bare = len(gre(icmp_frame(n), key=100))
    packets.append((n * 1000, gre(icmp_frame(n, size=size - used - mac - bare), key=100)))
    # the last packet ends at the very end of the block: its trailer cannot go in place
    want, _ = reference(cfg, fmt, packets)
    got, stats = fast(cfg, fmt, packets, size=size, mac=mac)
    same_capture(fmt, got, want)
    assert stats.written == len(packets)
    if fmt == "pcapng":  # the last record's trailer would run past the block: copied
        assert stats.copied == 1


def test_limit_stops_after_count() -> None:
    cfg = PipelineConfig()
    packets = mixed_traffic()
    mem, base, count, first = block(packets, size=1 << 17)  # type: ignore[arg-type]
    pipe = Pipeline(cfg)
    fp = FastPath(mem, 1 << 17, pipe, new_encoder("pcap", cfg.snaplen), kernel_filtered=False)
    records = joined(fp.process(base, count, first, limit=5))
    assert pipe.stats.written == 5
    want, _ = reference(cfg, "pcap", packets)
    assert want.startswith(records)
    assert len(CaptureReader().feed(file_header(cfg.snaplen, 1) + records)) == 5


def test_block_in_the_middle_of_the_ring() -> None:
    cfg = PipelineConfig(keys=(100,), direction="both")
    packets = mixed_traffic()
    want, _ = reference(cfg, "pcapng", packets)
    got, _ = fast(cfg, "pcapng", packets, size=1 << 17, base=1 << 17, total=3 << 17)
    same_capture("pcapng", got, want)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([None, 100, 101, 102, 103, 7]),
            st.sampled_from([None, 1]),
            st.booleans(),
            st.booleans(),
            st.integers(0, 300),
            st.integers(0, 80),
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(sorted(CONFIGS)),
    st.sampled_from(["pcap", "pcapng"]),
)
def test_random_traffic(spec: list[tuple[Any, ...]], name: str, fmt: str) -> None:
    packets = []
    for i, (key, seq, csum, vlan, size, cut) in enumerate(spec):
        inner = icmp_frame(i, vlan=7 if vlan else None, size=size)
        pkt = gre(inner, key=key, seq=seq, checksum=csum)
        if cut:
            pkt = gre(inner[: max(0, len(inner) - cut)], key=key, seq=seq, checksum=csum,
                      total_length=len(pkt))  # fmt: skip
        packets.append((i, pkt))
    want, want_stats = reference(CONFIGS[name], fmt, packets)
    got, got_stats = fast(CONFIGS[name], fmt, packets, size=1 << 16)
    same_capture(fmt, got, want)
    assert got_stats.as_dict() == want_stats.as_dict()


def test_groups_keep_the_order_of_first_appearance() -> None:
    import numpy as np

    from vmsniff.pipeline.inplace import groups as _groups

    values = np.array([9, 3, 9, 7, 1, 5, 3, 8, 2, 6, 6, 0, 4], dtype=np.int64)
    groups = _groups(values)
    assert [v for v, _ in groups] == [9, 3, 7, 1, 5, 8, 2, 6, 0, 4]
    for v, where in groups:
        assert (values[where] == v).all() and int(np.count_nonzero(values == v)) == len(
            values[where]
        )


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_many_sessions_in_one_block(fmt: str) -> None:
    packets = [(i, gre(icmp_frame(i), key=(i * 7) % 11)) for i in range(60)]
    want, want_stats = reference(PipelineConfig(), fmt, packets)
    got, got_stats = fast(PipelineConfig(), fmt, packets)
    same_capture(fmt, got, want)
    assert got_stats.as_dict() == want_stats.as_dict()
