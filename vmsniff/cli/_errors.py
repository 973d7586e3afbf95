"""The one place where exceptions become messages and exit codes.

json and traceback are imported at the top on purpose: after ``receive -Z USER`` drops
privileges the interpreter may no longer be able to read its own standard library (seen
with a Python under /root), and reporting an error must still work then.
"""

from __future__ import annotations

import json
import sys
import traceback

import click

from vmsniff.errors import VmsniffError
from vmsniff.exitcodes import ExitCode

__all__ = ["run"]


def _verbosity(argv: list[str]) -> int:
    # Parsed by hand because the error may come before click parsed anything.
    count = 0
    for arg in argv:
        if arg == "--verbose":
            count += 1
        elif arg.startswith("-") and not arg.startswith("--") and set(arg[1:]) == {"v"}:
            count += len(arg) - 1
    return count


def run(command: click.Command, argv: list[str] | None = None) -> int:
    """Run ``command`` and turn every outcome into an exit code, printing what went wrong."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = command.main(args=args, prog_name="vmsniff", standalone_mode=False)
    except VmsniffError as exc:
        if _verbosity(args) >= 2:
            traceback.print_exc()
        click.echo(f"vmsniff: error: {exc.message}", err=True)
        for candidate in getattr(exc, "candidates", ()):
            click.echo(f"  - {candidate}", err=True)
        if exc.hint:
            click.echo(f"  hint: {exc.hint}", err=True)
        if "--json" in args:
            # Scripts asked for JSON: give them the error as data too (stdout), same exit code.
            click.echo(json.dumps(exc.to_dict(), indent=2))
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("vmsniff: interrupted", err=True)
        return int(ExitCode.INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("vmsniff: interrupted", err=True)
        return int(ExitCode.INTERRUPTED)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(ExitCode.USAGE)
    except BrokenPipeError:
        # The reader of our stdout went away (`vmsniff ... | head`): not an error.
        sys.stderr.close()
        return int(ExitCode.OK)
    except Exception:  # a bug: say so, show where
        traceback.print_exc()
        click.echo(
            "vmsniff: internal error (a bug in vmsniff); please report it with the output above",
            err=True,
        )
        return int(ExitCode.ERROR)
    return int(result) if isinstance(result, int) else int(ExitCode.OK)
