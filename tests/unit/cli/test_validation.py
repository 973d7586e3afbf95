"""Bad input through the whole CLI (vmsniff.cli.cli via the one mapper): a clear message,
the right exit code, no traceback, and nothing resolved, connected to or created.

These cases fail while click converts the options, before any command body runs; the lab
tests (tests/functional/test_validation.py) cover the ones that need a switch.
"""

from __future__ import annotations

import json

import click
import pytest

from vmsniff.cli import cli
from vmsniff.cli._context import Env
from vmsniff.cli._errors import run
from vmsniff.errors import NotFound
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


def _one_json_document(out: str) -> dict[str, object]:
    doc = json.loads(out)  # raises unless stdout is exactly one JSON document
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*MIRROR, "--key", "-1", "--json"], "Invalid value for '--key'"),
        (["mirror", "--json", "--no-such-option"], "No such option"),
        (["list", "--json", "--ovsdb"], "requires an argument"),
        (["resolve", "--json"], "Missing argument 'VM'"),
        (["no-such-command", "--json"], "No such command"),
        ([*MIRROR, "--ttl", "99999999h", "--json"], "longer than the maximum"),
    ],
)
def test_json_usage_errors_are_one_document_on_stdout(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(cli, argv) == ExitCode.USAGE
    out, err = capsys.readouterr()
    doc = _one_json_document(out)
    assert doc["error"] == "UsageError" and doc["exit_code"] == 2
    assert message in str(doc["message"]) and message in err  # humans still read stderr


def test_json_vmsniff_errors_are_one_document_on_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run(cli, ["list", "--json", "--ovsdb", "unix:/nonexistent/db.sock"])
    out, _err = capsys.readouterr()
    doc = _one_json_document(out)
    assert code == doc["exit_code"] != 0 and "/nonexistent/db.sock" in str(doc["message"])


def test_json_error_goes_to_stderr_when_stdout_carries_the_capture(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["receive", "-w", "-", "--json", "--duration", "99999999h"]
    assert run(cli, argv) == ExitCode.USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert '"exit_code": 2' in err


def test_a_document_already_written_is_the_only_one(capsys: pytest.CaptureFixture[str]) -> None:
    @click.command()
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def command(env: Env, as_json: bool) -> None:
        env.json({"done": True})
        raise NotFound("gone after the document was written")

    assert run(command, ["--json"]) == ExitCode.NOT_FOUND
    assert _one_json_document(capsys.readouterr().out) == {"done": True}


def test_internal_errors_are_json_too(capsys: pytest.CaptureFixture[str]) -> None:
    @click.command()
    @click.option("--json", "as_json", is_flag=True)
    def command(as_json: bool) -> None:
        raise ZeroDivisionError("boom")

    assert run(command, ["--json"]) == ExitCode.ERROR
    doc = _one_json_document(capsys.readouterr().out)
    assert doc["error"] == "InternalError" and "ZeroDivisionError: boom" in str(doc["message"])


def _verbosity_seen(argv: list[str]) -> int:
    """Run ``vmsniff ARGV`` with a stand-in for mirror's body; the verbosity it would see."""
    from vmsniff.cli.mirror import mirror

    seen: list[int] = []
    original = mirror.callback
    mirror.callback = lambda *a, **kw: seen.append(click.get_current_context().obj.verbosity)
    try:
        assert run(cli, argv) == ExitCode.OK
    finally:
        mirror.callback = original
    return seen[0]


@pytest.mark.parametrize(
    ("argv", "verbosity"),
    [
        (["mirror", "vm", "--to", "192.0.2.9"], 0),
        (["mirror", "-q", "vm", "--to", "192.0.2.9"], -1),
        (["mirror", "vm", "--to", "192.0.2.9", "--quiet"], -1),
        (["-q", "mirror", "vm", "--to", "192.0.2.9"], -1),
        (["mirror", "vm", "-v", "--to", "192.0.2.9"], 1),
        (["-v", "mirror", "-v", "vm", "--to", "192.0.2.9"], 2),
        (["-v", "mirror", "-q", "vm", "--to", "192.0.2.9"], -1),
        (["-q", "mirror", "-vv", "vm", "--to", "192.0.2.9"], -1),
    ],
)
def test_v_and_q_are_accepted_after_the_subcommand_and_merged(
    argv: list[str], verbosity: int
) -> None:
    assert _verbosity_seen(argv) == verbosity


@pytest.mark.parametrize(
    "argv",
    [
        ["resolve", "-q", "--help"],
        ["list", "-v", "--help"],
        ["cleanup", "-q", "--help"],
        ["capture", "-q", "--help"],
        ["receive", "-vv", "--help"],
        ["lab", "-q", "--help"],
        ["lab", "status", "-q", "--help"],
    ],
)
def test_every_subcommand_takes_v_and_q(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(cli, argv) == ExitCode.OK
    assert "-q, --quiet" in capsys.readouterr().out


@pytest.mark.parametrize("remote", ["garbage", "/var/run/openvswitch/db.sock", "punix:/x"])
def test_an_ovsdb_remote_of_no_known_kind_is_a_usage_error(
    remote: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(cli, ["list", "--ovsdb", remote]) == ExitCode.USAGE
    assert f"OVSDB remote '{remote}' is not unix:PATH" in capsys.readouterr().err
