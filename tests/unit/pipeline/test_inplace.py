"""BlockRecords' run shortcuts (a guessed stride, one strided copy per run of same-shaped
records) give exactly what walking the chain and slicing each record give."""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.pipeline.blocks import block
from tests.unit.pipeline.helpers import gre, icmp_frame
from tests.unit.pipeline.test_fastpath import fast, reference, same_capture
from vmsniff.pcap.encoder import new_encoder
from vmsniff.pipeline.core import PipelineConfig
from vmsniff.pipeline.inplace import BlockRecords
from vmsniff.pipeline.scatter import joined

SIZE = 1 << 16


def walk(mem: bytearray, base: int, count: int, first: int) -> list[int]:
    out, off = [], base + first
    for _ in range(count):
        out.append(off)
        off += struct.unpack_from("=I", mem, off)[0]
    return out


def records(sizes: list[int], **layout: Any) -> tuple[bytearray, int, int, int]:
    packets = [(i, bytes([i % 251]) * size) for i, size in enumerate(sizes)]
    return block(packets, size=layout.pop("size", SIZE), **layout)


def writer(mem: bytearray, size: int = SIZE) -> BlockRecords:
    return BlockRecords(mem, size, new_encoder("pcap", 262144), lambda code: (None, 1, False, None))


RUNS = {
    "one size": [64] * 300,
    "runs": [64] * 40 + [100] * 3 + [1500] * 20 + [64] * 17 + [70] * 16 + [90],
    "alternating": [64, 1500] * 30,
    "short runs": [64] * 15 + [65] * 15 + [66] * 17 + [64],
    "few": [64] * 5,
    "early change": [64] * 5 + [1500] + [64] * 200,
    "late change": [64] * 150 + [65] + [64] * 100,
}


@pytest.mark.parametrize("name", sorted(RUNS))
@pytest.mark.parametrize("base", [0, SIZE])
def test_offsets_follow_the_chain(name: str, base: int) -> None:
    mem, base, count, first = records(RUNS[name], base=base, total=base + SIZE)
    w = writer(mem)
    assert w.offsets(base, count, first).tolist() == walk(mem, base, count, first)
    w.close()


def test_a_stale_slot_after_the_last_packet_is_not_taken() -> None:
    """The guess never reads past ``count`` packets, whatever the rest of the block says."""
    mem, base, count, first = records([64] * 20)
    step = struct.unpack_from("=I", mem, first)[0]
    last = walk(mem, base, count, first)[-1]
    struct.pack_into("=I", mem, last, step)  # the kernel writes 0; an old block may not
    for off in range(last + step, SIZE - 4, step):
        struct.pack_into("=I", mem, off, step)
    w = writer(mem)
    assert len(w.offsets(base, count, first)) == 20
    assert w.offsets(base, count, first).tolist() == walk(mem, base, count, first)


def test_a_run_up_to_the_end_of_the_block() -> None:
    sizes = [200] * 10_000
    packets = []
    used = 48
    for i, size in enumerate(sizes):
        slot = (96 + size + 7) & ~7
        if used + slot > SIZE:
            break
        used += slot
        packets.append((i, bytes(size)))
    mem, base, count, first = block(packets, size=SIZE)
    w = writer(mem)
    assert w.offsets(base, count, first).tolist() == walk(mem, base, count, first)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 7, 8, 60, 1400]), st.integers(1, 40)),
                min_size=1, max_size=12))  # fmt: skip
def test_offsets_of_random_runs(spec: list[tuple[int, int]]) -> None:
    sizes = [60 + extra for extra, repeat in spec for _ in range(repeat)]
    while sum((96 + s + 7) & ~7 for s in sizes) + 48 > SIZE:
        sizes.pop()
    mem, base, count, first = records(sizes)
    w = writer(mem)
    assert w.offsets(base, count, first).tolist() == walk(mem, base, count, first)


IMIX = [60] * 7 + [590] * 4 + [1514]


