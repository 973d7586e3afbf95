"""Benchmark one session over many VMs on many hosts (not a test): set-up, teardown, receiver.

Builds its own lab (``lab up --hosts 3 --extra-vms 18``: 21 VMs, 22 NICs on 3 hosts; prefix
``vmssc<pid>``, always removed) and measures, in the same run, wall seconds of:

- **one session**: ``vmsniff mirror <every VM> --detach --manifest F``, then
  ``vmsniff cleanup SESSION --all-hosts``;
- **N sessions**: one ``vmsniff mirror VM [--nic MAC] --detach`` per NIC, then one
  ``vmsniff cleanup SESSION --host H`` each (what an operator does today);
- **raw commands**: the same rows with plain ``ovs-vsctl``, one command per host (the set-up
  chains the dry run prints), and a removal chain per host;

and the same three on OVN (``--ovn``: ``mirror --via ovn``, ``cleanup --ovn``, and
``ovn-nbctl`` chains), each phase checked to leave no vmsniff row behind. Then the receiver on
the merged stream: a GRE replay spread over the 22-NIC manifest's keys (both directions,
inner frames with each NIC's MAC and VLAN tag), ``vmsniff receive --manifest F -w`` against
``tcpdump -w`` in the same replay (bench/receive.py's machinery), dedicated and shared.

    sudo .venv/bin/python bench/scale.py [--extra-vms 18] [--packets 250000] [--loop 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._replay import missing, ratio, veth_namespaces  # noqa: E402
from bench.receive import RX_MAC, TX_MAC, run_once  # noqa: E402
from vmsniff.pcap.pcap import file_header  # noqa: E402
from vmsniff.wire.ipv4 import checksum  # noqa: E402

RECEIVER = "10.250.0.2"


def vmsniff(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "vmsniff", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"vmsniff {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def timed(fn: Any) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def lab_env(prefix: str) -> dict[str, str]:
    out = vmsniff("lab", "env", "--prefix", prefix, env=dict(os.environ)).stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "VMSNIFF_", "OVN_"))}
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0]
    return env


def lab_status(prefix: str, env: dict[str, str]) -> dict[str, Any]:
    return json.loads(vmsniff("lab", "status", "--prefix", prefix, "--json", env=env).stdout)  # type: ignore[no-any-return]


def leftovers(status: dict[str, Any], ovn: bool) -> list[str]:
    """vmsniff's rows on every host (and in NB): must be none after each phase."""
    left = []
    for hv in status["hypervisors"]:
        db = f"--db={hv['ovsdb']}"
        out = subprocess.run(["ovs-vsctl", db, "--columns=name", "--format=csv", "--no-headings",
                              "list", "Mirror", "--", "list-ports", "br-int"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        left += [
            f"{hv['host']}:{n}" for n in out.split() if "vms" in n and not n.startswith("ovn-")
        ]
    if ovn:
        out = subprocess.run(["ovn-nbctl", f"--db={status['ovn_central']['nb']}", "--columns=name",
                              "--format=csv", "--no-headings", "list", "Mirror"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        left += [f"NB:{n}" for n in out.split() if "vmsniff" in n]
    return left


def clean(status: dict[str, Any], ovn: bool) -> None:
    """Fail unless no vmsniff row is left (OVN: once ovn-controller caught up, up to 10 s)."""
    deadline = time.monotonic() + (10 if ovn else 0)
    while left := leftovers(status, ovn):
        if time.monotonic() > deadline:
            raise AssertionError(f"vmsniff rows left behind: {left}")
        time.sleep(0.2)


def phases(prefix: str, extra: int, ovn: bool) -> dict[str, Any]:
    """Build the lab, time the three ways to make and remove the rows, tear it down."""
    env = dict(os.environ)
    args = ["lab", "up", "--prefix", prefix, "--hosts", "3", "--extra-vms", str(extra), "--json"]
    if ovn:
        args.append("--ovn")
    try:
        up = json.loads(vmsniff(*args, env=env).stdout)
        env = lab_env(prefix)
        status = lab_status(prefix, env)
        vms = [v["name"] for v in status["vms"]]
        nics = [(v["name"], n["mac"], v["host"]) for v in status["vms"] for n in v["nics"]]
        via = ["--via", "ovn"] if ovn else []
        out: dict[str, Any] = {"lab_up_s": up["up_seconds"], "vms": len(vms), "nics": len(nics),
                               "hosts": 3}  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="vmsniff-scale-") as tmpdir:
            manifest = Path(tmpdir) / "m.json"
            # one session
            made: dict[str, Any] = {}

            def one() -> None:
                made.update(json.loads(vmsniff("mirror", *vms, "--to", RECEIVER, *via,
                                               "--detach", "--manifest", str(manifest), "--json",
                                               env=env).stdout))  # fmt: skip

            out["one_setup_s"] = timed(one)
            out["rows"] = (sum(len(h["mirrors"]) for h in made["hosts"]) if not ovn
                           else len(made["mirrors"]))  # fmt: skip
            where = ["--ovn"] if ovn else ["--all-hosts"]
            out["one_teardown_s"] = timed(
                lambda: vmsniff("cleanup", made["session"], *where, env=env)
            )
            clean(status, ovn)
            # N sessions, one per NIC
            sids: list[tuple[str, str]] = []

            def many() -> None:
                for vm, mac, host in nics:
                    nic = ["--nic", mac] if vm == "c-multi" else []
                    doc = json.loads(vmsniff("mirror", vm, *nic, "--to", RECEIVER, *via,
                                             "--detach", "--json", "--manifest",
                                             str(Path(tmpdir) / f"{vm}-{mac}.json"),
                                             env=env).stdout) if ovn else json.loads(
                        vmsniff("mirror", vm, *nic, "--to", RECEIVER, "--detach", "--json",
                                env=env).stdout)  # fmt: skip
                    sids.append((doc["session"], host))

            out["n_setup_s"] = timed(many)

            def many_down() -> None:
                for sid, host in sids:
                    vmsniff("cleanup", sid, *(["--ovn"] if ovn else ["--host", host]), env=env)

            out["n_teardown_s"] = timed(many_down)
            clean(status, ovn)
            # raw commands: the dry run's chains, and removal chains
            dry = json.loads(vmsniff("mirror", *vms, "--to", RECEIVER, *via, "--dry-run",
                                     "--json", env=env).stdout)  # fmt: skip
            if ovn:
                chains = [shlex.split(dry["ovn_nbctl"])]
                names = [m["name"] for m in dry["mirrors"]]
                removal = [["ovn-nbctl", f"--db={status['ovn_central']['nb']}"]
                           + [w for n in names for w in ("--", "mirror-del", n)]]  # fmt: skip
            else:
                chains = [shlex.split(c) for c in dry["ovs_vsctl"].values()]
                removal = []
                for h in dry["hosts"]:
                    db = next(x["ovsdb"] for x in status["hypervisors"] if x["host"] == h["host"])
                    argv = ["ovs-vsctl", f"--db={db}"]
                    for i, m in enumerate(h["mirrors"]):
                        argv += ["--", f"--id=@m{i}", "get", "Mirror", m, "--", "remove",
                                 "Bridge", h["bridge"], "mirrors", f"@m{i}"]  # fmt: skip
                    for p in h["tunnel_ports"]:
                        argv += ["--", "del-port", h["bridge"], p]
                    removal.append(argv)
            out["raw_setup_s"] = timed(
                lambda: [subprocess.run(c, check=True, capture_output=True) for c in chains]
            )
            out["raw_teardown_s"] = timed(
                lambda: [subprocess.run(c, check=True, capture_output=True) for c in removal]
            )
            clean(status, ovn)
            out["manifest"] = json.loads(json.dumps(made.get("manifest") or {}))
            if not ovn:
                # the real manifest of the one-session run, for the receiver's replay
                doc = json.loads(vmsniff("mirror", *vms, "--to", RECEIVER, "--dry-run",
                                         "--json", env=env).stdout)  # fmt: skip
                out["manifest"] = doc["manifest"]
                shared = json.loads(vmsniff("mirror", *vms, "--to", RECEIVER, "--dry-run",
                                            "--shared-mirrors", "--json",
                                            env=env).stdout)  # fmt: skip
                out["manifest_shared"] = shared["manifest"]
        return out
    finally:
        subprocess.run([sys.executable, "-m", "vmsniff", "lab", "down", "--prefix", prefix],
                       capture_output=True, cwd=ROOT)  # fmt: skip


def build_pcap(path: Path, manifest: dict[str, Any], count: int) -> None:
    """``count`` GRE packets over every stream of ``manifest``, 64-byte inner frames (IMIX
    sizes 7:4:1 would only change the copying), round robin over NICs and directions."""
    rng = random.Random(2)
    nics = {n["name"]: n for n in manifest["nics"]}
    choices = [(s["key"], s["direction"], name) for s in manifest["streams"] for name in s["nics"]]
    peer = bytes.fromhex("fa163e99ff01")
    with path.open("wb") as fh:
        fh.write(file_header(65535, 1))
        for n in range(count):
            key, direction, name = choices[rng.randrange(len(choices))]
            mac = bytes.fromhex(nics[name]["mac"].replace(":", ""))
            tag = nics[name]["tag"]
            dst, src = (peer, mac) if direction == "from-vm" else (mac, peer)
            vlan = b"" if tag is None else b"\x81\x00" + int(tag).to_bytes(2, "big")
            inner = dst + src + vlan + b"\x08\x00" + n.to_bytes(4, "big")
            inner += bytes(64 - len(inner))
            gre = struct.pack("!HHI", 0x2000, 0x6558, key) + inner
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(gre), n & 0xFFFF, 0, 64, 47, 0,
                             bytes([10, 251, 0, 1]), bytes([10, 251, 0, 2]))  # fmt: skip
            ip = ip[:10] + checksum(ip).to_bytes(2, "big") + ip[12:]
            frame = RX_MAC + TX_MAC + b"\x08\x00" + ip + gre
            fh.write(struct.pack("<IIII", n // 1000000, n % 1000000, len(frame), len(frame)))
            fh.write(frame)


def receiver(manifests: dict[str, dict[str, Any]], packets: int, loop: int) -> dict[str, Any]:
    prefix = f"vmssr{os.getpid()}"
    out = {}
    with tempfile.TemporaryDirectory(prefix="vmsniff-scale-") as tmpdir:
        tmp = Path(tmpdir)
        with veth_namespaces(f"{prefix}-tx", f"{prefix}-rx", TX_MAC, RX_MAC):
            for name, manifest in manifests.items():
                path = tmp / f"{name}.json"
                path.write_text(json.dumps(manifest))
                pcap = tmp / f"{name}.pcap"
                build_pcap(pcap, manifest, packets)
                out[name] = run_once(prefix, pcap, tmp, packets * loop, loop,
                                     vmsniff_args=("--manifest", str(path)))  # fmt: skip
                pcap.unlink()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--extra-vms", type=int, default=18)
    ap.add_argument("--packets", type=int, default=250_000)
    ap.add_argument("--loop", type=int, default=4)
    ap.add_argument("--no-ovn", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    if problem := missing("tcpreplay", "tcpdump", "ovs-vsctl", "ovn-nbctl"):
        print(problem, file=sys.stderr)
        return 2
    results: dict[str, Any] = {"ovs": phases(f"vmssc{os.getpid()}", args.extra_vms, False)}
    if not args.no_ovn:
        results["ovn"] = phases(f"vmsso{os.getpid()}", args.extra_vms, True)
    manifests = {"dedicated": results["ovs"].pop("manifest"),
                 "shared": results["ovs"].pop("manifest_shared")}  # fmt: skip
    results.get("ovn", {}).pop("manifest", None)
    results["receive"] = receiver(manifests, args.packets, args.loop)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for kind in ("ovs", "ovn"):
        r = results.get(kind)
        if r is None:
            continue
        rows = "NB mirror" if kind == "ovn" else "OVS mirror"
        print(f"{kind}: {r['nics']} NICs of {r['vms']} VMs on {r['hosts']} hosts, {r['rows']} "
              f"{rows} rows (lab up {r['lab_up_s']:.1f} s)")  # fmt: skip
        print(f"  {'':28} {'set-up s':>9} {'teardown s':>11}")
        raw = "ovn-nbctl chain" if kind == "ovn" else "ovs-vsctl chains"
        labels = (("one vmsniff session", "one"), (f"{r['nics']} vmsniff sessions", "n"),
                  (raw, "raw"))  # fmt: skip
        for label, key in labels:
            print(f"  {label:28} {r[key + '_setup_s']:9.2f} {r[key + '_teardown_s']:11.2f}")
        print(f"  ratio one session / {r['nics']} sessions: set-up "
              f"{ratio(r['one_setup_s'], r['n_setup_s'])}, teardown "
              f"{ratio(r['one_teardown_s'], r['n_teardown_s'])}")  # fmt: skip
        print(f"  ratio one session / raw commands: set-up "
              f"{ratio(r['one_setup_s'], r['raw_setup_s'])}, teardown "
              f"{ratio(r['one_teardown_s'], r['raw_teardown_s'])}")  # fmt: skip
    print("receive --manifest on the merged stream (64-byte frames, every NIC and direction):")
    print(f"  {'streams':10} {'tool':8} {'offered':>8} {'written':>8} {'lost':>6} "
          f"{'busy s/M':>8} {'RSS MB':>7}")  # fmt: skip
    for name, res in results["receive"].items():
        for tool, r in res.items():
            print(f"  {name:10} {tool:8} {r['offered']:8.0f} {r['written']:8.0f} "
                  f"{r['lost']:6.0f} {r['cpu_s_per_M']:8.2f} {r['rss_mb']:7.1f}")  # fmt: skip
        v, t = res["vmsniff"], res["tcpdump"]
        print(f"  {name:10} ratio vmsniff/tcpdump: CPU per packet "
              f"{ratio(v['cpu_s_per_M'], t['cpu_s_per_M'])}, lost {v['lost']:.0f} vs "
              f"{t['lost']:.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
