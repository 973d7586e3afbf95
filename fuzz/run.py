"""Fuzz every vmsniff decoder that reads bytes from outside; print what it found.

    python -m fuzz                                 # every decoder, default inputs, all cores
    python -m fuzz --decoder ring --inputs 200000 --seed 7
    python -m fuzz --replay fuzz-crashes/ring-0123456789.bin --decoder ring

Seeded mutation fuzzing (no coverage feedback): seeds from the real captures and from
vmsniff's own encoders, mutated by :class:`fuzz.mutate.Mutator` and, for the reassembler and
the ring walker, by a structure-aware mutator of the target. Inputs are split over worker
processes (``--workers``, default: every core); the same ``--seed`` gives the same inputs.
A crash is any exception but ``MalformedPacket``, a broken invariant of the target, or a hang:
256 inputs taking longer than 4 x ``--timeout`` seconds (the input then running is the one
reported); the first input of each crash signature is written
to ``--crash-dir`` for ``--replay``. Exit status 1 when anything crashed.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import multiprocessing
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from fuzz.mutate import Mutator
from fuzz.targets import TARGETS, Target

# default inputs per decoder: ~10^7 in all, weighted by what each costs per input here
DEFAULT_INPUTS = {
    "pcap": 1_600_000,
    "pcapng": 1_400_000,
    "gre": 2_400_000,
    "erspan": 1_400_000,
    "ipv4-reasm": 500_000,
    "ipv6-reasm": 1_000_000,
    "ring": 1_000_000,
    "ring-py": 700_000,
}
_CHUNK = 256  # inputs per alarm: an input slower than --timeout is a hang


class Hang(Exception):
    """An input ran longer than the timeout."""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang("input ran past the timeout")


def signature(exc: BaseException) -> str:
    """Exception type and the innermost frame in vmsniff or the target: one per bug."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = next((f for f in reversed(tb) if "/vmsniff/" in f.filename), None)
    if where is None and tb:
        where = tb[-1]
    loc = f"{Path(where.filename).name}:{where.lineno}" if where else "?"
    return f"{type(exc).__name__} at {loc}"


@functools.cache
def seeds(name: str, seed: int) -> list[bytes]:
    """The corpus of decoder ``name`` (built once per process)."""
    return TARGETS[name].seeds(random.Random(seed))


def inputs(name: str, seed: int, n: int, index: int = 0) -> Iterator[bytes]:
    """The ``n`` inputs worker ``index`` of a campaign with ``seed`` feeds decoder ``name``
    (worker 0 starts with every seed as it is); the same arguments give the same bytes."""
    target = TARGETS[name]
    corpus = seeds(name, seed)
    rng = random.Random(f"{seed}:{name}:{index}")
    mutator = Mutator(rng, corpus)
    for i in range(n):
        if index == 0 and i < len(corpus):
            yield corpus[i]
            continue
        data = rng.choice(corpus)
        if target.mutate is not None and rng.random() < 0.4:
            data = target.mutate(rng, data)
            if rng.random() < 0.3:
                data = mutator.mutate(data)
        else:
            data = mutator.mutate(data)
        yield data


def _worker(args: tuple[str, int, int, int, str, float]) -> dict[str, object]:
    name, seed, n, index, crash_dir, timeout = args
    run = TARGETS[name].run
    crashes: dict[str, list[object]] = {}
    signal.signal(signal.SIGALRM, _alarm)
    t0 = time.perf_counter()
    done = 0
    for data in inputs(name, seed, n, index):
        if done % _CHUNK == 0:  # an input slower than the timeout is a hang
            signal.setitimer(signal.ITIMER_REAL, timeout * 4)
        try:
            run(data)
        except Exception as exc:  # everything the contract forbids
            _record(crashes, name, exc, data, crash_dir)
        done += 1
    signal.setitimer(signal.ITIMER_REAL, 0)
    return {"inputs": done, "seconds": time.perf_counter() - t0, "crashes": crashes,
            "seeds": len(seeds(name, seed))}  # fmt: skip


