"""Helpers shared by the replay benchmarks (bench/receive.py, bench/capture.py)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from vmsniff.pcap.reader import CaptureReader


def missing(*tools: str) -> str | None:
    """A message naming the tools (Debian packages of the same name) not on PATH, or None."""
    absent = [t for t in tools if shutil.which(t) is None]
    if not absent:
        return None
    names = " ".join(absent)
    return f"needs {names} on PATH (apt-get install {names})"


SENDER_CPU, RECEIVER_CPU = 0, 1


def on_cpu(cpu: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the child to ``cpu`` (sender on one core, receivers on the
    other, as the issues ask), or None on a single-CPU machine."""
    if len(os.sched_getaffinity(0)) < 2:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def sh(*args: str) -> None:
    """Run a set-up command; fail loudly."""
    subprocess.run(args, check=True, capture_output=True)


def count_records(path: Path) -> int:
    """Packets in a pcap or pcapng file."""
    reader = CaptureReader()
    n = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            n += len(reader.feed(chunk))
    return n


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process so far (proc(5), fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Results = dict[str, dict[str, float]]


def start_receivers(
    namespace: str, cmds: dict[str, list[str]], cwd: Path, *, stdout: int = subprocess.DEVNULL
) -> dict[str, subprocess.Popen[bytes]]:
    """Each receiver command in ``namespace``, pinned to the receivers' CPU."""
    return {
        name: subprocess.Popen(["ip", "netns", "exec", namespace, *cmd], cwd=cwd, stdout=stdout,
                               stderr=subprocess.DEVNULL, preexec_fn=on_cpu(RECEIVER_CPU))
        for name, cmd in cmds.items()
    }  # fmt: skip


def stop_receivers(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Kill whatever is still running (after a failure; measure() stops them normally)."""
    for p in procs.values():
        if p.poll() is None and p.returncode is None:
            p.kill()
            p.wait()


def measure(
    procs: dict[str, subprocess.Popen[bytes]],
    outputs: dict[str, Path],
    sender: tuple[str, str],
    pcap: Path,
    loop: int,
    offered: int,
) -> Results:
    """Replay ``pcap`` ``loop`` times at top speed from ``sender`` (namespace, device), pinned
    to the sender's CPU, while ``procs`` capture into ``outputs``; then stop them (SIGTERM) and
    give per receiver: offered (tcpreplay's successful packets), written, lost, pps, CPU
    seconds (wait4), busy CPU seconds during the replay (/proc), per million written, RSS."""
    namespace, device = sender
    busy0 = {name: proc_cpu(p.pid) for name, p in procs.items()}
    t0 = time.monotonic()
    replay = subprocess.run(
        ["ip", "netns", "exec", namespace, "tcpreplay", "-i", device, "--topspeed",
         f"--loop={loop}", str(pcap)],
        capture_output=True, text=True, preexec_fn=on_cpu(SENDER_CPU),
    )  # fmt: skip
    wall = time.monotonic() - t0
    m = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", replay.stdout)
    replay_pps = float(m.group(1)) if m else offered / wall
    sent = re.search(r"Successful packets:\s+(\d+)", replay.stdout)
    offered = int(sent.group(1)) if sent else offered
    time.sleep(1.5)
    busy = {name: proc_cpu(p.pid) - busy0[name] for name, p in procs.items()}
    for p in procs.values():
        p.send_signal(signal.SIGTERM)
    results: Results = {}
    for name, p in procs.items():
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        written = count_records(outputs[name])
        results[name] = {
            "offered": offered,
            "written": written,
            "lost": offered - written,
            "pps": written / (offered / replay_pps),
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "busy_cpu_s": busy[name],
            "cpu_s_per_M": busy[name] / max(written, 1) * 1e6,
            "rss_mb": usage.ru_maxrss / 1024,
            "replay_pps": replay_pps,
        }
    return results


def print_header() -> None:
    print(f"{'mix':5} {'tool':8} {'offered':>8} {'written':>8} {'lost':>7} {'pps':>9} "
          f"{'cpu s':>6} {'busy s':>6} {'busy s/M':>8} {'RSS MB':>7}")  # fmt: skip


def print_rows(mix: str, res: Results) -> None:
    """One table row per tool of one mix."""
    for tool, r in res.items():
        print(
            f"{mix:5} {tool:8} {r['offered']:8.0f} {r['written']:8.0f} {r['lost']:7.0f} "
            f"{r['pps']:9.0f} {r['cpu_s']:6.2f} {r['busy_cpu_s']:6.2f} {r['cpu_s_per_M']:8.2f} "
            f"{r['rss_mb']:7.1f}"
        )


def ratio(a: float, b: float) -> str:
    """``a/b`` as ``1.23x``, or ``n/a`` when ``b`` measured nothing (a run too short for the
    CPU clock's ticks)."""
    return f"{a / b:.2f}x" if b else "n/a (run too short; more --loop)"
