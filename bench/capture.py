"""Benchmark ``vmsniff capture --at tap`` against ``tcpdump -i TAP -w`` on the same traffic.

Two namespaces of our own (``vmsbc<pid>-vm`` and ``-hv``, removed in a ``finally``) joined by a
veth pair: ``eth0`` in the "VM", ``tapbench0`` on the "hypervisor". tcpreplay sends a
pre-built pcap of Ethernet/IPv4/UDP frames (64-byte, or an IMIX of 64/594/1518 in 7:4:1) out
of the VM's eth0 at top speed; on the hypervisor, vmsniff's capture path and
``tcpdump -i tapbench0 -w`` capture the same packets in the same run. For each: packets
offered/written/lost, pps, CPU seconds (user+sys from ``wait4``, interpreter start-up
included), CPU seconds per million packets, peak RSS, and the vmsniff/tcpdump ratios.

vmsniff runs as ``python bench/capture.py --worker TAP FILE``: exactly what ``vmsniff capture
VM --at tap -w FILE`` runs once resolve has named the tap (``open_capture`` on the shared
TPACKET_V3 ring, the capture stage, receive's ``drive`` loop and ``FileSink``), without
resolve itself: there is no VM to resolve here, and the lab's ovs-vswitchd would poll the
same tap and compete for the CPU.

    sudo .venv/bin/python bench/capture.py [--packets 500000] [--mix 64 imix] [--json]
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
    sh,
    start_receivers,
    stop_receivers,
    warm_for,
)
from vmsniff.pcap.pcap import file_header  # noqa: E402
from vmsniff.wire.ipv4 import checksum  # noqa: E402

TAP = "tapbench0"
VM_MAC = bytes.fromhex("fa163e0000b1")
PEER_MAC = bytes.fromhex("fa163e0000b2")


def build_pcap(path: Path, count: int, mix: str) -> None:
    """``count`` Ethernet/IPv4/UDP frames from the VM, numbered, written with plain struct."""
    rng = random.Random(1)
    sizes = [64] if mix == "64" else [64] * 7 + [594] * 4 + [1518]
    with path.open("wb") as fh:
        fh.write(file_header(65535, 1))
        for n in range(count):
            size = rng.choice(sizes) - 4  # the FCS is not captured
            payload = n.to_bytes(4, "big") + bytes(size - 14 - 20 - 8 - 4)
            udp = struct.pack("!HHHH", 40000, 7001, 8 + len(payload), 0) + payload
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                             bytes([10, 252, 0, 1]), bytes([10, 252, 0, 2]))  # fmt: skip
            ip = ip[:10] + checksum(ip).to_bytes(2, "big") + ip[12:]
            frame = PEER_MAC + VM_MAC + b"\x08\x00" + ip + udp
            fh.write(struct.pack("<IIII", n // 1000000, n % 1000000, len(frame), len(frame)))
            fh.write(frame)


def worker(tap: str, out: str) -> int:
    """vmsniff capture's path after resolve, on ``tap`` into ``out`` until SIGTERM."""
    from vmsniff.capture import CaptureOptions, plan_points
    from vmsniff.capture.live import capture_stage, open_capture
    from vmsniff.capture.netdev import link_exists
    from vmsniff.model import Nic, PlugKind, Server, Target
    from vmsniff.pipeline.run import StopFlag, drive, stop_on_signals
    from vmsniff.pipeline.sinks import FileSink

    nic = Nic(mac=VM_MAC.hex(":"), tap=tap, ovs_port=tap, plug=PlugKind.OVS)
    target = Target(server=Server(id="bench", name="bench", host="here"), nics=(nic,), local=True)
    opts = CaptureOptions(at="tap")
    points = plan_points(target, opts, me="here", device_exists=link_exists)
    flag = StopFlag()
    with stop_on_signals(flag), open_capture(target, points, opts, stop=flag) as cap:
        sink = FileSink(out, "pcapng", opts.snaplen, application="vmsniff capture")
        try:
            print("ready", flush=True)
            stage = capture_stage(cap, sink, opts.direction)
            try:
                stats = drive(cap.source, stage, sink, stop=cap.source.drained_flag)
            finally:
                stage.close()
        finally:
            sink.close()
    print(json.dumps(stats.as_dict()), flush=True)
    return 0


