"""Benchmark: mirror set-up and teardown latency, vmsniff against one ovs-vsctl chain.

Builds its own lab (unique prefix, always removed), then, in the same run, N rounds of:

- ``ovs-vsctl`` chain (anchor): one process adding a GRE port + Mirror (and one removing them),
  whole-process wall time, as an operator types it today;
- vmsniff's transaction in-process (connected ovsdbapp API): apply_plan until commit, then the
  wait until the tunnel interface has an OpenFlow port; teardown transaction;
- the whole ``vmsniff mirror`` command, offline (libvirt + OVSDB) and through the stand-in
  cloud: process start until it prints the receive hint (rows committed, tunnel up).

Prints a table of medians and ratios. Targets (issue 5): whole set-up within 0.5 s offline and
1 s via the cloud; the transaction within 2x the ovs-vsctl chain.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vmsniff.lab.build import build  # noqa: E402
from vmsniff.lab.status import env_vars  # noqa: E402
from vmsniff.lab.switch import ovs_env  # noqa: E402
from vmsniff.lab.teardown import teardown  # noqa: E402
from vmsniff.lab.topology import RECEIVER_IP, lab_for  # noqa: E402


def _ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def vsctl_chain(lab, qvo: str, key: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    env = ovs_env(lab)
    db = f"--db={lab.ovsdb_remote}"
    add = ["ovs-vsctl", db, "--", "add-port", "br-int", "bench-gre", "--", "set", "Interface",
           "bench-gre", "type=gre", f"options:remote_ip={RECEIVER_IP}", f"options:key={key}",
           "--", "--id=@p", "get", "Port", "bench-gre", "--", "--id=@q", "get", "Port", qvo,
           "--", "--id=@m", "create", "Mirror", "name=bench-m", "select_src_port=@q",
           "select_dst_port=@q", "output_port=@p", "--", "add", "Bridge", "br-int", "mirrors",
           "@m"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(add, env=env, check=True, capture_output=True)
    t1 = time.perf_counter()
    uuid = subprocess.run(["ovs-vsctl", db, "get", "Mirror", "bench-m", "_uuid"], env=env,
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    t2 = time.perf_counter()
    subprocess.run(["ovs-vsctl", db, "--", "remove", "Bridge", "br-int", "mirrors", uuid,
                    "--", "del-port", "br-int", "bench-gre"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    t3 = time.perf_counter()
    return t1 - t0, t3 - t2


def in_process(lab, api, server, nic, key: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    from vmsniff.ovs.apply import apply_plan, wait_tunnels
    from vmsniff.ovs.plan import MirrorOptions, plan_mirror
    from vmsniff.ovs.sessions import find_sessions, remove_sessions

    plan = plan_mirror(server, nic, MirrorOptions(to=RECEIVER_IP, key=key),
                       now=datetime.now(UTC))  # fmt: skip
    t0 = time.perf_counter()
    apply_plan(api, plan)
    t1 = time.perf_counter()
    wait_tunnels(api, [t.name for t in plan.tunnels])
    t2 = time.perf_counter()
    ours = [s for s in find_sessions(api, datetime.now(UTC)) if s.id == plan.session]
    remove_sessions(api, ours)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t0, t3 - t2


def whole_command(lab, cloud: bool) -> float:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(env_vars(lab))
    if not cloud:
        env.pop("OS_CLOUD", None)
    vmsniff = os.path.join(os.path.dirname(sys.executable), "vmsniff")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [vmsniff, "mirror", "c-private", "--to", RECEIVER_IP],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "run:" in line:
            break
    elapsed = time.perf_counter() - t0
    proc.terminate()
    proc.communicate(timeout=30)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lab = lab_for(f"vmsb{os.getpid()}")
    try:
        build(lab)
        from vmsniff.ovs.connection import ovsdb
        from vmsniff.resolve import ResolveOptions, resolve

        os.environ.update({k: v for k, v in env_vars(lab).items() if not k.startswith("OS_")})
        target = resolve(ResolveOptions("c-private", offline=True))
        nic = target.nics[0]
        rows: dict[str, list[float]] = {k: [] for k in (
            "vsctl_add", "vsctl_del", "txn_commit", "txn_tunnel_up", "txn_teardown",
            "cmd_offline", "cmd_cloud")}  # fmt: skip
        with ovsdb(lab.ovsdb_remote) as api:
            for i in range(args.runs):
                add, rm = vsctl_chain(lab, nic.ovs_port, 100000 + i)
                rows["vsctl_add"].append(add)
                rows["vsctl_del"].append(rm)
                commit, up, down = in_process(lab, api, target.server, nic, 200000 + 2 * i)
                rows["txn_commit"].append(commit)
                rows["txn_tunnel_up"].append(up)
                rows["txn_teardown"].append(down)
        for _ in range(max(3, args.runs // 3)):
            rows["cmd_offline"].append(whole_command(lab, cloud=False))
            rows["cmd_cloud"].append(whole_command(lab, cloud=True))
    finally:
        teardown(lab)
    med = {k: _ms(v) for k, v in rows.items()}
    if args.json:
        print(json.dumps({"median_ms": med, "runs": args.runs}, indent=2))
        return
    print(f"mirror set-up/teardown, medians of {args.runs} rounds (ms)")
    print(f"{'what':52} {'ms':>8} {'ratio':>12}")
    lines = [
        ("ovs-vsctl chain: add GRE port + Mirror (process)", med["vsctl_add"], ""),
        ("vmsniff txn: commit (in-process, connected)", med["txn_commit"],
         f"{med['txn_commit'] / med['vsctl_add']:.2f}x vsctl"),
        ("vmsniff txn: commit + tunnel up (ofport)", med["txn_tunnel_up"],
         f"{med['txn_tunnel_up'] / med['vsctl_add']:.2f}x vsctl"),
        ("ovs-vsctl chain: remove (process)", med["vsctl_del"], ""),
        ("vmsniff teardown txn (in-process)", med["txn_teardown"],
         f"{med['txn_teardown'] / med['vsctl_del']:.2f}x vsctl"),
        ("vmsniff mirror, whole command, offline", med["cmd_offline"], "target 500 ms"),
        ("vmsniff mirror, whole command, via cloud", med["cmd_cloud"], "target 1000 ms"),
    ]  # fmt: skip
    for name, value, ratio in lines:
        print(f"{name:52} {value:8.1f} {ratio:>12}")


if __name__ == "__main__":
    main()
