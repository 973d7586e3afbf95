"""`vmsniff --help` (and every command's --help) must not import the heavy libraries.

Each check runs in a fresh interpreter, since this test process has imported who knows what.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("openstack", "libvirt", "ovsdbapp", "ovs", "scapy", "pyroute2", "pcapy")

# Runs `vmsniff ... --help` for the root and then, level by level, every command of the click
# tree, and after each one records which heavy modules have appeared in sys.modules.
_WALK_HELP = textwrap.dedent(
    """
    import contextlib, io, json, sys
    HEAVY = {heavy!r}
    for name in {preload!r}:
        __import__(name)

    def heavy():
        return sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)

    from vmsniff.cli import cli, main

    def help_of(path):
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                main([*path, "--help"])
        except SystemExit as exc:
            code = exc.code
        else:
            code = None
        return {{"argv": [*path, "--help"], "code": code, "usage": "Usage:" in out.getvalue(),
                 "heavy": heavy()}}

    import click
    results = []
    todo = [((), cli, None)]
    while todo:
        path, command, parent = todo.pop(0)
        results.append(help_of(list(path)))
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name=(path or ("vmsniff",))[-1], parent=parent)
            for name in sorted(command.list_commands(ctx)):
                sub = command.get_command(ctx, name)
                if sub is not None:
                    todo.append(((*path, name), sub, ctx))
    print(json.dumps(results))
    """
)


def _walk_help(preload: tuple[str, ...] = ()) -> list[dict[str, object]]:
    code = _WALK_HELP.format(heavy=HEAVY, preload=preload)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results: list[dict[str, object]] = json.loads(done.stdout.strip().splitlines()[-1])
    for result in results:
        result["importtime"] = done.stderr
    return results


def _import_chain(importtime: str, module: str) -> str:
    """Who imported ``module``: its line of -X importtime output and every enclosing import."""
    rows = []
    for line in importtime.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        name = line.rsplit("|", 1)[1]
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((depth, name.strip()))
    for index, (depth, name) in enumerate(rows):
        if name == module:
            chain = [name]
            for later_depth, later in rows[index + 1 :]:  # parents follow their children
                if later_depth < depth:
                    chain.append(later)
                    depth = later_depth
            return " <- ".join(chain)
    return f"{module} (not in -X importtime output)"


def _offenders(results: list[dict[str, object]]) -> list[str]:
    offenders, seen = [], set()
    for result in results:
        new = [m for m in result["heavy"] if m not in seen]  # type: ignore[attr-defined]
        seen.update(new)
        tops = sorted({m.split(".")[0] for m in new})
        for top in tops:
            chain = _import_chain(str(result["importtime"]), top)
            offenders.append(f"vmsniff {' '.join(result['argv'])}: {chain}")  # type: ignore[arg-type]
    return offenders


def test_help_of_every_command_imports_nothing_heavy() -> None:
    results = _walk_help()
    argvs = [r["argv"] for r in results]
    assert ["--help"] in argvs and len(argvs) > 1, argvs
    for result in results:
        assert result["code"] in (None, 0) and result["usage"], result["argv"]
    offenders = _offenders(results)
    assert not offenders, "heavy imports under --help:\n" + "\n".join(offenders)


def test_the_check_notices_a_heavy_import() -> None:
    # `ovs` (the OVS Python bindings) comes with ovsdbapp; preloading it must be reported,
    # or the test above could never fail.
    pytest.importorskip("ovs")
    offenders = _offenders(_walk_help(preload=("ovs",)))
    assert offenders and offenders[0].startswith("vmsniff --help: ovs"), offenders


def test_import_vmsniff_imports_neither_click_nor_rich() -> None:
    code = (
        "import json, sys, vmsniff; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(done.stdout))
    assert "vmsniff" in loaded
    unwanted = loaded & {"click", "rich", *HEAVY}
    assert not unwanted, f"`import vmsniff` imports {sorted(unwanted)}"