def run_once(
    prefix: str,
    pcap: Path,
    tmp: Path,
    offered: int,
    loop: int = 1,
    cold: bool = False,
    tcpdump_buffer: str = "32768",
) -> dict[str, dict[str, float]]:
    vm, hv = f"{prefix}-vm", f"{prefix}-hv"
    outputs = {"vmsniff": tmp / "vmsniff.pcapng", "tcpdump": tmp / "tcpdump.pcap"}
    for p in outputs.values():
        p.unlink(missing_ok=True)
    buffer = ["-B", tcpdump_buffer] if tcpdump_buffer != "default" else []
    cmds = {
        "vmsniff": [sys.executable, str(Path(__file__).resolve()), "--worker", TAP,
                    str(outputs["vmsniff"])],
        "tcpdump": ["tcpdump", "-q", *buffer, "-i", TAP, "-w", str(outputs["tcpdump"])],
    }  # fmt: skip
    with warm_for(pcap, loop, len(cmds), cold) as warm:
        procs = start_receivers(hv, cmds, ROOT, stdout=subprocess.PIPE)
        try:
            out = procs["vmsniff"].stdout
            assert out is not None
            if out.readline().strip() != b"ready":
                raise SystemExit("the vmsniff worker did not start")
            time.sleep(1.5)  # tcpdump ready too
            return measure(procs, outputs, (vm, "eth0"), pcap, loop, offered, warm)
        finally:
            stop_receivers(procs)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--packets", type=int, default=500_000)
    ap.add_argument("--mix", choices=["64", "imix"], nargs="*", default=["64", "imix"])
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--tcpdump-buffer",
        default="32768",
        metavar="KIB",
        help="tcpdump's -B (default 32768: the ring vmsniff capture has by default; "
        "'default' runs tcpdump without -B, i.e. with its own 2 MiB)",
    )
    ap.add_argument(
        "--cold", action="store_true", help="do not warm free memory first (bench/README.md)"
    )
    ap.add_argument(
        "--loop",
        type=int,
        default=4,
        help="replay the pcap this many times (default 4: 2M packets)",
    )
    ap.add_argument("--worker", nargs=2, metavar=("TAP", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(*args.worker)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    if problem := missing("tcpreplay", "tcpdump"):
        print(problem, file=sys.stderr)
        return 2
    prefix = f"vmsbc{os.getpid()}"
    vm, hv = f"{prefix}-vm", f"{prefix}-hv"
    all_results = {}
    with tempfile.TemporaryDirectory(prefix="vmsniff-bench-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            sh("ip", "netns", "add", vm)
            sh("ip", "netns", "add", hv)
            sh("ip", "-n", vm, "link", "add", "eth0", "address", VM_MAC.hex(":"), "type", "veth",
               "peer", "name", TAP, "netns", hv)  # fmt: skip
            for ns in (vm, hv):  # no IPv6 router solicitations or DAD among the counted frames
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
                sh(
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.default.disable_ipv6=1",
                )
            for ns, dev in ((vm, "eth0"), (hv, TAP), (vm, "lo"), (hv, "lo")):
                sh("ip", "-n", ns, "link", "set", dev, "up")
            for mix in args.mix:
                pcap = tmp / f"udp-{mix}.pcap"
                build_pcap(pcap, args.packets, mix)
                all_results[mix] = run_once(prefix, pcap, tmp, args.packets * args.loop, args.loop,
                                            args.cold, args.tcpdump_buffer)  # fmt: skip
                pcap.unlink()
        finally:
            for ns in (vm, hv):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    if args.json:
        print(json.dumps(all_results, indent=2))
        return 0
    print_header()
    for mix, res in all_results.items():
        print_rows(mix, res)
        v, t = res["vmsniff"], res["tcpdump"]
        print(
            f"{mix:5} ratio vmsniff/tcpdump: CPU per packet "
            f"{ratio(v['cpu_s_per_M'], t['cpu_s_per_M'])}, RSS {v['rss_mb'] / t['rss_mb']:.2f}x, "
            f"lost {v['lost']:.0f} vs {t['lost']:.0f}, replay {v['replay_pps']:.0f} pps"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
