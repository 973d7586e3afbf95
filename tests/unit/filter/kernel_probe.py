"""Run inside ``unshare -n`` (a network namespace of its own, with only ``lo``): send crafted
GRE packets over loopback through a packet socket carrying :func:`receive_program`, and print
as JSON which ones the kernel let through next to which ones it should have.

Input (stdin, JSON): ``{"filters": [...], "strip_vlan": bool, "vlan_id": int|null}``.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.unit.pipeline.helpers import erspan2, gre, icmp_frame  # noqa: E402
from vmsniff.filter import InnerFilter, bpf_instructions  # noqa: E402
from vmsniff.filter.kernel import receive_program  # noqa: E402
from vmsniff.formats.capture import LINKTYPE_ETHERNET, LINKTYPE_RAW  # noqa: E402
from vmsniff.pipeline.core import Pipeline, PipelineConfig  # noqa: E402
from vmsniff.pipeline.ring import Ring  # noqa: E402
from vmsniff.pipeline.sources import kernel_program  # noqa: E402
from vmsniff.wire.ipv4 import encode_ipv4  # noqa: E402

HV = bytes([10, 250, 0, 1])
RX = bytes([10, 250, 0, 2])


def tcp_frame(n: int, port: int, syn: bool, vlan: int | None) -> bytes:
    tcp = (40000 + n).to_bytes(2, "big") + port.to_bytes(2, "big") + bytes(8)
    tcp += bytes([0x50, 0x02 if syn else 0x10]) + bytes(6)
    ip = encode_ipv4(bytes([192, 168, 0, 1]), bytes([192, 168, 0, 2]), 6, tcp, ident=n)
    head = bytes.fromhex("020000000002020000000001")
    if vlan is not None:
        head += b"\x81\x00" + vlan.to_bytes(2, "big")
    return head + b"\x08\x00" + ip


def traffic() -> list[bytes]:
    """Outer IPv4 packets; packet i carries i in its inner IP id (or ICMP id)."""
    out: list[bytes] = []
    flags = [{}, {"key": 5}, {"seq": 1}, {"key": 5, "seq": 2}, {"checksum": True, "key": 9}]
    n = 0
    for f in flags:
        for vlan in (None, 7, 1):
            out.append(gre(icmp_frame(n, vlan=vlan, size=n % 40), **f))  # type: ignore[arg-type]
            n += 1
            out.append(gre(tcp_frame(n, 80, True, vlan), **f))  # type: ignore[arg-type]
            n += 1
            out.append(gre(tcp_frame(n, 22, False, vlan), **f))  # type: ignore[arg-type]
            n += 1
    # cut by a mirror snaplen: the outer length claims more than is there
    inner = tcp_frame(n, 80, True, None)
    out.append(gre(inner[:40], key=5, total_length=20 + 8 + len(inner)))
    n += 1
    # not the fast shape: the kernel must let these through for userspace to judge
    out.append(erspan2(icmp_frame(n), 3))
    n += 1
    out.append(gre(icmp_frame(n)[14:], proto=0x0800))
    n += 1
    out.append(encode_ipv4(HV, RX, 47, gre(icmp_frame(n))[20:], options=bytes(4)))
    return out


def main() -> int:
    spec = json.load(sys.stdin)
    packets = traffic()
    results = []
    sender = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM)
    for expr in spec["filters"]:
        inner = bpf_instructions(expr, LINKTYPE_ETHERNET)
        program, in_kernel = receive_program(
            kernel_program([]), inner, strip_vlan=spec["strip_vlan"], vlan_id=spec["vlan_id"]
        )
        ring = Ring("lo", kind=socket.SOCK_DGRAM, program=program, block_size=1 << 16,
                    block_count=4, retire_ms=10)  # fmt: skip
        for i, pkt in enumerate(packets):
            # a per-packet marker the filter never reads: the outer IP id
            marked = pkt[:4] + i.to_bytes(2, "big") + pkt[6:]
            sender.sendto(marked, ("lo", 0x0800))
        # Loopback keeps the order: once the last packet (another shape, always let through)
        # is here, every earlier one has been judged.
        sentinel = len(packets) - 1
        got: set[int] = set()
        deadline = time.monotonic() + 5
        for frames in ring.blocks(timeout_ms=20):
            for _, frame in frames:
                got.add(int.from_bytes(frame[4:6], "big"))
            if sentinel in got or time.monotonic() > deadline:
                break
        ring.close()
        # What userspace decides: the pipeline without its --from, with the same strip.
        cfg = PipelineConfig(
            strip_vlan=spec["strip_vlan"], vlan_id=spec["vlan_id"], filter=InnerFilter(expr)
        )
        want = set()
        for i, pkt in enumerate(packets):
            fast = i < len(packets) - 3  # the last three are not the fast shape
            if not fast or not in_kernel or Pipeline(cfg).push([(0, pkt)], LINKTYPE_RAW):
                want.add(i)
        results.append(
            {"filter": expr, "in_kernel": in_kernel, "got": sorted(got), "want": sorted(want)}
        )
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
