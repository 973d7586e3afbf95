"""The capture stage: naming, direction from the packet type, copies, counts."""

from __future__ import annotations

import pytest

from vmsniff.capture.stage import CaptureStage, StagePoint, direction_bits
from vmsniff.formats.capture import EPB_FROM_VM, EPB_TO_VM
from vmsniff.formats.packet import PACKET_HOST, PACKET_OUTGOING
from vmsniff.model import Direction
from vmsniff.pcap.encoder import PcapngEncoder

OTHERHOST = 3


def test_a_tap_marks_outgoing_as_to_vm_and_the_rest_as_from_vm() -> None:
    stage = CaptureStage([StagePoint("tap1")])
    buf = bytearray(b"abcdef")
    frames = [(1, memoryview(buf)[:3], OTHERHOST, 3), (2, memoryview(buf)[3:], PACKET_OUTGOING, 60),
              (3, memoryview(buf), PACKET_HOST, 6)]  # fmt: skip
    out = stage.push(frames, 1)
    assert [(p.ts_ns, p.data, p.origlen, p.direction, p.interface) for p in out] == [
        (1, b"abc", 3, EPB_FROM_VM, "tap1"),
        (2, b"def", 60, EPB_TO_VM, "tap1"),
        (3, b"abcdef", 6, EPB_FROM_VM, "tap1"),
    ]
    buf[:] = b"zzzzzz"  # the ring reuses the block: packets hold copies
    assert out[0].data == b"abc"
    assert (stage.stats.received, stage.stats.written, stage.stats.filtered_out) == (3, 3, 0)


def test_several_points_name_each_packet_and_fixed_points_keep_their_direction() -> None:
    stage = CaptureStage([StagePoint("tapA"), StagePoint("qvoB", Direction.TO_VM)])
    out = stage.push([(1, b"x", OTHERHOST, 1, 1), (2, b"y", OTHERHOST, 1, 0)], 1)
    assert [(p.interface, p.direction) for p in out] == [
        ("qvoB", EPB_TO_VM),
        ("tapA", EPB_FROM_VM),
    ]


def test_the_other_direction_and_long_frames_are_dealt_with_if_the_kernel_did_not() -> None:
    stage = CaptureStage([StagePoint("tap1")], snaplen=2, keep=Direction.TO_VM)
    out = stage.push([(1, b"abc", PACKET_OUTGOING, 3), (2, b"def", OTHERHOST, 3)], 1)
    assert [(p.data, p.origlen) for p in out] == [(b"ab", 3)]
    assert (stage.stats.received, stage.stats.written, stage.stats.filtered_out) == (2, 1, 1)


def test_packets_encode_under_the_nics_name() -> None:
    stage = CaptureStage([StagePoint("tap1")])
    pkt = stage.push([(5, bytes(60), OTHERHOST, 60)], 1)[0]
    record = PcapngEncoder(262144, "vmsniff capture").encode(pkt)
    assert b"tap1" in record  # the Interface Description Block comes with the first packet


def test_direction_bits_and_no_points() -> None:
    assert direction_bits(Direction.FROM_VM) == EPB_FROM_VM
    assert direction_bits(Direction.TO_VM) == EPB_TO_VM
    assert direction_bits(Direction.BOTH) == 0
    with pytest.raises(ValueError):
        CaptureStage([])
