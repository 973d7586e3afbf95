"""How long `vmsniff resolve c-private --json` takes in the lab, next to doing it by hand.

Run from the project root as root (not a test; nothing here asserts)::

    .venv/bin/python bench/resolve.py [--runs 20] [--warmup 2] [--json]

It builds its own lab (a unique prefix; torn down in ``finally``, even on Ctrl-C), then
times whole processes, rotating through the rows on each round so that a noisy moment hits
all of them alike:

- ``vmsniff resolve c-private --json`` through the stand-in cloud (openstacksdk over HTTP,
  then libvirt and OVSDB), and the same with ``--offline`` (libvirt and OVSDB only);
- the anchors, what an operator runs by hand on this machine (there is no ``openstack`` CLI
  nor ``virsh`` here, so their nearest runnable equivalents):
  ``nova show`` + ``port list``: a ``python -c`` with openstacksdk making the same queries;
  ``virsh dumpxml``: a ``python -c`` that opens libvirt read-only and prints the domain XML;
  ``ovs-vsctl --columns=name,external_ids find Interface external_ids:iface-id=PORT``.
  The manual cloud path is all three in a row, the manual offline path the last two.

Then ``python -X importtime`` of both vmsniff paths shows how much of the time is imports.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._timing import importtime_lines, rounds, sample_stats, timing_args  # noqa: E402
from vmsniff.lab.build import build  # noqa: E402
from vmsniff.lab.status import env_vars  # noqa: E402
from vmsniff.lab.teardown import teardown  # noqa: E402
from vmsniff.lab.topology import Lab, lab_for  # noqa: E402

VM = "c-private"

_SDK_ONE_LINER = (
    "import openstack, sys; c = openstack.connect(); "
    "s = next(iter(c.compute.servers(details=True, name='^{name}$', all_projects=True))); "
    "p = list(c.network.ports(device_id=s.id)); "
    "print(s.compute_host, s.instance_name, [(x.id, x.mac_address) for x in p])"
)
_LIBVIRT_ONE_LINER = (
    "import libvirt; libvirt.registerErrorHandler(lambda *a: None, None); "
    "c = libvirt.openReadOnly('{uri}'); print(c.lookupByName('{domain}').XMLDesc(0))"
)


@dataclass
class Row:
    """One thing to time: one or more processes run in a row, timed together."""

    label: str
    steps: list[list[str]]
    vmsniff: bool = False
    anchor_for: str | None = None  #: the label of the anchor this vmsniff row compares with
    samples_ms: list[float] = field(default_factory=list)

    def stats(self) -> dict[str, float]:
        return sample_stats(self.samples_ms)


def lab_env(lab: Lab) -> dict[str, str]:
    """The process environment: the lab's, none of the caller's OS_* or config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "VMSNIFF_"))}
    env.update(env_vars(lab))
    env["VMSNIFF_CONFIG"] = str(lab.rundir / "no-such-config.toml")
    return env


def rows(lab: Lab) -> list[Row]:
    vm = lab.vm(VM)
    py = sys.executable
    vmsniff = [py, "-m", "vmsniff", "resolve", VM, "--json"]
    sdk = [py, "-c", _SDK_ONE_LINER.format(name=VM)]
    virsh = [py, "-c", _LIBVIRT_ONE_LINER.format(uri=lab.libvirt_uri, domain=vm.instance_name)]
    vsctl = [
        "ovs-vsctl", f"--db={lab.ovsdb_remote}", "--columns=name,external_ids",
        "find", "Interface", f"external_ids:iface-id={vm.port_id}",
    ]  # fmt: skip
    return [
        Row("vmsniff resolve (cloud)", [vmsniff], vmsniff=True, anchor_for="manual, cloud path"),
        Row(
            "vmsniff resolve --offline",
            [[*vmsniff, "--offline"]],
            vmsniff=True,
            anchor_for="manual, offline path",
        ),
        Row("manual, cloud path", [sdk, virsh, vsctl]),
        Row("manual, offline path", [virsh, vsctl]),
        Row("  openstacksdk one-liner", [sdk]),
        Row("  libvirt dumpxml one-liner", [virsh]),
        Row("  ovs-vsctl find Interface", [vsctl]),
    ]


def _time_steps(steps: list[list[str]], env: dict[str, str]) -> float:
    start = time.perf_counter()
    for argv in steps:
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr!r}")
    return (time.perf_counter() - start) * 1000


