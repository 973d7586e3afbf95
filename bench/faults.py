"""Fault injection: end mirror sessions badly and count what they leave behind (issue #13).

Builds its own lab (unique prefix, always removed), puts a foreign GRE port, a foreign
internal port and a foreign Mirror on br-int with plain ``ovs-vsctl`` (no vmsniff marks),
then runs ``--runs`` sessions of ``vmsniff mirror c-private --to RECEIVER`` inside the
hypervisor namespace (resolving through the stand-in cloud, as on a compute node). Each
session is ended by one fault drawn at random (seeded):

  SIGINT, SIGTERM, SIGHUP, two SIGINTs 5 ms apart, SIGKILL,
  ovsdb-server restart, ovs-vswitchd restart (stopped by pidfile, 0-1 s outage, started)

at a moment drawn at random:

  resolve    before the transaction (a random delay shorter than the calibrated start-up)
  commit     as soon as ``ovsdb-client monitor`` sees the Mirror row inserted (the session
             is waiting for its tunnel port's OpenFlow port)
  running    0-1 s after the session said it is mirroring
  teardown   0-30 ms after a SIGINT asked the session to stop

The moment recorded is the one observed when the fault fired (a draw of ``commit`` that
fires after the session already said ``mirroring`` is counted as ``running``). After a
daemon restart outside teardown the session keeps running and is then stopped by SIGINT.

After each session: its exit code; vmsniff rows (Port, Interface, Mirror with the
``vmsniff-session`` mark) left after its exit, and after one ``vmsniff cleanup --expired``;
whether any foreign row changed (every column compared, except the ones ovs-vswitchd
itself writes: statistics, status, link state and the like, which a daemon restart resets);
whether vmsniff's own output said the database was unreachable. Leftovers are then removed
with ``vmsniff cleanup --all`` so that the next session starts clean.

Prints one table per fault and one per moment; ``--json FILE`` keeps every run. A script,
not a test: it asserts nothing, it counts.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vmsniff.lab.build import build  # noqa: E402
from vmsniff.lab.status import env_vars  # noqa: E402
from vmsniff.lab.switch import ovs_env, restart_daemon, start_daemon, stop_daemon  # noqa: E402
from vmsniff.lab.teardown import teardown  # noqa: E402
from vmsniff.lab.topology import RECEIVER_IP, Lab, lab_for  # noqa: E402

FAULTS = ("SIGINT", "SIGTERM", "SIGHUP", "2xSIGINT", "SIGKILL", "ovsdb-restart", "vswitchd-restart")
MOMENTS = ("resolve", "commit", "running", "teardown")
TABLES = ("Port", "Interface", "Mirror")
MARK = "vmsniff-session"
#: Columns ovs-vswitchd writes by itself (or ovsdb bookkeeping): a restart changes them
#: without anyone touching the row's configuration.
VOLATILE = {
    "_version", "statistics", "status", "link_state", "link_speed", "link_resets",
    "admin_state", "mtu", "duplex", "ofport", "ifindex", "mac_in_use", "error",
    "lacp_current", "bfd_status", "cfm_fault", "cfm_fault_status", "cfm_health",
    "cfm_remote_mpids", "cfm_flap_count", "cfm_remote_opstate", "rstp_status",
    "rstp_statistics", "bond_active_slave", "bond_active_member",
}  # fmt: skip
#: What vmsniff says when it could not reach the database (Unreachable, exit 6).
UNREACHABLE_RE = re.compile(
    r"cannot reach OVSDB|did not answer|unreachable|not reachable|database (is )?(down|gone)",
    re.IGNORECASE,
)
UNREACHABLE_EXIT = 6
FOREIGN_PORTS = ("fgn-gre0", "fgn-int0")
FOREIGN_MIRROR = "fgn-mirror"


@dataclass
class Run:
    """One session and what it left."""

    index: int
    fault: str
    drawn_moment: str
    moment: str = ""
    exit_code: int | str = ""
    rows_after_exit: int = 0
    rows_after_cleanup: int = 0
    foreign_touched: int = 0
    reported_unreachable: bool = False
    cleanup_exit: int = 0
    seconds: float = 0.0
    stderr_tail: str = ""
    notes: list[str] = field(default_factory=list)


# --- the switch, read with ovs-vsctl --------------------------------------------------------


def vsctl(lab: Lab, *args: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["ovs-vsctl", f"--db={lab.ovsdb_remote}", "--timeout=10", *args],
        capture_output=True, text=True, env=ovs_env(lab), timeout=20,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise RuntimeError(f"ovs-vsctl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def table_rows(lab: Lab, table: str) -> list[dict[str, Any]]:
    """Every row of ``table`` as {column: value} (ovs-vsctl's JSON, maps made dicts)."""
    data = json.loads(vsctl(lab, "--format=json", "list", table))
    return [
        {col: _plain(val) for col, val in zip(data["headings"], row, strict=True)}
        for row in data["data"]
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 2 and value[0] == "map":
        return {k: _plain(v) for k, v in value[1]}
    if isinstance(value, list) and len(value) == 2 and value[0] == "set":
        return sorted((_plain(v) for v in value[1]), key=repr)
    if isinstance(value, list) and len(value) == 2 and value[0] == "uuid":
        return value[1]
    return value


def _as_list(value: Any) -> list[Any]:
    # ovs-vsctl writes a set of one element as the bare element (RFC 7047 section 5.1).
    return value if isinstance(value, list) else [value]


def vmsniff_rows(lab: Lab) -> int:
    """How many Port, Interface and Mirror rows carry vmsniff's session mark."""
    return sum(
        1 for table in TABLES for row in table_rows(lab, table) if MARK in row["external_ids"]
    )


def foreign_snapshot(lab: Lab) -> dict[str, Any]:
    """The foreign rows (all but the volatile columns) and their places in br-int's sets."""
    names = {*FOREIGN_PORTS, FOREIGN_MIRROR}
    snap: dict[str, Any] = {}
    for table in TABLES:
        for row in table_rows(lab, table):
            if row["name"] in names:
                snap[f"{table}:{row['name']}"] = {k: v for k, v in row.items() if k not in VOLATILE}
    bridge = next(r for r in table_rows(lab, "Bridge") if r["name"] == "br-int")
    ours = {v["_uuid"] for k, v in snap.items() if not k.startswith("Interface:")}
    members = [*_as_list(bridge["ports"]), *_as_list(bridge["mirrors"])]
    snap["br-int:ports+mirrors"] = sorted(u for u in members if u in ours)
    return snap


def touched(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Which foreign rows (or br-int set memberships) differ, with the columns that do."""
    changes = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            cols = sorted(c for c in old.keys() | new.keys() if old.get(c) != new.get(c))
            changes.append(f"{key}: " + ", ".join(f"{c} {old.get(c)!r} -> {new.get(c)!r}"
                                                  for c in cols))  # fmt: skip
        else:
            changes.append(f"{key}: {old!r} -> {new!r}")
    return changes


def add_foreign_rows(lab: Lab) -> None:
    """Someone else's GRE port, internal port and Mirror, made with plain ovs-vsctl."""
    native = lab.vm("c-native").ovs_port
    vsctl(
        lab,
        "--", "add-port", "br-int", "fgn-gre0",
        "--", "set", "Interface", "fgn-gre0", "type=gre", f"options:remote_ip={RECEIVER_IP}",
        "options:key=4242", "external_ids:owner=someone-else",
        "--", "add-port", "br-int", "fgn-int0",
        "--", "set", "Interface", "fgn-int0", "type=internal",
        "--", "--id=@out", "get", "Port", "fgn-gre0",
        "--", "--id=@vm", "get", "Port", native,
        "--", "--id=@m", "create", "Mirror", f"name={FOREIGN_MIRROR}", "select_src_port=@vm",
        "output_port=@out", "external_ids:ticket=OPS-1",
        "--", "add", "Bridge", "br-int", "mirrors", "@m",
    )  # fmt: skip


# --- one session ------------------------------------------------------------------------------


def vmsniff_env(lab: Lab) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(env_vars(lab))
    return env


def in_hv(lab: Lab, *args: str) -> list[str]:
    return ["ip", "netns", "exec", lab.hypervisor_ns, sys.executable, "-m", "vmsniff", *args]


class Watch:
    """Events of one session, with the time they arrived: stderr lines and Mirror inserts."""

    def __init__(self, lab: Lab, proc: subprocess.Popen[str]) -> None:
        self.events: queue.Queue[tuple[str, float]] = queue.Queue()
        self.stderr: list[str] = []
        self.committed = threading.Event()
        self.announced = threading.Event()
        self.monitor = subprocess.Popen(
            ["ovsdb-client", "monitor", lab.ovsdb_remote, "Open_vSwitch", "Mirror", "name",
             "--format=csv"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ovs_env(lab),
        )  # fmt: skip
        self._threads = [
            threading.Thread(target=self._read_stderr, args=(proc,), daemon=True),
            threading.Thread(target=self._read_monitor, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_stderr(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.stderr.append(line)
            if line.startswith("mirroring"):
                self.announced.set()

    def _read_monitor(self) -> None:
        assert self.monitor.stdout is not None
        for line in self.monitor.stdout:
            if ",insert," in line and "fgn-mirror" not in line:
                self.committed.set()

    def close(self) -> None:
        if self.monitor.poll() is None:
            self.monitor.terminate()
        self.monitor.wait()
        for t in self._threads:
            t.join(timeout=5)


def fire(lab: Lab, proc: subprocess.Popen[str], fault: str, rng: random.Random) -> list[str]:
    """Apply ``fault`` now; return notes."""
    notes: list[str] = []
    if fault in ("SIGINT", "SIGTERM", "SIGHUP", "SIGKILL"):
        _signal(proc, getattr(signal, fault))
    elif fault == "2xSIGINT":
        _signal(proc, signal.SIGINT)
        time.sleep(0.005)
        _signal(proc, signal.SIGINT)
    else:
        daemon = "ovsdb-server" if fault == "ovsdb-restart" else "ovs-vswitchd"
        outage = rng.uniform(0.0, 1.0)
        notes.append(f"{daemon} down {outage:.2f} s")
        restart_daemon(lab, daemon, outage=outage)
    return notes


def _signal(proc: subprocess.Popen[str], sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)


def one_session(
    lab: Lab, index: int, fault: str, moment: str, rng: random.Random, startup: float
) -> Run:
    run = Run(index, fault, moment)
    before = foreign_snapshot(lab)
    started = time.monotonic()
    proc = subprocess.Popen(
        in_hv(lab, "mirror", "c-private", "--to", RECEIVER_IP, "--ttl", "1h"),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=vmsniff_env(lab),
    )  # fmt: skip
    watch = Watch(lab, proc)
    try:
        run.moment = _wait_for_moment(proc, watch, moment, rng, startup)
        run.notes += fire(lab, proc, fault, rng)
        daemon_fault = fault.endswith("-restart")
        if daemon_fault and moment != "teardown" and proc.poll() is None:
            time.sleep(0.5)
            _signal(proc, signal.SIGINT)  # the session survived the restart: end it normally
        try:
            proc.wait(timeout=30)
            run.exit_code = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            run.exit_code = "hung"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        watch.close()
    run.seconds = round(time.monotonic() - started, 3)
    err = "".join(watch.stderr)
    run.stderr_tail = err[-400:]
    run.reported_unreachable = run.exit_code == UNREACHABLE_EXIT or bool(UNREACHABLE_RE.search(err))
    _daemons_up(lab)
    run.rows_after_exit = vmsniff_rows(lab)
    cleaned = subprocess.run(
        in_hv(lab, "cleanup", "--expired"), capture_output=True, text=True, timeout=60,
        env=vmsniff_env(lab),
    )  # fmt: skip
    run.cleanup_exit = cleaned.returncode
    if UNREACHABLE_RE.search(cleaned.stderr):
        run.reported_unreachable = True
    run.rows_after_cleanup = vmsniff_rows(lab)
    changes = touched(before, foreign_snapshot(lab))
    run.foreign_touched = len(changes)
    run.notes += changes
    if run.rows_after_cleanup:
        # Start the next session clean (vmsniff's own rows only).
        subprocess.run(in_hv(lab, "cleanup", "--all"), capture_output=True, timeout=60,
                       env=vmsniff_env(lab))  # fmt: skip
        if vmsniff_rows(lab):
            raise RuntimeError("vmsniff cleanup --all left vmsniff rows; stopping")
    return run


def _wait_for_moment(
    proc: subprocess.Popen[str], watch: Watch, moment: str, rng: random.Random, startup: float
) -> str:
    """Wait until the drawn moment; return the moment observed when the fault fires."""
    if moment == "resolve":
        time.sleep(rng.uniform(0.0, 0.9 * startup))
    elif moment == "commit":
        watch.committed.wait(timeout=30)
    else:
        watch.announced.wait(timeout=30)
        if moment == "running":
            time.sleep(rng.uniform(0.0, 1.0))
        else:
            time.sleep(rng.uniform(0.0, 0.5))
            _signal(proc, signal.SIGINT)
            time.sleep(rng.uniform(0.0, 0.03))
            return "teardown" if proc.poll() is None else "after-exit"
    if proc.poll() is not None:
        return "after-exit"
    if watch.announced.is_set():
        return "running"
    return "commit" if watch.committed.is_set() else "resolve"


def _daemons_up(lab: Lab) -> None:
    """Make sure both daemons run again (a restart may have been cut short)."""
    for daemon in ("ovsdb-server", "ovs-vswitchd"):
        ctl = lab.rundir / f"{daemon}.ctl"
        if not ctl.exists():
            stop_daemon(lab, daemon)
            start_daemon(lab, daemon)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if subprocess.run(
            ["ovs-vsctl", f"--db={lab.ovsdb_remote}", "--timeout=2", "br-exists", "br-int"],
            env=ovs_env(lab), capture_output=True,
        ).returncode == 0:  # fmt: skip
            return
        time.sleep(0.1)


def self_check(lab: Lab) -> None:
    """The foreign rows are all seen (2 Ports, 2 Interfaces, the Mirror, their 3 places in
    br-int), and the comparison sees a change of one column of one row, and its undoing."""
    before = foreign_snapshot(lab)
    if len(before["br-int:ports+mirrors"]) != 3 or len(before) != 6:
        raise RuntimeError(f"the foreign rows are not all seen: {sorted(before)}")
    vsctl(lab, "set", "Port", "fgn-int0", "external_ids:probe=1")
    changed = len(touched(before, foreign_snapshot(lab)))
    vsctl(lab, "remove", "Port", "fgn-int0", "external_ids", "probe")
    if changed != 1 or touched(before, foreign_snapshot(lab)):
        raise RuntimeError(f"the foreign-row comparison is broken ({changed} changes seen)")


def calibrate(lab: Lab) -> float:
    """Seconds from process start to the Mirror row's insert (median of three sessions)."""
    samples = []
    for _ in range(3):
        started = time.monotonic()
        proc = subprocess.Popen(
            in_hv(lab, "mirror", "c-private", "--to", RECEIVER_IP),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env=vmsniff_env(lab),
        )  # fmt: skip
        watch = Watch(lab, proc)
        if watch.committed.wait(timeout=30):
            samples.append(time.monotonic() - started)
        watch.announced.wait(timeout=30)
        time.sleep(0.5)
        if vmsniff_rows(lab) == 0:
            raise RuntimeError("a running session's rows were not counted: the count is broken")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        watch.close()
        if proc.returncode != 0 or vmsniff_rows(lab):
            raise RuntimeError("a plain mirror session failed: " + "".join(watch.stderr))
    if not samples:
        raise RuntimeError("no Mirror insert seen while calibrating")
    return sorted(samples)[len(samples) // 2]


# --- the report -------------------------------------------------------------------------------


def table(runs: list[Run], key: str, order: tuple[str, ...]) -> str:
    groups: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        groups[getattr(r, key)].append(r)
    head = (
        f"| {key} | runs | exit codes seen | runs with rows left after exit (rows) "
        "| runs with rows left after cleanup --expired (rows) | foreign rows touched "
        "| reported unreachable | left after cleanup, not reported |"
    )
    lines = [head, "|" + "---|" * 8]
    for name in [*order, *sorted(set(groups) - set(order))]:
        rs = groups.get(name)
        if not rs:
            continue
        codes = Counter(str(r.exit_code) for r in rs)
        codes_s = ", ".join(f"{c}×{n}" for c, n in sorted(codes.items()))
        left = [r for r in rs if r.rows_after_exit]
        kept = [r for r in rs if r.rows_after_cleanup]
        silent = [r for r in kept if not r.reported_unreachable]
        lines.append(
            f"| {name} | {len(rs)} | {codes_s} | {len(left)} ({sum(r.rows_after_exit for r in rs)})"
            f" | {len(kept)} ({sum(r.rows_after_cleanup for r in rs)})"
            f" | {sum(r.foreign_touched for r in rs)}"
            f" | {sum(r.reported_unreachable for r in rs)} | {len(silent)} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="mirror sessions (default 100)")
    parser.add_argument("--seed", type=int, default=13, help="random seed (default 13)")
    parser.add_argument("--json", metavar="FILE", help="write every run here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/faults.py needs root (it builds a lab)", file=sys.stderr)
        return 2
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background by a shell (`bench/faults.py &`), this process and every
        # vmsniff it starts would ignore SIGINT (an ignored signal stays ignored across exec),
        # and a SIGINT during resolve would be lost: the session runs on and looks hung.
        # Handled signals are reset to their default in a child, so handle it here.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    rng = random.Random(args.seed)
    lab = lab_for(f"vmsf{os.getpid()}")
    runs: list[Run] = []
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=os.path.dirname(__file__)).stdout.strip()  # fmt: skip
    began = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        build(lab)
        add_foreign_rows(lab)
        self_check(lab)
        startup = calibrate(lab)
        print(f"lab {lab.prefix}; process start to Mirror insert: {startup:.2f} s", file=sys.stderr)
        for i in range(args.runs):
            fault, moment = rng.choice(FAULTS), rng.choice(MOMENTS)
            run = one_session(lab, i, fault, moment, rng, startup)
            runs.append(run)
            print(
                f"{i:4d} {fault:16s} {moment:8s}->{run.moment:10s} exit {run.exit_code!s:5s} "
                f"left {run.rows_after_exit} -> {run.rows_after_cleanup} "
                f"foreign {run.foreign_touched} unreachable {run.reported_unreachable} "
                + "; ".join(run.notes),
                file=sys.stderr,
            )
    finally:
        teardown(lab)
    print(f"fault injection: {len(runs)} sessions, seed {args.seed}, commit {commit}, {began}")
    print(f"command: python bench/faults.py --runs {args.runs} --seed {args.seed}\n")
    print(table(runs, "fault", FAULTS))
    print()
    print(table(runs, "moment", (*MOMENTS, "after-exit")))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"seed": args.seed, "commit": commit, "date": began,
                       "runs": [asdict(r) for r in runs]}, out, indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
