"""``vmsniff --help`` lays text out as wide as click itself would: it only avoids the
``shutil`` import click makes to find the terminal's width."""

from __future__ import annotations

import os

import click
import pytest
from click.formatting import HelpFormatter
from click.testing import CliRunner

from vmsniff.cli import _help_width, cli


def terminal(monkeypatch: pytest.MonkeyPatch, columns: int | None) -> None:
    """Make fd 1 look like a terminal ``columns`` wide (None: not a terminal)."""

    def size(fd: int = 1) -> os.terminal_size:
        if columns is None or fd != 1:
            raise OSError("not a terminal")
        return os.terminal_size((columns, 24))

    monkeypatch.setattr(os, "get_terminal_size", size)


@pytest.mark.parametrize("tty", [None, 0, 40, 52, 79, 80, 81, 200])
@pytest.mark.parametrize("columns", [None, "0", "-3", "40", "60", "80", "200", "x"])
def test_help_width_is_clicks(
    monkeypatch: pytest.MonkeyPatch, columns: str | None, tty: int | None
) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    terminal(monkeypatch, tty)
    assert _help_width() == HelpFormatter().width  # what click works out with shutil


def test_the_command_line_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    ctx = cli.context_class(cli)
    assert ctx.terminal_width == 58 == _help_width()
    assert ctx.make_formatter().width == 58


def test_clicks_test_runner_keeps_its_fixed_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    out = CliRunner().invoke(cli, ["capture", "--help"]).output
    widest = max(map(len, out.splitlines()))
    assert 60 < widest <= 80  # FORCED_WIDTH (80), not COLUMNS
    assert click.formatting.FORCED_WIDTH is None  # restored after the run