def _record(crashes: dict[str, list[object]], name: str, exc: BaseException, data: bytes,
            crash_dir: str) -> None:  # fmt: skip
    sig = signature(exc)
    entry = crashes.get(sig)
    if entry is None:
        digest = hashlib.sha1(f"{name} {sig}".encode()).hexdigest()[:10]
        path = Path(crash_dir) / f"{name}-{digest}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        crashes[sig] = [0, str(path), f"{type(exc).__name__}: {exc}"[:200]]
        entry = crashes[sig]
    entry[0] = int(entry[0]) + 1  # type: ignore[call-overload]


def replay(target: Target, path: Path) -> int:
    """Run one saved input; print the traceback of what it raises."""
    data = path.read_bytes()
    try:
        target.run(data)
    except Exception:
        traceback.print_exc()
        return 1
    print(f"{path}: no crash ({target.name}, {len(data)} bytes)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    ap.add_argument("--decoder", action="append", choices=sorted(TARGETS),
                    help="fuzz only this decoder (repeatable); default: all")  # fmt: skip
    ap.add_argument("--inputs", type=int, help="inputs per decoder (default: a per-decoder "
                    "share of about 10^7 in all, see DEFAULT_INPUTS)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds one input may take")
    ap.add_argument("--crash-dir", default="fuzz-crashes", help="where crashing inputs go")
    ap.add_argument("--replay", type=Path, help="run one saved input of --decoder")
    args = ap.parse_args(argv)
    names = args.decoder or list(TARGETS)
    if args.replay is not None:
        if len(names) != 1:
            ap.error("--replay needs exactly one --decoder")
        return replay(TARGETS[names[0]], args.replay)
    rows = []
    found: list[tuple[str, str, list[object]]] = []
    wall0 = time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(args.workers) as pool:
        for name in names:
            n = args.inputs if args.inputs is not None else DEFAULT_INPUTS[name]
            shares = [n // args.workers + (i < n % args.workers) for i in range(args.workers)]
            jobs = [(name, args.seed, s, i, args.crash_dir, args.timeout)
                    for i, s in enumerate(shares)]  # fmt: skip
            t0 = time.perf_counter()
            results = pool.map(_worker, jobs)
            secs = time.perf_counter() - t0
            crashes: dict[str, list[object]] = {}
            for r in results:
                for sig, (count, path, msg) in r["crashes"].items():  # type: ignore[attr-defined]
                    entry = crashes.setdefault(sig, [0, path, msg])
                    entry[0] = int(entry[0]) + count  # type: ignore[call-overload]
            inputs = sum(int(r["inputs"]) for r in results)  # type: ignore[call-overload]
            total = sum(int(e[0]) for e in crashes.values())  # type: ignore[call-overload]
            rows.append((name, inputs, total, len(crashes), secs, results[0]["seeds"]))
            found += [(name, sig, e) for sig, e in crashes.items()]
            print(f"  {name}: {inputs:,} inputs, {total} crashes, {secs:.1f} s", file=sys.stderr)
    wall = time.perf_counter() - wall0
    print(f"seed {args.seed}, {args.workers} workers, wall {wall:.0f} s")
    print()
    print("| decoder | inputs | crashes | unique signatures | seconds | inputs/s | seeds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, inputs, total, uniq, secs, seeds in rows:
        print(f"| {name} | {inputs:,} | {total} | {uniq} | {secs:.1f} | {inputs / secs:,.0f} "
              f"| {seeds} |")  # fmt: skip
    all_inputs = sum(r[1] for r in rows)
    all_crashes = sum(r[2] for r in rows)
    print(f"| **total** | {all_inputs:,} | {all_crashes} | {sum(r[3] for r in rows)} "
          f"| {sum(r[4] for r in rows):.1f} | {all_inputs / wall:,.0f} | |")  # fmt: skip
    for name, sig, (count, path, msg) in found:
        print(f"\n{name}: {sig} ({count}x), e.g. {path}\n  {msg}")
    return 1 if all_crashes else 0
