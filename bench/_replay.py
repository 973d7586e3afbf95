"""Helpers shared by the replay benchmarks (bench/receive.py, bench/capture.py)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def veth_namespaces(tx: str, rx: str, tx_mac: bytes, rx_mac: bytes) -> Iterator[None]:
    """Namespaces ``tx`` (``veth0``, 10.251.0.1) and ``rx`` (``eth0``, 10.251.0.2) joined by a
    veth pair with these MACs; removed on the way out, also after a failure."""
    try:
        sh("ip", "netns", "add", tx)
        sh("ip", "netns", "add", rx)
        sh("ip", "-n", tx, "link", "add", "veth0", "address", tx_mac.hex(":"), "type", "veth",
           "peer", "name", "eth0", "netns", rx)  # fmt: skip
        sh("ip", "-n", rx, "link", "set", "eth0", "address", rx_mac.hex(":"))
        sh("ip", "-n", tx, "addr", "add", "10.251.0.1/24", "dev", "veth0")
        sh("ip", "-n", rx, "addr", "add", "10.251.0.2/24", "dev", "eth0")
        for ns, dev in ((tx, "veth0"), (rx, "eth0"), (tx, "lo"), (rx, "lo")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield
    finally:
        for ns in (tx, rx):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def count_records(path: Path) -> int:
    """Packets in a pcap or pcapng file."""
    reader = CaptureReader()
    n = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            n += len(reader.feed(chunk))
    return n


def proc_cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a running process so far (proc(5), fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


Results = dict[str, dict[str, float]]


class WarmMemory:
    """``nbytes`` of free memory touched by a child process that holds it until
    :meth:`release` (at most what ``MemAvailable`` leaves after 2 GiB).

    This machine is a VM whose host takes back the memory the guest frees (virtio-balloon
    free page reporting, 2 s after the pages are freed) and pages out what the guest has not
    touched lately (DAMON): the first use of such a page costs a host page fault. Captures
    write into the page cache, which grows into free memory; a run that meets cold pages pays
    2-4 times the system time per packet in both receivers, and both then lose packets on
    the shared core. Memory freed by this child the moment the replay starts is warm, and the
    kernel hands out pages that have not been reported yet first; so the run writes into warm
    pages, for both tools alike. ``--cold`` leaves the host in the measurement."""

    def __init__(self, nbytes: int) -> None:
        available = 0
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
        self.nbytes = max(0, min(nbytes, available - (2 << 30)))
        self.proc: subprocess.Popen[bytes] | None = None
        if self.nbytes:
            code = f"import sys; x = b'\\x01' * {self.nbytes}; print(flush=True); sys.stdin.read()"
            self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE)  # fmt: skip
            assert self.proc.stdout is not None
            if self.proc.stdout.readline() != b"\n":
                self.release()
                self.nbytes = 0
                print("could not warm free memory: the run measures the host too", file=sys.stderr)

    def __enter__(self) -> WarmMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Let the memory go (idempotent)."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
            proc.wait()


def warm_for(pcap: Path, loop: int, receivers: int, cold: bool) -> WarmMemory:
    """:class:`WarmMemory` for a run: what ``receivers`` files of ``loop`` times ``pcap``
    take, with room for pcapng's longer records; none with ``cold``."""
    return WarmMemory(
        0 if cold else int(pcap.stat().st_size * loop * receivers * 1.3) + (256 << 20)
    )


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
    warm: WarmMemory | None = None,
) -> Results:
    """Replay ``pcap`` ``loop`` times at top speed from ``sender`` (namespace, device), pinned
    to the sender's CPU, while ``procs`` capture into ``outputs``; then stop them (SIGTERM) and
    give per receiver: offered (tcpreplay's successful packets), written, lost, pps, CPU
    seconds (wait4), busy CPU seconds during the replay (/proc), per million written, RSS.
    ``warm`` is released just before the replay."""
    namespace, device = sender
    if warm is not None:
        warm.release()
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
    after = {name: proc_cpu(p.pid) for name, p in procs.items()}
    sys_s = {name: after[name][1] - busy0[name][1] for name in procs}
    busy = {name: sum(after[name]) - sum(busy0[name]) for name in procs}
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
            "busy_sys_s": sys_s[name],
            "cpu_s_per_M": busy[name] / max(written, 1) * 1e6,
            "rss_mb": usage.ru_maxrss / 1024,
            "replay_pps": replay_pps,
        }
    return results


def print_header() -> None:
    print(f"{'mix':5} {'tool':8} {'offered':>8} {'written':>8} {'lost':>7} {'pps':>9} "
          f"{'cpu s':>6} {'busy s':>6} {'of sys':>6} {'busy s/M':>8} {'RSS MB':>7}")  # fmt: skip


def print_rows(mix: str, res: Results) -> None:
    """One table row per tool of one mix."""
    for tool, r in res.items():
        print(
            f"{mix:5} {tool:8} {r['offered']:8.0f} {r['written']:8.0f} {r['lost']:7.0f} "
            f"{r['pps']:9.0f} {r['cpu_s']:6.2f} {r['busy_cpu_s']:6.2f} {r['busy_sys_s']:6.2f} "
            f"{r['cpu_s_per_M']:8.2f} "
            f"{r['rss_mb']:7.1f}"
        )


def ratio(a: float, b: float) -> str:
    """``a/b`` as ``1.23x``, or ``n/a`` when ``b`` measured nothing (a run too short for the
    CPU clock's ticks)."""
    return f"{a / b:.2f}x" if b else "n/a (run too short; more --loop)"
