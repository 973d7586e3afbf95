"""How long `vmsniff --help` takes, next to the Open vSwitch tools an operator already runs.

Run from the project root (not a test; nothing here asserts)::

    .venv/bin/python bench/cli_help.py [--runs 30] [--warmup 3] [--json]

Every tool is timed in the same run, alternating between tools on each round so that a
noisy moment hits all of them alike: wall time of the whole process, from fork to exit,
stdout and stderr to /dev/null. Anchors: `ovs-vsctl --help` (C) and `ovs-tcpdump --help`
(Python, from Debian's openvswitch packages). The target: `vmsniff --help` no slower than
`ovs-tcpdump --help`. Then `-X importtime` of `vmsniff --help` shows where the time goes.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._timing import importtime_lines, rounds, sample_stats, timing_args  # noqa: E402

VENV_SCRIPT = Path(sys.executable).parent / "vmsniff"
TARGET_ANCHOR = "ovs-tcpdump --help"


@dataclass
class Tool:
    """One command line to time; ``missing`` says why it cannot run here."""

    label: str
    argv: list[str]
    vmsniff: bool = False
    missing: str | None = None
    samples_ms: list[float] = field(default_factory=list)

    def stats(self) -> dict[str, float] | None:
        return sample_stats(self.samples_ms) if self.samples_ms else None


def _tools() -> list[Tool]:
    tools = [
        Tool("python -m vmsniff --help", [sys.executable, "-m", "vmsniff", "--help"], True),
        Tool(f"{_short(VENV_SCRIPT)} --help", [str(VENV_SCRIPT), "--help"], True),
    ]
    # The same without site: no .pth files run, in particular not setuptools' editable-install
    # finder (it imports pathlib, re, urllib.parse... on every start of the venv's python).
    # This is what a wheel install costs; the two rows above are what a checkout costs.
    no_site = "import sys; sys.path[:0] = {paths!r}; from vmsniff.cli import main; main()".format(
        paths=[str(ROOT), sysconfig.get_paths()["purelib"]]
    )
    tools.append(
        Tool(
            "python -S (no .pth) vmsniff --help",
            [sys.executable, "-S", "-c", no_site, "--help"],
            True,
        )
    )
    if not VENV_SCRIPT.exists():
        tools[1].missing = f"{VENV_SCRIPT} not found (pip install -e . into the venv)"
    for name in ("ovs-vsctl", "ovs-tcpdump"):
        path = shutil.which(name)
        tool = Tool(f"{name} --help", [path or name, "--help"])
        if path is None:
            # Debian ships both in openvswitch-switch (checked on bookworm, OVS 3.1).
            tool.missing = f"{name} not on PATH (Debian package openvswitch-switch)"
        tools.append(tool)
    return tools


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}")
    return elapsed


def measure(tools: list[Tool], runs: int, warmup: int) -> None:
    """Fill each runnable tool's samples: ``warmup`` discarded rounds, then ``runs`` rounds."""
    runnable = [t for t in tools if t.missing is None]
    rounds(runnable, runs, warmup, lambda tool: _time_once(tool.argv))


def importtime(runs: int = 5, top: int = 10) -> list[dict[str, object]]:
    """The ``top`` imports of `python -X importtime -m vmsniff --help` by self time (medians)."""
    self_us: dict[str, list[int]] = {}
    cumulative_us: dict[str, list[int]] = {}
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "vmsniff", "--help"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        for own, cumulative, name in importtime_lines(done.stderr):
            self_us.setdefault(name.strip(), []).append(own)
            cumulative_us.setdefault(name.strip(), []).append(cumulative)
    rows = [
        {
            "module": name,
            "self_ms": statistics.median(values) / 1000,
            "cumulative_ms": statistics.median(cumulative_us[name]) / 1000,
        }
        for name, values in self_us.items()
    ]
    rows.sort(key=lambda row: row["self_ms"], reverse=True)  # type: ignore[arg-type, return-value]
    return rows[:top]


