"""Bad input through the whole CLI (vmsniff.cli.cli via the one mapper): a clear message,
the right exit code, no traceback, and nothing resolved, connected to or created.

These cases fail while click converts the options, before any command body runs; the lab
tests (tests/functional/test_validation.py) cover the ones that need a switch.
"""

from __future__ import annotations

import pytest

from vmsniff.cli import cli
from vmsniff.cli._errors import run
from vmsniff.exitcodes import ExitCode

MIRROR = ["mirror", "c-private", "--to", "192.0.2.9", "--ovsdb", "unix:/nonexistent/db.sock"]


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        ([*MIRROR, "--ttl", "99999999h"], "--ttl"),
        ([*MIRROR, "--duration", "99999999h"], "--duration"),
        ([*MIRROR, "--ttl", "9" * 400], "--ttl"),
        (["capture", "c-private", "-w", "/nonexistent/x", "--duration", "99999999h"], "--duration"),
        (["capture", "c-private", "-w", "/nonexistent/x", "--ttl", "99999999h"], "--ttl"),
        (["receive", "-w", "/nonexistent/x", "--duration", "99999999h"], "--duration"),
    ],
)
def test_too_long_durations_are_usage_errors_naming_option_and_maximum(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(cli, argv) == ExitCode.USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert f"'{option}'" in err and "longer than the maximum, 365d" in err, err
    assert "Traceback" not in err and "internal error" not in err
