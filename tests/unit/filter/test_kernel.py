"""The receiver's kernel filter: moved programs, and real kernel verdicts over loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_root
from vmsniff.filter import bpf_instructions
from vmsniff.filter.kernel import receive_program, shift_program
from vmsniff.formats.capture import LINKTYPE_ETHERNET
from vmsniff.pipeline.sources import kernel_program

PROBE = Path(__file__).with_name("kernel_probe.py")
FILTERS = [
    "icmp",
    "tcp port 80",
    "tcp[13] & 2 != 0",
    "ip[4:2] < 20",
    "ether src 02:00:00:00:00:01 and not udp",
    "vlan 7 and icmp",
    "vlan",
    "arp",
]


def test_shift_moves_packet_loads_only() -> None:
    prog = bpf_instructions("tcp port 80", LINKTYPE_ETHERNET)
    moved = shift_program(prog, 28)
    assert moved is not None and len(moved) == len(prog)
    for (c0, jt0, jf0, k0), (c1, jt1, jf1, k1) in zip(prog, moved, strict=True):
        assert (c0, jt0, jf0) == (c1, jt1, jf1)
        loads_packet = c0 & 0x07 == 0 and c0 & 0xE0 in (0x20, 0x40) or c0 == 0xB1
        assert k1 == (k0 + 28 if loads_packet else k0)


@pytest.mark.parametrize("expr", ["len > 100", "greater 60", "less 100"])
def test_length_filters_stay_in_userspace(expr: str) -> None:
    inner = bpf_instructions(expr, LINKTYPE_ETHERNET)
    assert shift_program(inner, 28) is None
    program, in_kernel = receive_program(kernel_program([]), inner)
    assert not in_kernel and program == kernel_program([])


def test_no_filter_is_the_outer_program() -> None:
    assert receive_program(kernel_program(["10.0.0.0/8"]), None) == (
        kernel_program(["10.0.0.0/8"]),
        False,
    )


@pytest.mark.parametrize(
    ("strip", "vlan_id"), [(False, None), (True, None), (True, 7)], ids=["plain", "strip", "strip7"]
)
def test_kernel_verdicts_equal_libpcap_on_the_inner_frame(strip: bool, vlan_id: int | None) -> None:
    """Crafted GRE over loopback in a namespace of our own: the kernel lets through exactly the
    fast-shaped packets whose inner frame libpcap accepts (after --strip-vlan), and every
    packet of another shape."""
    require_root()
    spec = json.dumps({"filters": FILTERS, "strip_vlan": strip, "vlan_id": vlan_id})
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {sys.executable} {PROBE}"],
        input=spec,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert len(results) == len(FILTERS)
    for r in results:
        assert r["in_kernel"], r["filter"]
        assert r["got"] == r["want"], r["filter"]
        # the three packets of other shapes always pass; every filter but one drops some
        assert {46, 47, 48} <= set(r["want"]), r
        all_pass = r["filter"].startswith("ether src")
        assert (len(r["want"]) == 49) == all_pass, r
