"""vmsniff.cli._errors.run: every outcome of a command becomes one exit code and a message."""

from __future__ import annotations

import io
import sys

import click
import pytest

from vmsniff import errors
from vmsniff.cli._errors import run
from vmsniff.errors import Ambiguous, VmsniffError
from vmsniff.exitcodes import ExitCode


def _all_errors() -> list[type[VmsniffError]]:
    found, todo = [], [VmsniffError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda cls: cls.__name__)


def _raising(exc: BaseException) -> click.Command:
    """A throwaway command shaped like vmsniff's root (-v counts) whose body raises ``exc``."""

    @click.command()
    @click.option("-v", "--verbose", count=True)
    def command(verbose: int) -> None:
        raise exc

    return command


def test_every_error_class_of_the_package_is_covered() -> None:
    # A class added to vmsniff.errors without subclassing VmsniffError would escape the mapping.
    public = {getattr(errors, name) for name in errors.__all__}
    assert public <= set(_all_errors())


@pytest.mark.parametrize("cls", _all_errors(), ids=lambda cls: cls.__name__)
def test_error_exits_with_its_class_code_message_and_hint(
    cls: type[VmsniffError], capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(_raising(cls("the bridge br-x is gone", hint="create it first")), [])
    assert code == int(cls.exit_code)
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "vmsniff: error: the bridge br-x is gone\n  hint: create it first\n"


def test_error_without_hint_prints_no_hint_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_raising(errors.NotFound("no VM named web-1")), []) == ExitCode.NOT_FOUND
    assert capsys.readouterr().err == "vmsniff: error: no VM named web-1\n"


def test_ambiguous_keeps_its_code_with_candidates(capsys: pytest.CaptureFixture[str]) -> None:
    exc = Ambiguous("2 VMs are named web", candidates=["id-1", "id-2"], hint="pass an id")
    assert run(_raising(exc), []) == ExitCode.AMBIGUOUS == 4
    assert "hint: pass an id" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "traceback_shown"),
    [([], False), (["-v"], False), (["-vv"], True), (["-v", "--verbose"], True), (["-vvv"], True)],
)
def test_traceback_only_from_vv(
    argv: list[str], traceback_shown: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_raising(errors.SwitchError("mirror limit")), argv) == ExitCode.SWITCH
    err = capsys.readouterr().err
    assert ("Traceback (most recent call last)" in err) is traceback_shown
    assert err.endswith("vmsniff: error: mirror limit\n")


def test_click_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_raising(RuntimeError("not reached")), ["--no-such-option"]) == ExitCode.USAGE == 2
    err = capsys.readouterr().err
    assert "No such option '--no-such-option'" in err
    assert "Traceback" not in err


def test_bad_option_value_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    @click.command()
    @click.option("--mtu", type=click.IntRange(1280, 9000))
    def command(mtu: int) -> None:
        raise AssertionError("not reached")

    assert run(command, ["--mtu", "99"]) == ExitCode.USAGE
    assert "Invalid value for '--mtu'" in capsys.readouterr().err


def test_keyboard_interrupt_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_raising(KeyboardInterrupt()), []) == ExitCode.INTERRUPTED == 130
    # click turns Ctrl-C into Abort after ending the current line, hence the strip().
    assert capsys.readouterr().err.strip() == "vmsniff: interrupted"


def test_click_abort_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_raising(click.Abort()), []) == ExitCode.INTERRUPTED
    assert capsys.readouterr().err == "vmsniff: interrupted\n"


def test_unexpected_exception_exits_1_as_internal_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(_raising(ZeroDivisionError("boom")), []) == ExitCode.ERROR == 1
    err = capsys.readouterr().err
    assert "internal error" in err
    # A bug always shows where it happened, even without -vv.
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError: boom" in err


def test_click_exit_keeps_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_raising(click.exceptions.Exit(5)), []) == 5
    assert capsys.readouterr().err == ""


def test_success_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    @click.command()
    def command() -> None:
        click.echo("fine")

    assert run(command, []) == ExitCode.OK
    assert capsys.readouterr() == ("fine\n", "")


def test_broken_pipe_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # `vmsniff ... | head`: exit 0 and no message; stderr stays open for anything after
    # (tests/unit/cli/test_closed_pipe.py runs the real thing through a closed pipe).
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert run(_raising(BrokenPipeError()), []) == ExitCode.OK
    assert not stderr.closed and stderr.getvalue() == ""


def test_argv_defaults_to_sys_argv(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["vmsniff", "-vv"])
    assert run(_raising(errors.PermissionDenied("need root")), None) == ExitCode.PERMISSION
    assert "Traceback" in capsys.readouterr().err


def test_vmsniff_itself_maps_an_unknown_command_to_2(capsys: pytest.CaptureFixture[str]) -> None:
    from vmsniff.cli import cli

    assert run(cli, ["no-such-command"]) == ExitCode.USAGE
    assert "No such command 'no-such-command'" in capsys.readouterr().err


def test_keyboard_interrupt_outside_click_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    # Ctrl-C while click itself is busy (e.g. before parsing) reaches run() unconverted.
    class Interrupted(click.Command):
        def main(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
            raise KeyboardInterrupt

    assert run(Interrupted("x"), []) == ExitCode.INTERRUPTED
    assert capsys.readouterr().err == "vmsniff: interrupted\n"
