"""Benchmark ``vmsniff receive`` against ``tcpdump -w`` on the same GRE replay (not a test).

Two namespaces of our own (``vmsbr<pid>-tx`` and ``-rx``, removed in a ``finally``) joined by a
veth pair; tcpreplay sends a pre-built pcap of GRE packets (key 100, Ethernet inside: 64-byte
frames, or an IMIX of 64/594/1518 in 7:4:1) at top speed from tx; in rx, ``vmsniff receive -i
eth0`` and ``tcpdump -i eth0 -w`` capture the same packets in the same run. For each: packets
offered/written/lost, pps (written over the replay's wall time), CPU seconds (user+sys from
``wait4``), CPU seconds per million packets, peak RSS, and the ratios vmsniff/tcpdump.

    sudo .venv/bin/python bench/receive.py [--packets 500000] [--mix 64|imix] [--loop N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._replay import (  # noqa: E402
    measure,
    missing,
    print_header,
    print_rows,
    ratio,
    start_receivers,
    stop_receivers,
    veth_namespaces,
    warm_for,
)
from vmsniff.pcap.pcap import file_header  # noqa: E402
from vmsniff.wire.ipv4 import checksum  # noqa: E402

BUFFER_KIB = int(os.environ.get("VMSNIFF_BENCH_B", "16384"))  # vmsniff's -B (tcpdump: 32768)
RX_MAC = bytes.fromhex("020000000b02")
TX_MAC = bytes.fromhex("020000000b01")


def build_pcap(path: Path, count: int, mix: str) -> None:
    """``count`` Ethernet/IPv4/GRE(key 100)/Ethernet frames, written with plain struct."""
    rng = random.Random(1)
    sizes = [64] if mix == "64" else [64] * 7 + [594] * 4 + [1518]
    with path.open("wb") as fh:
        fh.write(file_header(65535, 1))
        for n in range(count):
            size = rng.choice(sizes)
            inner = bytes.fromhex("fa163e000002fa163e0000010800") + n.to_bytes(4, "big")
            inner += bytes(size - len(inner))
            gre = struct.pack("!HHI", 0x2000, 0x6558, 100) + inner
            ip = struct.pack(
                "!BBHHHBBH4s4s",
                0x45,
                0,
                20 + len(gre),
                n & 0xFFFF,
                0,
                64,
                47,
                0,
                bytes([10, 251, 0, 1]),
                bytes([10, 251, 0, 2]),
            )
            ip = ip[:10] + checksum(ip).to_bytes(2, "big") + ip[12:]
            frame = RX_MAC + TX_MAC + b"\x08\x00" + ip + gre
            fh.write(struct.pack("<IIII", n // 1000000, n % 1000000, len(frame), len(frame)))
            fh.write(frame)


def build_c_reference(tmp: Path) -> Path | None:
    """Compile bench/c_receiver.c (needs cc and libpcap-dev); None when that fails."""
    binary = tmp / "c_receiver"
    done = subprocess.run(
        ["cc", "-O2", "-o", str(binary), str(ROOT / "bench" / "c_receiver.c"), "-lpcap"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        print(f"C reference not built: {done.stderr.strip()}", file=sys.stderr)
        return None
    return binary


def run_once(
    prefix: str,
    pcap: Path,
    tmp: Path,
    offered: int,
    loop: int = 1,
    c_ref: Path | None = None,
    tools: tuple[str, ...] = ("vmsniff", "tcpdump"),
    cold: bool = False,
    vmsniff_args: tuple[str, ...] = (),
) -> dict[str, dict[str, float]]:
    """One replay with ``tools`` receiving it side by side (``vmsniff_args`` added to
    vmsniff's command line: bench/scale.py's ``--manifest``)."""
    tx, rx = f"{prefix}-tx", f"{prefix}-rx"
    outputs = {"vmsniff": tmp / "vmsniff.pcap", "tcpdump": tmp / "tcpdump.pcap"}
    if c_ref is not None:
        outputs["C ref"] = tmp / "c_ref.pcap"
    outputs = {k: v for k, v in outputs.items() if k in tools}
    for p in outputs.values():
        p.unlink(missing_ok=True)
    cmds = {
        "vmsniff": [
            sys.executable,
            "-m",
            "vmsniff",
            "-q",
            "receive",
            "-B",
            str(BUFFER_KIB),
            "-i",
            "eth0",
            "-w",
            str(tmp / "vmsniff.pcap"),
            *vmsniff_args,
        ],
        "tcpdump": [
            "tcpdump",
            "-q",
            "-B",
            "32768",
            "-i",
            "eth0",
            "-w",
            str(tmp / "tcpdump.pcap"),
            "ip proto 47",
        ],
    }
    if c_ref is not None:
        cmds["C ref"] = [str(c_ref), "eth0", str(tmp / "c_ref.pcap")]
    cmds = {k: v for k, v in cmds.items() if k in tools}
    with warm_for(pcap, loop, len(cmds), cold) as warm:
        procs = start_receivers(rx, cmds, ROOT)
        try:
            time.sleep(3)  # both receivers ready
            return measure(procs, outputs, (tx, "veth0"), pcap, loop, offered, warm)
        finally:
            stop_receivers(procs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=500_000)
    ap.add_argument("--mix", choices=["64", "imix"], nargs="*", default=["64", "imix"])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-c-reference", action="store_true", help="leave out bench/c_receiver.c")
    ap.add_argument(
        "--cold", action="store_true", help="do not warm free memory first (bench/README.md)"
    )
    ap.add_argument(
        "--loop",
        type=int,
        default=4,
        help="replay the pcap this many times (default 4: 2M packets)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    if problem := missing("tcpreplay", "tcpdump"):
        print(problem, file=sys.stderr)
        return 2
    prefix = f"vmsbr{os.getpid()}"
    tx, rx = f"{prefix}-tx", f"{prefix}-rx"
    all_results = {}
    with tempfile.TemporaryDirectory(prefix="vmsniff-bench-") as tmpdir:
        tmp = Path(tmpdir)
        c_ref = None if args.no_c_reference else build_c_reference(tmp)
        with veth_namespaces(tx, rx, TX_MAC, RX_MAC):
            for mix in args.mix:
                pcap = tmp / f"gre-{mix}.pcap"
                build_pcap(pcap, args.packets, mix)
                offered = args.packets * args.loop
                all_results[mix] = run_once(prefix, pcap, tmp, offered, args.loop, cold=args.cold)
                if c_ref is not None:
                    # A second replay, so that the C receiver does not take CPU from vmsniff.
                    second = run_once(
                        prefix,
                        pcap,
                        tmp,
                        offered,
                        args.loop,
                        c_ref,
                        ("tcpdump", "C ref"),
                        cold=args.cold,
                    )
                    all_results[mix]["C ref"] = second["C ref"]
                    all_results[mix]["tcpdump, C pass"] = second["tcpdump"]
                pcap.unlink()
    if args.json:
        print(json.dumps(all_results, indent=2))
        return 0
    print_header()
    for mix, res in all_results.items():
        print_rows(mix, res)
        v, t = res["vmsniff"], res["tcpdump"]
        cpu_ratio = ratio(v["cpu_s_per_M"], t["cpu_s_per_M"])
        print(
            f"{mix:5} ratio vmsniff/tcpdump: CPU per packet {cpu_ratio}, "
            f"RSS {v['rss_mb'] / t['rss_mb']:.2f}x, replay {v['replay_pps']:.0f} pps"
        )
        if "C ref" in res:
            c = res["C ref"]
            print(
                f"{mix:5} ratio vmsniff/C reference: CPU per packet "
                f"{ratio(v['cpu_s_per_M'], c['cpu_s_per_M'])}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