def _ratio(numerator: dict[str, float] | None, denominator: dict[str, float] | None) -> str:
    if numerator is None or denominator is None:
        return "n/a"
    return f"{numerator['median_ms'] / denominator['median_ms']:.2f}x"


def report(tools: list[Tool], runs: int, warmup: int, imports: list[dict[str, object]]) -> str:
    """The human-readable tables."""
    anchors = [t for t in tools if not t.vmsniff]
    header = ["tool", "median ms", "p90 ms", "min ms"] + [f"vs {a.label}" for a in anchors]
    rows = [header]
    for tool in tools:
        stats = tool.stats()
        if stats is None:
            rows.append([tool.label, f"not measured: {tool.missing}"])
            continue
        row = [tool.label] + [f"{stats[k]:.1f}" for k in ("median_ms", "p90_ms", "min_ms")]
        if tool.vmsniff:
            row += [_ratio(stats, anchor.stats()) for anchor in anchors]
        rows.append(row)
    measured = [r for r in rows if not (len(r) == 2 and r[1].startswith("not measured"))]
    widths = [max(len(r[i]) for r in measured if len(r) > i) for i in range(len(header))]
    lines = [f"{runs} runs each after {warmup} warm-ups; ratio = vmsniff median / anchor median"]
    for row in rows:
        if len(row) == 2 and row[1].startswith("not measured"):
            lines.append(f"{row[0].ljust(widths[0])}  {row[1]}")
            continue
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=False)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    lines.append(_verdict(tools))
    lines.append("")
    lines.append("top imports of `python -X importtime -m vmsniff --help` (median self time):")
    lines.append(f"{'self ms':>8}  {'cumul ms':>8}  module")
    for row in imports:
        lines.append(f"{row['self_ms']:8.2f}  {row['cumulative_ms']:8.2f}  {row['module']}")
    return "\n".join(lines)


def _verdict(tools: list[Tool]) -> str:
    anchor = next((t for t in tools if t.label == TARGET_ANCHOR), None)
    script = next((t for t in tools if t.vmsniff and t.stats() is not None), None)
    if anchor is None or anchor.stats() is None or script is None:
        return f"target (no slower than {TARGET_ANCHOR}): cannot tell, anchor not measured"
    verdicts = []
    for tool in (t for t in tools if t.vmsniff and t.stats() is not None):
        ok = tool.stats()["median_ms"] <= anchor.stats()["median_ms"]  # type: ignore[index]
        verdicts.append(f"{tool.label}: {'met' if ok else 'MISSED'}")
    return f"target (median no slower than {TARGET_ANCHOR}): " + "; ".join(verdicts)


def main(argv: list[str] | None = None) -> int:
    """Command line of the benchmark."""
    args = timing_args(__doc__.splitlines()[0], argv, runs=30, warmup=3, what="tool")

    tools = _tools()
    measure(tools, args.runs, args.warmup)
    imports = importtime()
    if args.json:
        anchors = [t for t in tools if not t.vmsniff]
        document = {
            "runs": args.runs,
            "warmup": args.warmup,
            "python": sys.version.split()[0],
            "tools": [
                {
                    **{k: v for k, v in asdict(tool).items() if k != "samples_ms"},
                    "stats": tool.stats(),
                    "ratios": {
                        a.label: (
                            tool.stats()["median_ms"] / a.stats()["median_ms"]  # type: ignore[index]
                            if tool.stats() and a.stats()
                            else None
                        )
                        for a in anchors
                    }
                    if tool.vmsniff
                    else {},
                    "samples_ms": [round(s, 3) for s in tool.samples_ms],
                }
                for tool in tools
            ],
            "target": _verdict(tools),
            "importtime_top": imports,
        }
        print(json.dumps(document, indent=2))
    else:
        print(report(tools, args.runs, args.warmup, imports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
