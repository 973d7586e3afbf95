"""``vmsniff flows`` against tshark's conversation tables and tcpdump's plain read, one file.

Writes (once, cached under /tmp) a pcap of ``--packets`` packets in ``--flows`` interleaved
flows, half TCP (handshake, data both ways, FINs) and half UDP, then runs in the same process
run, one after the other:

* ``vmsniff flows FILE --json``
* ``tshark -q -z conv,tcp -z conv,udp -r FILE`` (the anchor: same conversation counts)
* ``tcpdump -r FILE -w /dev/null`` (reading alone: the floor)

and prints wall time, CPU (user+sys) and peak RSS of each, with ratios to tshark, and checks
that vmsniff and tshark found the same number of TCP and UDP conversations.

    .venv/bin/python bench/flows.py                     # 1,000,000 packets, 10,000 flows
    .venv/bin/python bench/flows.py --packets 200000 --flows 2000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_ETH = bytes.fromhex("020000000002020000000001") + b"\x08\x00"


def _frame(src: int, dst: int, proto: int, sport: int, dport: int, flags: int, size: int) -> bytes:
    l4 = (struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 0x50, flags, 65535, 0, 0)
          if proto == 6 else struct.pack("!HHHH", sport, dport, 8 + size, 0))  # fmt: skip
    total = 20 + len(l4) + size
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, total, 0, 0x4000, 64, proto, 0, src, dst)
    return _ETH + ip + l4 + bytes(size)


def write_pcap(path: Path, packets: int, flows: int) -> None:
    """``packets`` packets, round-robin over ``flows`` flows (each gets packets // flows)."""
    per_flow = max(packets // flows, 6)
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    rec = struct.Struct("<IIII")
    n = 0
    with path.open("wb") as fh:
        for r in range(per_flow):
            for f in range(flows):
                client, server = 0x0A000000 + f, 0x0A100000 + f % 251
                cport, sport = 20000 + f % 40000, 80 if f % 2 == 0 else 53
                proto = 6 if f % 2 == 0 else 17
                forward = r % 2 == 0
                if proto == 6:
                    if r == 0:
                        flags, size = 0x02, 0
                    elif r == 1:
                        flags, size = 0x12, 0
                    elif r >= per_flow - 2:
                        flags, size = 0x11, 0
                    else:
                        flags, size = 0x18, (f * 7 + r * 13) % 200
                else:
                    flags, size = 0, (f * 5 + r * 11) % 150 + 10
                if forward:
                    frame = _frame(client, server, proto, cport, sport, flags, size)
                else:
                    frame = _frame(server, client, proto, sport, cport, flags, size)
                out += rec.pack(n // 1_000_000, n % 1_000_000, len(frame), len(frame)) + frame
                n += 1
            if len(out) > 1 << 22:
                fh.write(out)
                out.clear()
        fh.write(out)


def write_gre_pcap(path: Path, plain: Path, packets: int) -> None:
    """The first ``packets`` frames of ``plain`` inside GRE (key 100) in outer IPv4, as a
    raw-IP pcap: what ``vmsniff receive -r`` reads."""
    data = plain.read_bytes()
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    pos, n = 24, 0
    while pos + 16 <= len(data) and n < packets:
        sec, usec, cap, _orig = struct.unpack_from("<IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + cap]
        gre = struct.pack("!HHI", 0x2000, 0x6558, 100) + frame
        ip = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(gre), 0, 0, 64, 47, 0, 0xC0A80001,
                         0xC0A80002) + gre  # fmt: skip
        out += struct.pack("<IIII", sec, usec, len(ip), len(ip)) + ip
        pos += 16 + cap
        n += 1
    path.write_bytes(out)


def run(argv: list[str]) -> dict[str, float | str]:
    """Wall s, CPU s and peak RSS MiB of one command (stdout kept for the counts)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    out = proc.stdout.read() if proc.stdout else b""  # type: ignore[union-attr]
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[0]} failed: exit {os.waitstatus_to_exitcode(status)}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_mib": usage.ru_maxrss / 1024, "stdout": out.decode(errors="replace")}  # fmt: skip


def _tshark_counts(text: str) -> dict[str, int]:
    counts, section = {"tcp": 0, "udp": 0}, None
    for line in text.splitlines():
        m = re.match(r"(TCP|UDP) Conversations", line)
        if m:
            section = m[1].lower()
        elif section and "<->" in line:
            counts[section] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--flows", type=int, default=10_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    path = Path(f"/tmp/vmsniff-bench-flows-{args.packets}-{args.flows}.pcap")
    if not path.exists():
        write_pcap(path.with_suffix(".tmp"), args.packets, args.flows)
        path.with_suffix(".tmp").rename(path)
    rows = {
        "vmsniff flows": run([sys.executable, "-m", "vmsniff", "flows", str(path), "--json"]),
        "tshark conv": run(
            ["tshark", "-q", "-n", "-z", "conv,tcp", "-z", "conv,udp", "-r", str(path)]
        ),  # fmt: skip
        "tcpdump read": run(["tcpdump", "-r", str(path), "-w", "/dev/null"]),
    }
    ours = json.loads(str(rows["vmsniff flows"]["stdout"]))["totals"]
    counts = {"vmsniff": {p: ours.get(p.upper(), {}).get("flows", 0) for p in ("tcp", "udp")},
              "tshark": _tshark_counts(str(rows["tshark conv"]["stdout"]))}  # fmt: skip
    # printing: vmsniff receive -r F -n > /dev/null against tcpdump -n -r F > /dev/null
    gre = path.with_name(path.stem + "-gre100k.pcap")
    if not gre.exists():
        write_gre_pcap(gre, path, 100_000)
    printing = {
        "vmsniff receive -n": run(
            [sys.executable, "-m", "vmsniff", "receive", "-r", str(gre), "-n"]
        ),  # fmt: skip
        "tcpdump -n": run(["tcpdump", "-n", "-r", str(gre)]),
    }
    anchor = rows["tshark conv"]
    result = {
        "packets": args.packets, "flows": args.flows, "file_mib": path.stat().st_size / 2**20,
        "rows": {k: {m: v[m] for m in ("wall_s", "cpu_s", "rss_mib")} for k, v in rows.items()},
        "conversations": counts, "same_conversations": counts["vmsniff"] == counts["tshark"],
        "printing_pps": {k: 100_000 / float(v["wall_s"]) for k, v in printing.items()},
        "ratio_wall_tshark_over_vmsniff": float(anchor["wall_s"]) / float(rows["vmsniff flows"]["wall_s"]),  # noqa: E501
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.packets} packets in {args.flows} flows, {result['file_mib']:.0f} MiB: {path}")
    print(f"{'tool':14} {'wall s':>8} {'cpu s':>8} {'RSS MiB':>8} {'wall vs tshark':>15}")
    for name, row in rows.items():
        ratio = float(row["wall_s"]) / float(anchor["wall_s"])
        print(f"{name:14} {row['wall_s']:8.2f} {row['cpu_s']:8.2f} {row['rss_mib']:8.1f} "
              f"{ratio:14.2f}x")  # fmt: skip
    print(
        f"conversations: vmsniff {counts['vmsniff']}, tshark {counts['tshark']}: "
        f"{'same' if result['same_conversations'] else 'DIFFERENT'}"
    )
    print(f"vmsniff flows is {result['ratio_wall_tshark_over_vmsniff']:.1f}x faster than tshark")
    print("printing 100,000 GRE packets to /dev/null (wall):")
    pps = result["printing_pps"]
    assert isinstance(pps, dict)
    for name, value in pps.items():
        print(f"  {name:20} {value:10.0f} packets/s")
    print(f"  ratio tcpdump/vmsniff: {pps['tcpdump -n'] / pps['vmsniff receive -n']:.1f}x")


if __name__ == "__main__":
    main()
