"""Why inplace.BlockRecords.offsets() has three ways of finding a ring block's packets.

Each TPACKET_V3 packet says where the next one starts (``tp_next_offset``); the obvious way is
to follow that chain in Python, one packet at a time (the anchor row). ``offsets()`` picks one
of three numpy ways instead; this times each on full 1 MiB blocks of 64-byte and IMIX frames
(in memory, no kernel) and prints µs per packet and the ratio to the plain walk.

    .venv/bin/python bench/ring_offsets.py [--runs 30]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.unit.pipeline.blocks import block  # noqa: E402
from vmsniff.pcap.encoder import new_encoder  # noqa: E402
from vmsniff.pipeline.inplace import BlockRecords  # noqa: E402

SIZE = 1 << 20
MAC = 82  # where a SOCK_DGRAM ring puts the IP packet: tpacket3_hdr + sockaddr_ll, aligned


def _sizes(mix: str, rng: random.Random) -> list[int]:
    out, used = [], 48
    while True:
        n = 64 if mix == "64" else rng.choice([64] * 7 + [576] * 4 + [1500])
        step = (MAC + n + 7) & ~7
        if used + step + MAC > SIZE:
            return out
        out.append(n)
        used += step


def _best(fn: Callable[[], object], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _measure(mix: str, rng: random.Random, runs: int) -> None:
    packets = [(i, bytes(n)) for i, n in enumerate(_sizes(mix, rng))]
    mem, base, count, first = block(packets, size=SIZE, mac=MAC)
    rec = BlockRecords(mem, SIZE, new_encoder("pcap", 65535), lambda c: (None, 1, False, None))
    words = rec.words

    def walk() -> list[int]:
        pos, out = base + first, []
        for _ in range(count):
            out.append(pos)
            pos += words[pos >> 2]
        return out

    ways: list[tuple[str, Callable[[], object]]] = [
        ("plain Python walk (anchor)", walk),
        ("_stride (equal sizes)", lambda: rec._stride(base, count, first)),
        ("_scan (whole block at once)", lambda: rec._scan(base, count, first)),
        ("_follow (guessed strides + walk)", lambda: rec._follow(base, count, first)),
        ("offsets() as it chooses (+ checks)", lambda: rec.offsets(base, count, first)),
    ]
    anchor = _best(walk, runs)
    for name, fn in ways:
        if fn() is None:
            print(f"{mix:5} {name:34} {count:7} {'n/a':>7} {'(declines)':>8}")
            continue
        t = _best(fn, runs)
        print(f"{mix:5} {name:34} {count:7} {t * 1e6 / count:7.3f} {t / anchor:7.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    rng = random.Random(1)
    print(f"{'mix':5} {'way':34} {'packets':>7} {'us/pkt':>7} {'vs walk':>8}")
    for mix in ("64", "imix"):
        _measure(mix, rng, args.runs)


if __name__ == "__main__":
    main()