def measure(table: list[Row], env: dict[str, str], runs: int, warmup: int) -> None:
    """``warmup`` discarded rounds, then ``runs`` rounds, each row once per round."""
    rounds(table, runs, warmup, lambda row: _time_steps(row.steps, env))


def importtime(argv: list[str], env: dict[str, str], runs: int = 3) -> dict[str, Any]:
    """Median import time of one vmsniff run: total, top-level packages, top by self time."""
    totals: list[int] = []
    walls: list[float] = []
    self_us: dict[str, list[int]] = {}
    top_level_us: dict[str, list[int]] = {}
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-X", "importtime", *argv[1:]], capture_output=True, text=True,
            env=env, check=True,
        )  # fmt: skip
        walls.append((time.perf_counter() - start) * 1000)
        total = 0
        for own, cumulative, name in importtime_lines(done.stderr):
            total += own
            self_us.setdefault(name.strip(), []).append(own)
            if not name[1:].startswith(" "):  # no indentation: imported by the program itself
                top_level_us.setdefault(name.strip(), []).append(cumulative)
        totals.append(total)

    def top(data: dict[str, list[int]], n: int) -> list[tuple[str, float]]:
        ranked = [(name, statistics.median(v) / 1000) for name, v in data.items()]
        return sorted(ranked, key=lambda item: item[1], reverse=True)[:n]

    total_ms = statistics.median(totals) / 1000
    return {
        "total_ms": total_ms,
        "wall_ms": statistics.median(walls),
        "share": total_ms / statistics.median(walls),
        "top_level": top(top_level_us, 6),
        "top_self": top(self_us, 8),
    }


def report(table: list[Row], runs: int, warmup: int, imports: dict[str, dict[str, Any]]) -> str:
    """The human-readable tables."""
    by_label = {row.label: row for row in table}
    lines = [
        f"{runs} runs each after {warmup} warm-ups, whole processes; "
        "ratio = vmsniff median / its anchor's median",
        f"{'row':<28} {'median ms':>9} {'p90 ms':>8} {'min ms':>8}  ratio",
    ]
    for row in table:
        s = row.stats()
        ratio = ""
        if row.anchor_for:
            anchor = by_label[row.anchor_for].stats()
            ratio = f"{s['median_ms'] / anchor['median_ms']:.2f}x vs {row.anchor_for}"
        lines.append(
            f"{row.label:<28} {s['median_ms']:9.1f} {s['p90_ms']:8.1f} {s['min_ms']:8.1f}  {ratio}"
        )
    for label, data in imports.items():
        lines.append("")
        lines.append(
            f"imports of `{label}` (-X importtime, median of 3): {data['total_ms']:.0f} ms of "
            f"{data['wall_ms']:.0f} ms wall ({100 * data['share']:.0f}%; importtime itself "
            "adds some overhead)"
        )
        lines.append("  top-level, cumulative ms: " + ", ".join(
            f"{name} {ms:.0f}" for name, ms in data["top_level"]
        ))  # fmt: skip
        lines.append("  largest self ms: " + ", ".join(
            f"{name} {ms:.1f}" for name, ms in data["top_self"]
        ))  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line of the benchmark."""
    args = timing_args(__doc__.splitlines()[0], argv, runs=20, warmup=2, what="row")
    if os.geteuid() != 0:
        args.error("needs root: the lab uses network namespaces and Open vSwitch")

    lab = lab_for(f"vmsb{os.getpid()}-resolve")
    try:
        build(lab)
        env = lab_env(lab)
        if "VMSNIFF_LAB_CLOUD_URL" not in env:
            raise SystemExit("the lab came up without its stand-in cloud")
        table = rows(lab)
        measure(table, env, args.runs, args.warmup)
        imports = {
            "vmsniff resolve (cloud)": importtime(table[0].steps[0], env),
            "vmsniff resolve --offline": importtime(table[1].steps[0], env),
        }
    finally:
        teardown(lab)
    if args.json:
        document = {
            "runs": args.runs,
            "warmup": args.warmup,
            "python": sys.version.split()[0],
            "rows": [
                {"label": r.label, "argv": r.steps, "stats": r.stats(),
                 "samples_ms": [round(s, 3) for s in r.samples_ms]}
                for r in table
            ],
            "imports": imports,
        }  # fmt: skip
        print(json.dumps(document, indent=2))
    else:
        print(report(table, args.runs, args.warmup, imports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