def imix(count: int, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    return [rng.choice(IMIX) for _ in range(count)]


def fitting(sizes: list[int], size: int = SIZE) -> list[int]:
    while sum((96 + s + 7) & ~7 for s in sizes) + 48 > size:
        sizes.pop()
    return sizes


def no_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("walked the chain")

    monkeypatch.setattr(BlockRecords, "_follow", fail)


@pytest.mark.parametrize("blk_len", [True, False])
def test_mixed_sizes_are_found_by_a_scan(monkeypatch: pytest.MonkeyPatch, blk_len: bool) -> None:
    """IMIX (sizes changing all the time) is read off the block without walking, whether or
    not the block header says how much of it is used."""
    mem, base, count, first = records(fitting(imix(400)), base=SIZE, total=2 * SIZE,
                                      blk_len=blk_len)  # fmt: skip
    assert count > 64
    expected = walk(mem, base, count, first)
    no_walk(monkeypatch)
    assert writer(mem).offsets(base, count, first).tolist() == expected


def test_a_refilled_block_is_found_by_a_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block the kernel fills again still holds, between each slot's header and its frame,
    bytes of the slots of earlier fills, some of them exactly where a slot's ``tp_mac`` would
    be; the scan must see through them (else every reused block is walked)."""
    mem, *_ = records(fitting(imix(1000, seed=1)))
    for seed in range(2, 12):
        mem, base, count, first = records(fitting(imix(1000, seed=seed)), into=mem)
        expected = walk(mem, base, count, first)
        with monkeypatch.context() as m:
            no_walk(m)
            assert writer(mem).offsets(base, count, first).tolist() == expected


def test_stale_slots_after_the_last_packet_are_not_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """An older, fuller use of the block left slots after this one's last packet; without
    ``blk_len`` the scan sees them too and takes only the first ``count``."""
    old, *_ = records(fitting([60] * 1000))
    mem, base, count, first = records(fitting(imix(300)), blk_len=False)
    end = walk(mem, base, count, first)[-1] + 96 + 1514
    mem[end:] = old[end:]
    expected = walk(mem, base, count, first)
    no_walk(monkeypatch)
    assert writer(mem).offsets(base, count, first).tolist() == expected


def fake_slot(mem: bytearray, at: int, snap: int, mark: bytes) -> None:
    """Bytes at ``at`` that look like a slot header: the socket's ``tp_mac``/``tp_net`` word
    and a ``tp_next_offset`` that fits ``tp_snaplen``, as the scan's filter wants."""
    struct.pack_into("=I", mem, at, (96 + snap + 7) & ~7)
    struct.pack_into("=I", mem, at + 12, snap)
    mem[at + 24 : at + 28] = mark


@pytest.mark.parametrize("where", ["frame -3", "frame -2", "frame -1", "gap", "first slot"])
def test_each_link_the_scan_takes_is_checked(where: str) -> None:
    """A fake slot in the frames of the last three packets, one in the bytes the kernel skips
    between a slot's sockaddr_ll and its frame, and a first slot whose tp_next_offset does
    not fit its tp_snaplen (so the scan does not find it): the answer is still the chain's."""
    mem, base, count, first = records(fitting(imix(400, seed=5)))
    slots = walk(mem, base, count, first)
    mark = bytes(mem[first + 24 : first + 28])
    if where.startswith("frame"):
        slot = slots[count + int(where.split()[1])]
        fake_slot(mem, slot + 96 + 8, 60, mark)  # 8-aligned, inside a frame of >= 60 bytes
    elif where == "gap":
        slot = slots[count // 2]
        fake_slot(mem, slot + 48 + 24, 60, mark)  # its mark word lands at slot + 96
        struct.pack_into("=HH", mem, slot + 48, 17, 8)  # the real sockaddr_ll comes back
    else:
        snap = struct.unpack_from("=I", mem, first + 12)[0]
        struct.pack_into("=I", mem, first + 12, snap - 8)
        # and a last slot that fits too (as if more were to come), so that the scan finds
        # exactly count - 1 places, one of them not a link of the chain
        last_snap = struct.unpack_from("=I", mem, slots[-1] + 12)[0]
        struct.pack_into("=I", mem, slots[-1], (96 + last_snap + 7) & ~7)
    assert writer(mem).offsets(base, count, first).tolist() == walk(mem, base, count, first)


@settings(max_examples=80, deadline=None)
@given(
    st.integers(65, 300),
    st.integers(0, 2**16),
    st.lists(st.tuples(st.integers(0, 299), st.integers(0, 180)), max_size=4),
    st.booleans(),
    st.integers(-64, 64),
)
def test_frames_that_look_like_slots_never_mislead_the_scan(
    count: int, seed: int, fakes: list[tuple[int, int]], blk_len: bool, skew: int
) -> None:
    """A frame may carry, at an 8-aligned place, what looks like a slot header, with the
    very ``tp_mac``/``tp_net`` word of the socket and a ``tp_next_offset`` that fits its
    ``tp_snaplen`` (a VM can send anything), and ``blk_len`` may be off: the answer is still
    the chain's."""
    mem, base, count, first = records(fitting(imix(count, seed)), blk_len=blk_len)
    slots = walk(mem, base, count, first)
    mark = mem[first + 24 : first + 28]
    for packet, word in fakes:
        slot = slots[packet % count]
        data_end = slot + 96 + struct.unpack_from("=I", mem, slot + 12)[0]
        at = (slot + 96 + 8 * word) & ~7
        if at + 28 <= data_end:
            fake_slot(mem, at, 60 + word, mark)
    if skew:
        used = struct.unpack_from("=I", mem, base + 20)[0]
        struct.pack_into("=I", mem, base + 20, max(0, used + 8 * skew))
    assert writer(mem).offsets(base, count, first).tolist() == walk(mem, base, count, first)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 30)), min_size=1, max_size=10),
    st.sampled_from(["pcap", "pcapng"]),
    st.sampled_from(["plain", "keys both", "filtered"]),
)
def test_runs_of_same_sized_packets_equal_the_pipeline(
    spec: list[tuple[int, int]], fmt: str, name: str
) -> None:
    """Same-sized packets in runs take the strided copies; a key not asked for (or a
    direction) in the middle of a run splits it; the capture is the pipeline's."""
    cfg = {
        "plain": PipelineConfig(),
        "keys both": PipelineConfig(keys=(100,), direction="both"),
        "filtered": PipelineConfig(keys=(100,)),
    }[name]
    packets = []
    n = 0
    for size, repeat in spec:
        for _ in range(repeat):
            packets.append((n * 1000, gre(icmp_frame(n, size=size), key=100 + (n % 7 == 3))))
            n += 1
    want, want_stats = reference(cfg, fmt, packets)
    got, got_stats = fast(cfg, fmt, packets, size=1 << 17)
    same_capture(fmt, got, want)
    assert got_stats.as_dict() == want_stats.as_dict()


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_a_flood_is_a_few_pieces(fmt: str) -> None:
    """300 same-sized packets of one session: one strided copy, not 300 slices."""
    cfg = PipelineConfig(keys=(100,), direction="both")
    packets = [(i * 1000, gre(icmp_frame(i), key=100)) for i in range(300)]
    want, _ = reference(cfg, fmt, packets)
    from vmsniff.pipeline.core import Pipeline
    from vmsniff.pipeline.fastpath import FastPath

    mem, base, count, first = block(packets, size=1 << 17)
    pipe = Pipeline(cfg)
    fp = FastPath(mem, 1 << 17, pipe, new_encoder(fmt, cfg.snaplen), kernel_filtered=False)
    pieces = fp.process(base, count, first)
    assert len(pieces) <= 2 + (fmt == "pcapng")  # interface block, the run, the last record
    same_capture(fmt, joined(pieces), want)
    assert pipe.stats.written == 300
