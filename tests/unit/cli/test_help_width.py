"""``vmsniff --help`` lays text out as wide as click itself would (it only avoids click's
``shutil`` import to get there)."""

from __future__ import annotations

import shutil

import pytest

from vmsniff.cli import _help_width


@pytest.mark.parametrize(
    "columns", [None, "0", "-3", "40", "52", "60", "79", "80", "81", "200", "x"]
)
def test_help_width_is_clicks(monkeypatch: pytest.MonkeyPatch, columns: str | None) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    # click.formatting.HelpFormatter with no width: max(min(terminal columns, 80) - 2, 50)
    assert _help_width() == max(min(shutil.get_terminal_size().columns, 80) - 2, 50)
