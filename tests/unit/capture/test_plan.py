"""Choosing capture points and building the kernel socket filter (vmsniff/capture/plan.py)."""

from __future__ import annotations

import socket
import struct

import pytest

from vmsniff.capture.live import compile_filter
from vmsniff.capture.plan import CaptureOptions, kernel_program, plan_points, require_local
from vmsniff.errors import InvalidState, NotFound, UsageError
from vmsniff.model import Direction, Nic, PlugKind, Server, Target
from vmsniff.pipeline.ring import attach_filter

SERVER = Server(id="11111111-2222-3333-4444-555555555555", name="web-1", host="compute-1")
HYBRID = Nic(mac="fa:16:3e:00:00:01", tap="tap1111", ovs_port="qvo1111", bridge="br-int",
             plug=PlugKind.HYBRID, tag=1)  # fmt: skip
VHOST = Nic(mac="fa:16:3e:00:00:02", ovs_port="vhu2222", bridge="br-int",
            plug=PlugKind.VHOSTUSER)  # fmt: skip
SRIOV = Nic(mac="fa:16:3e:00:00:03", plug=PlugKind.SRIOV)


def target(*nics: Nic, local: bool = True, ovsdb: str | None = "unix:/x") -> Target:
    return Target(server=SERVER, nics=nics, local=local, ovsdb=ovsdb)


def points(t: Target, at: str | None = None, present: tuple[str, ...] = ("tap1111",)):  # type: ignore[no-untyped-def]
    return plan_points(t, CaptureOptions(at=at), me="compute-1", device_exists=present.__contains__)


def test_default_is_the_tap_where_it_exists_else_the_switch() -> None:
    got = points(target(HYBRID, VHOST))
    assert [(p.at, p.name, p.device) for p in got] == [
        ("tap", "tap1111", "tap1111"),
        ("ovs", "vhu2222", None),
    ]
    # The tap named by resolve is missing here (another namespace): the switch can still see it.
    assert points(target(HYBRID), present=())[0].at == "ovs"


def test_at_tap_refuses_a_nic_without_a_tap_and_says_what_to_do() -> None:
    with pytest.raises(InvalidState) as exc:
        points(target(VHOST), at="tap")
    assert "no kernel tap" in exc.value.message and "--at ovs" in (exc.value.hint or "")
    with pytest.raises(NotFound) as missing:
        points(target(HYBRID), at="tap", present=())
    assert "tap1111" in missing.value.message


def test_off_ovs_nics_cannot_be_captured_at_all() -> None:
    for at in (None, "tap", "ovs"):
        with pytest.raises(InvalidState) as exc:
            points(target(SRIOV), at=at)
        assert "sriov" in exc.value.message.lower()


def test_at_ovs_needs_the_ovsdb_of_this_host() -> None:
    with pytest.raises(UsageError):
        points(target(HYBRID, ovsdb=None), at="ovs")


def test_a_vm_on_another_host_is_refused_naming_the_host_and_mirror() -> None:
    with pytest.raises(InvalidState) as exc:
        require_local(target(HYBRID, local=False), "compute-2")
    assert "compute-1" in exc.value.message and "compute-2" in exc.value.message
    assert "vmsniff mirror web-1" in (exc.value.hint or "")
    with pytest.raises(InvalidState):
        points(target(HYBRID, local=False))


def test_options_are_checked() -> None:
    with pytest.raises(UsageError):
        CaptureOptions(at="wire")
    with pytest.raises(UsageError):
        CaptureOptions(snaplen=0)


# The kernel program, run by the kernel itself: a filter attached to an AF_UNIX datagram socket
# judges (and cuts) each datagram as a packet socket would. There skb->pkt_type is
# PACKET_HOST, i.e. "arrived", which a tap sees for what the VM sends.
ETH_IP = bytes(12) + b"\x08\x00" + bytes(86)  # 100 bytes, EtherType IPv4
ETH_ARP = bytes(12) + b"\x08\x06" + bytes(86)


def through(program: list[tuple[int, int, int, int]], frames: list[bytes]) -> list[bytes]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        attach_filter(b, program)
        for f in frames:
            a.send(f)
        b.setblocking(False)
        got = []
        while True:
            try:
                got.append(b.recv(65536))
            except BlockingIOError:
                return got


def test_filter_and_snaplen_run_in_the_kernel() -> None:
    prog = kernel_program(compile_filter("ip"), 40, Direction.BOTH)
    assert through(prog, [ETH_IP, ETH_ARP]) == [ETH_IP[:40]]
    everything = kernel_program(compile_filter(""), 262144, Direction.BOTH)
    assert through(everything, [ETH_IP, ETH_ARP]) == [ETH_IP, ETH_ARP]


def test_direction_is_chosen_by_packet_type_in_the_kernel() -> None:
    base = compile_filter("")
    assert through(kernel_program(base, 262144, Direction.FROM_VM), [ETH_IP]) == [ETH_IP]
    assert through(kernel_program(base, 262144, Direction.TO_VM), [ETH_IP]) == []


def test_only_accepting_returns_are_lowered_to_the_snaplen() -> None:
    prog = kernel_program([(0x15, 0, 1, 0x800), (0x06, 0, 0, 262144), (0x06, 0, 0, 0)], 96,
                          Direction.BOTH)  # fmt: skip
    assert prog == [(0x15, 0, 1, 0x800), (0x06, 0, 0, 96), (0x06, 0, 0, 0)]
    assert struct.calcsize("=HBBI") == 8  # the layout attach_filter packs


def test_a_bad_filter_is_a_usage_error_with_libpcaps_words() -> None:
    with pytest.raises(UsageError) as exc:
        compile_filter("tcp port")
    assert "tcp port" in exc.value.message
