"""The generated man pages and shell completions match the live click tree (scripts/gendocs.py)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import click
import pytest

from vmsniff.cli import cli
from vmsniff.exitcodes import ExitCode

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "run `.venv/bin/python scripts/gendocs.py` and commit completions/ and man/"


def _load_gendocs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gendocs", ROOT / "scripts" / "gendocs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gendocs"] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


gendocs = _load_gendocs()


def _command_paths(command: click.Command, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    # Walked here independently of gendocs.walk, so a command it skipped would show up.
    paths = [path]
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1])
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{' '.join(path)} lists {name!r} but cannot load it"
            if not sub.hidden:
                paths += _command_paths(sub, (*path, name))
    return paths


COMMAND_PATHS = _command_paths(cli, ("vmsniff",))


def _section(page: str, title: str) -> str:
    match = re.search(rf'^\.SH "?{title}"?\n(.*?)(?=^\.SH |\Z)', page, flags=re.M | re.S)
    assert match, f"no {title} section"
    return match.group(1)


def test_generated_docs_are_current() -> None:
    problems = gendocs.check(ROOT)
    assert not problems, (
        "completions/ or man/ are stale: " + REGENERATE + "\n" + "\n".join(problems)
    )


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=" ".join)
def test_every_command_has_a_man_page(path: tuple[str, ...]) -> None:
    page = ROOT / "man" / f"{'-'.join(path)}.1"
    assert page.is_file(), f"no man page {page.name} for `{' '.join(path)}`: {REGENERATE}"
    text = page.read_text(encoding="utf-8")
    assert f'.TH "{"-".join(path).upper()}' in text.replace("\\-", "-")
    synopsis = _section(text, "SYNOPSIS").replace("\\-", "-")
    assert f"\\fB{' '.join(path)}\\fR" in synopsis


def test_no_man_page_without_a_command() -> None:
    pages = {p.name for p in (ROOT / "man").glob("*.1")}
    assert pages == {f"{'-'.join(path)}.1" for path in COMMAND_PATHS}


def test_exit_status_lists_every_exit_code() -> None:
    section = _section((ROOT / "man" / "vmsniff.1").read_text(encoding="utf-8"), "EXIT STATUS")
    for code in ExitCode:
        tag = f"\\fB{int(code)}\\fR ({code.name})"
        assert tag in section, f"vmsniff(1) EXIT STATUS lacks {code.name}: {REGENERATE}"
    tags = re.findall(r"^\\fB(\d+)\\fR \((\w+)\)$", section, flags=re.M)
    assert tags == [(str(int(code)), code.name) for code in ExitCode]


def test_environment_lists_every_envvar() -> None:
    declared: set[str] = set()
    for path in COMMAND_PATHS:
        command: click.Command = cli
        for name in path[1:]:
            assert isinstance(command, click.Group)
            found = command.get_command(click.Context(command), name)
            assert found is not None
            command = found
        for param in command.params:
            envvar = param.envvar
            declared |= {envvar} if isinstance(envvar, str) else set(envvar or ())
    page = (ROOT / "man" / "vmsniff.1").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\\fB([A-Z0-9_]+)\\fR$", _section(page, "ENVIRONMENT"), re.M))
    assert listed == declared


@pytest.mark.parametrize("shell", sorted(gendocs.COMPLETION_FILES))
def test_completion_is_what_click_prints(shell: str) -> None:
    # The files must equal what the installed program emits, so either can be installed.
    env = {**os.environ, "_VMSNIFF_COMPLETE": f"{shell}_source"}
    done = subprocess.run(
        [sys.executable, "-m", "vmsniff"], env=env, capture_output=True, check=True, timeout=60
    )
    on_disk = (ROOT / "completions" / gendocs.COMPLETION_FILES[shell]).read_bytes()
    assert done.stdout == on_disk, REGENERATE


def test_check_reports_differing_missing_and_extra_files(tmp_path: Path) -> None:
    gendocs.write(tmp_path)
    assert gendocs.check(tmp_path) == []
    (tmp_path / "man" / "vmsniff.1").write_text("stale\n", encoding="utf-8")
    (tmp_path / "completions" / "vmsniff.fish").unlink()
    (tmp_path / "man" / "vmsniff-gone.1").write_text(".TH GONE 1\n", encoding="utf-8")
    assert gendocs.check(tmp_path) == [
        "missing: completions/vmsniff.fish",
        "differs: man/vmsniff.1",
        "stale extra: man/vmsniff-gone.1",
    ]
    assert gendocs.main(["--check", "--root", str(tmp_path)]) == 1
    gendocs.write(tmp_path)
    assert gendocs.main(["--check", "--root", str(tmp_path)]) == 0


def test_output_is_deterministic() -> None:
    assert gendocs.generate() == gendocs.generate()


def _enum_from(tmp_path: Path, body: str) -> type:
    source = tmp_path / "codes_under_test.py"
    source.write_text("from enum import IntEnum\n\n" + textwrap.dedent(body), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("codes_under_test", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["codes_under_test"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["codes_under_test"]
        raise
    return module.Codes  # type: ignore[no-any-return]


def test_exit_code_docs_reads_each_doc_convention(tmp_path: Path) -> None:
    codes = _enum_from(
        tmp_path,
        '''
        class Codes(IntEnum):
            OK = 0
            #: above the member,
            #: on two lines
            ABOVE = 1
            INLINE = 2  #: on the member's line
            BELOW = 3
            """a string below the member"""
        ''',
    )
    try:
        assert gendocs.exit_code_docs(codes) == [
            ("OK", 0, "success"),
            ("ABOVE", 1, "above the member, on two lines"),
            ("INLINE", 2, "on the member's line"),
            ("BELOW", 3, "a string below the member"),
        ]
    finally:
        del sys.modules["codes_under_test"]


def test_exit_code_docs_refuses_an_undocumented_code(tmp_path: Path) -> None:
    codes = _enum_from(
        tmp_path,
        """
        class Codes(IntEnum):
            OK = 0
            DOCUMENTED = 1  #: fine
            SILENT = 2  # a plain comment is not documentation
        """,
    )
    try:
        with pytest.raises(ValueError, match=r"Codes\.SILENT has no '#:' comment"):
            gendocs.exit_code_docs(codes)
    finally:
        del sys.modules["codes_under_test"]


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("page", sorted((ROOT / "man").glob("*.1")), ids=lambda p: p.name)
def test_man_page_renders_without_warnings(page: Path) -> None:
    done = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(page)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_no_python_reprs_leak_into_pages() -> None:
    # e.g. click 8.2+'s UNSET default sentinel rendered as "Default: Sentinel.UNSET".
    for path, text in gendocs.generate().items():
        if path.startswith("man/"):
            for leak in ("Sentinel", "UNSET", "<function", "object at 0x", "None."):
                assert leak not in text, f"{path} shows {leak!r}"
