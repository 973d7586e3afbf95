"""The dissector's cost per packet against a plain ``struct`` loop and scapy, same frames.

Three sets of frames, each timed in the same process, round after round (a noisy moment hits
every row alike); the figure is the best round's µs per packet:

* ``tcp/udp``: the common shape, plain IPv4 TCP and UDP in Ethernet (bench/flows.py's frames);
* ``tunnels``: the same inside VXLAN, GRE (key) and an 802.1Q tag, and IPv6 TCP;
* ``captures``: every frame of the real captures in ../shared/captures (all link types,
  fragments, tunnels, malformed ones), when present.

Rows: ``struct loop`` (the floor: EtherType, the IPv4 header and TCP ports and flags with
``struct``, nothing kept), ``decode()`` alone, ``decode()+find('tcp')``, the same reading
``sport`` and ``flags``, every layer built (``decode().layers``), ``flow_key()`` (what
``vmsniff flows`` reads per packet; before it existed, ``observe()``), and scapy's
``Ether(bytes)`` with ``getlayer(TCP)`` (the anchor; its ``l2types`` class for other link
types). Ratios are to the struct loop and to scapy.

    .venv/bin/python bench/dissect.py
    .venv/bin/python bench/dissect.py --rounds 7 --json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = Path(os.environ.get("VMSNIFF_CAPTURES", ROOT.parent / "shared" / "captures"))
Frames = list[tuple[bytes, int]]  # (frame, link type)

_ETH_TYPE = struct.Struct("!H").unpack_from
_IP4 = struct.Struct("!BBHHHBBH4s4s").unpack_from
_TCP = struct.Struct("!HHIIBBHHH").unpack_from


def _flows_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_flows", ROOT / "bench" / "flows.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def common_frames(count: int = 600) -> Frames:
    """Plain IPv4 TCP (handshake, data, FIN) and UDP frames, as bench/flows.py writes them."""
    frame = _flows_bench()._frame
    out = []
    for i in range(count):
        tcp = i % 2 == 0
        flags = (0x02, 0x12, 0x10, 0x18, 0x11)[i % 5] if tcp else 0
        size = (i * 7) % 200
        out.append((frame(0x0A000000 + i, 0x0A100000 + i % 251, 6 if tcp else 17, 20000 + i,
                          80 if tcp else 53, flags, size), 1))  # fmt: skip
    return out


def tunnel_frames() -> Frames:
    """TCP inside VXLAN, GRE with a key, an 802.1Q tag; and IPv6 TCP (built with scapy)."""
    from scapy.layers.inet import GRE, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.layers.vxlan import VXLAN

    macs = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
    out = []
    for i in range(100):
        inner = Ether(**macs) / IP(src="192.168.0.5", dst="192.168.0.6") / TCP(
            sport=4000 + i, dport=22, flags="PA") / (b"x" * (i % 50))  # fmt: skip
        outer = Ether(**macs) / IP(src="172.16.0.1", dst="172.16.0.2")
        packets = (
            outer / UDP(sport=1111, dport=4789) / VXLAN(vni=42) / inner,
            outer / GRE(key_present=1, key=100, proto=0x6558) / inner,
            Ether(**macs)
            / Dot1Q(vlan=7)
            / IP(src="10.0.0.1", dst="10.0.0.2")
            / TCP(sport=5000 + i, dport=443, flags="A"),
            Ether(**macs) / IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=40000 + i, dport=443),
        )
        out += [(bytes(p), 1) for p in packets]
    return out


def capture_frames() -> Frames:
    """Every frame of every real capture (pcap and pcapng), with its link type."""
    from vmsniff.pcap.reader import read_records

    out = []
    for path in sorted(CAPTURES.rglob("*.pcap*")):
        if path.suffix not in (".pcap", ".pcapng"):
            continue
        try:
            out += [(r.data, r.linktype) for r in read_records([path.read_bytes()])]
        except Exception:  # a damaged file: its records before the damage are enough
            continue
    return out


def struct_loop(frames: Frames) -> None:
    """The floor: what a hand-written loop reads for a TCP flow, nothing kept."""
    for data, _linktype in frames:
        try:
            if _ETH_TYPE(data, 12)[0] == 0x0800:
                ihl = (data[14] & 0x0F) * 4
                ip = _IP4(data, 14)
                if ip[6] == 6:
                    _TCP(data, 14 + ihl)
        except struct.error:
            pass


def _rows() -> dict[str, Callable[[Frames], None]]:
    from vmsniff.dissect import decode

    def decode_only(frames: Frames) -> None:
        for data, linktype in frames:
            decode(data, linktype)

    def decode_find(frames: Frames) -> None:
        for data, linktype in frames:
            decode(data, linktype).find("tcp")

    def decode_fields(frames: Frames) -> None:
        for data, linktype in frames:
            tcp = decode(data, linktype).find("tcp")
            if tcp is not None:
                tcp.sport, tcp.flags  # type: ignore[attr-defined]  # noqa: B018

    def decode_all(frames: Frames) -> None:
        for data, linktype in frames:
            decode(data, linktype).layers  # noqa: B018

    rows = {"struct loop": struct_loop, "decode()": decode_only,
            "decode()+find('tcp')": decode_find, "... +sport,flags": decode_fields,
            "decode().layers (all)": decode_all}  # fmt: skip
    try:
        from vmsniff.dissect import flow_key  # type: ignore[attr-defined]

        def flow_keys(frames: Frames) -> None:
            for data, linktype in frames:
                flow_key(data, linktype)

        rows["flow_key()"] = flow_keys
    except ImportError:
        from vmsniff.flows.observe import observe  # before flow_key: the flows walker

        def observes(frames: Frames) -> None:
            for data, linktype in frames:
                observe(data, linktype)

        rows["observe() (flows)"] = observes
    rows["scapy Ether(bytes)"] = _scapy
    return rows


def _scapy(frames: Frames) -> None:
    from scapy.config import conf
    from scapy.layers.inet import TCP
    from scapy.packet import Raw

    for data, linktype in frames:
        try:
            conf.l2types.get(linktype, Raw)(data).getlayer(TCP)
        except Exception:  # scapy raises on some malformed frames; counted all the same
            pass


def measure(frames: Frames, rows: dict[str, Callable[[Frames], None]], rounds: int,
            budget_s: float) -> dict[str, float]:  # fmt: skip
    """µs per packet of each row: the best of ``rounds`` rounds, each repeating the frames for
    about ``budget_s`` seconds (scapy: fewer repeats, it is ~100x slower)."""
    repeats = {}
    for name, run in rows.items():  # calibrate: how many passes fill the budget
        start = time.perf_counter()
        run(frames)
        once = max(time.perf_counter() - start, 1e-6)
        repeats[name] = max(1, int(budget_s / once))
    best = {name: float("inf") for name in rows}
    for _ in range(rounds):
        for name, run in rows.items():
            start = time.perf_counter()
            for _ in range(repeats[name]):
                run(frames)
            elapsed = time.perf_counter() - start
            best[name] = min(best[name], elapsed / (repeats[name] * len(frames)) * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.3, help="seconds per row per round")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sets = {"tcp/udp": common_frames(), "tunnels": tunnel_frames()}
    if CAPTURES.is_dir():
        sets["captures"] = capture_frames()
    rows = _rows()
    results = {name: measure(frames, rows, args.rounds, args.budget)
               for name, frames in sets.items()}  # fmt: skip
    if args.json:
        sizes = {k: len(v) for k, v in sets.items()}
        print(json.dumps({"frames": sizes, "us_per_packet": results}))
        return
    for set_name, got in results.items():
        print(f"\n{set_name}: {len(sets[set_name])} frames, µs per packet (best of {args.rounds})")
        print(f"{'row':<24} {'µs/pkt':>8} {'vs struct':>10} {'vs scapy':>9}")
        base, scapy = got["struct loop"], got["scapy Ether(bytes)"]
        for name, us in got.items():
            print(f"{name:<24} {us:>8.2f} {us / base:>9.1f}x {us / scapy:>8.3f}x")


if __name__ == "__main__":
    main()
