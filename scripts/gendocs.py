"""Generate vmsniff's shell completions and man pages from the live click definitions.

Run from the project root::

    .venv/bin/python scripts/gendocs.py           # (re)write completions/ and man/
    .venv/bin/python scripts/gendocs.py --check   # exit 1 if they are stale, else 0

Everything comes from the click tree of :data:`vmsniff.cli.cli`, walked through every group,
so new commands get their pages without touching this script:

* ``completions/vmsniff.bash``, ``completions/_vmsniff`` (zsh), ``completions/vmsniff.fish``:
  exactly what click prints for ``_VMSNIFF_COMPLETE={bash,zsh,fish}_source vmsniff``. Install
  them as ``/usr/share/bash-completion/completions/vmsniff``, a directory on zsh's
  ``$fpath`` and ``~/.config/fish/completions/`` respectively.
* ``man/vmsniff.1`` and one page per command below it (``man/vmsniff-lab.1``,
  ``man/vmsniff-lab-up.1``, ...), in man(7) roff. ``vmsniff.1`` carries EXIT STATUS (read from
  the ``#:`` comments of :class:`vmsniff.exitcodes.ExitCode`) and ENVIRONMENT (every envvar
  any option declares).

The two directories are owned by this script: files in them that it would not generate are
reported by ``--check`` and removed when writing. Output is deterministic (no dates; the
package version goes into ``.TH``).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402
from click.shell_completion import get_completion_class  # noqa: E402

import vmsniff  # noqa: E402
from vmsniff import exitcodes  # noqa: E402
from vmsniff.errors import VmsniffError  # noqa: E402

__all__ = [
    "OWNED_DIRS",
    "check",
    "command_pages",
    "exit_code_docs",
    "generate",
    "main",
    "walk",
    "write",
]

PROG = "vmsniff"
COMPLETE_VAR = f"_{PROG.upper()}_COMPLETE"
#: shell name for click -> file name under completions/
COMPLETION_FILES = {"bash": "vmsniff.bash", "zsh": "_vmsniff", "fish": "vmsniff.fish"}
OWNED_DIRS = ("completions", "man")
MANUAL = "vmsniff Manual"


# --------------------------------------------------------------------------- the click tree


@dataclass(frozen=True)
class Node:
    """One command of the tree: its path of names, the command and a context to render it."""

    path: tuple[str, ...]  # ("vmsniff", "lab", "up")
    command: click.Command
    ctx: click.Context

    @property
    def page(self) -> str:
        """Man page name without section: ``vmsniff-lab-up``."""
        return "-".join(self.path)

    @property
    def display(self) -> str:
        """The command as typed: ``vmsniff lab up``."""
        return " ".join(self.path)


def _context(command: click.Command, name: str, parent: click.Context | None) -> click.Context:
    # What Command.make_context does, minus parsing: the command's own context_settings
    # (e.g. -h/--help on the root) and inheritance from the parent context.
    return click.Context(command, info_name=name, parent=parent, **command.context_settings)


def walk(root: click.Command | None = None) -> Iterator[Node]:
    """Every visible command of the tree, parents before children, siblings by name."""
    if root is None:
        from vmsniff.cli import cli as root
    assert root is not None

    def visit(node: Node) -> Iterator[Node]:
        yield node
        command = node.command
        if isinstance(command, click.Group):
            for name in sorted(command.list_commands(node.ctx)):
                sub = command.get_command(node.ctx, name)
                if sub is None or sub.hidden:
                    continue
                yield from visit(Node((*node.path, name), sub, _context(sub, name, node.ctx)))

    yield from visit(Node((PROG,), root, _context(root, PROG, None)))


# --------------------------------------------------------------------------- exit codes


def exit_code_docs(enum: type[IntEnum] = exitcodes.ExitCode) -> list[tuple[str, int, str]]:
    """(name, number, meaning) of each member of ``enum``, the meaning read from its source.

    A member is documented by a ``#:`` comment on its line, ``#:`` comment lines right above
    it, or a string right below it (the conventions Sphinx autodoc reads). Only 0 may go
    undocumented ("success"); any other undocumented member is an error, so that a new exit
    code cannot reach the man page without a meaning.
    """
    source = inspect.getsource(sys.modules[enum.__module__])
    lines = source.splitlines()
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.string.startswith("#:"):
            comments[tok.start[0]] = tok.string[2:].strip()

    docs: dict[str, str] = {}
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ClassDef) and node.name == enum.__name__):
            continue
        body = node.body
        for i, stmt in enumerate(body):
            if not (isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name)):
                continue
            name = stmt.targets[0].id
            parts: list[str] = []
            above = stmt.lineno - 1  # 1-based line numbers, as tokenize and ast count
            while above in comments and lines[above - 1].lstrip().startswith("#:"):
                parts.insert(0, comments[above])
                above -= 1
            if stmt.end_lineno in comments:
                parts.append(comments[stmt.end_lineno])
            nxt = body[i + 1] if i + 1 < len(body) else None
            if (
                isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                parts.append(inspect.cleandoc(nxt.value.value))
            docs[name] = " ".join(parts)

    result = []
    for member in enum:
        meaning = docs.get(member.name, "")
        if not meaning:
            if member.value != 0:
                raise ValueError(
                    f"{enum.__name__}.{member.name} has no '#:' comment; document it in "
                    f"{enum.__module__} so vmsniff(1) can explain it"
                )
            meaning = "success"
        result.append((member.name, int(member.value), meaning))
    return result


def _error_classes() -> dict[int, list[str]]:
    """Exit code -> names of the VmsniffError classes that carry it."""
    by_code: dict[int, list[str]] = {}
    seen: set[type[VmsniffError]] = set()
    todo: list[type[VmsniffError]] = [VmsniffError]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        by_code.setdefault(int(cls.exit_code), []).append(cls.__name__)
        # Only the public tree of vmsniff.errors: subclasses elsewhere (and in tests) are
        # imported or not depending on what ran before, and would make the page unstable.
        todo.extend(c for c in cls.__subclasses__() if c.__module__ == "vmsniff.errors")
    return {code: sorted(names) for code, names in by_code.items()}


# --------------------------------------------------------------------------- roff helpers


def _esc(text: str) -> str:
    """Escape running text for roff: backslashes, and a leading control character."""
    text = text.replace("\\", "\\e")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.MULTILINE)


def _lit(text: str) -> str:
    """A literal (option, command, variable): also hyphens, so they stay ASCII and searchable."""
    return _esc(text).replace("-", "\\-")


_OPTION_WORD = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def _prose(text: str) -> str:
    """Running text; option-like words (``-vv``, ``--json``) keep ASCII hyphens."""
    return _OPTION_WORD.sub(lambda m: _lit(m.group(1)), _esc(text))


def _inline(text: str) -> str:
    """Running text with click-style `code` spans rendered bold."""
    if text.count("`") % 2:  # unbalanced: keep it as written
        return _prose(text)
    parts = text.split("`")
    return "".join(f"\\fB{_lit(p)}\\fR" if i % 2 else _prose(p) for i, p in enumerate(parts))


def _help_text(command: click.Command) -> str:
    # Command.format_help_text does the same: dedent, and drop what follows a \f.
    text = command.help or command.short_help or ""
    return inspect.cleandoc(text).partition("\f")[0].strip()


def _paragraphs(text: str) -> list[str]:
    """Help text as roff paragraphs; click's ``\\b`` paragraphs stay unfilled."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text.strip()):
        if not para.strip():
            continue
        if para.startswith("\b"):
            body = "\n".join(_esc(line) for line in para[1:].strip("\n").splitlines())
            out.append(f".nf\n{body}\n.fi")
        else:
            out.append(_inline(" ".join(line.strip() for line in para.splitlines())))
    return out


def _short(command: click.Command) -> str:
    return command.get_short_help_str(limit=200).rstrip(".")


def _sentence(text: str) -> str:
    """Capitalised, ending in a full stop (roff text, so a leading escape is kept)."""
    text = text if text.startswith("\\") else text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _see_also(ref: str) -> str:
    return f"\\fB{_lit(ref)}\\fR(1)"


# --------------------------------------------------------------------------- options


def _option_tag(param: click.Parameter, ctx: click.Context) -> str:
    names = ", ".join(f"\\fB{_lit(opt)}\\fR" for opt in (*param.opts, *param.secondary_opts))
    takes_value = not (isinstance(param, click.Option) and (param.is_flag or param.count))
    if takes_value:
        names += f" \\fI{_lit(param.make_metavar(ctx))}\\fR"
    return names


def _envvars(param: click.Parameter, ctx: click.Context) -> list[str]:
    envvar = param.envvar
    if envvar is None and isinstance(param, click.Option) and param.allow_from_autoenv:
        if ctx.auto_envvar_prefix is not None and param.name is not None:
            envvar = f"{ctx.auto_envvar_prefix}_{param.name.upper()}"
    if envvar is None:
        return []
    return [envvar] if isinstance(envvar, str) else list(envvar)


def _range(kind: click.ParamType) -> str | None:
    if not isinstance(kind, click.IntRange | click.FloatRange):
        return None
    parts = []
    if kind.min is not None:
        parts.append(f"{'greater than' if kind.min_open else 'at least'} {kind.min}")
    if kind.max is not None:
        parts.append(f"{'less than' if kind.max_open else 'at most'} {kind.max}")
    return " and ".join(parts) if parts else None


def _default(param: click.Parameter) -> str | None:
    if not isinstance(param, click.Option) or param.is_flag or param.count:
        return None
    if param.show_default is False:
        return None
    if isinstance(param.show_default, str):
        return param.show_default
    # Through to_info_dict: click 8.2+ keeps an UNSET sentinel in .default, this gives None.
    default = param.to_info_dict()["default"]
    if default is None or default == () or default == "":
        return None
    if callable(default):
        return "computed at run time"
    if isinstance(default, list | tuple):
        return " ".join(str(value) for value in default)
    return str(default)


def _param_body(param: click.Parameter, ctx: click.Context) -> str:
    lines: list[str] = []
    text = getattr(param, "help", None) or ""
    if text:
        lines.append(_inline(" ".join(inspect.cleandoc(text).split())))
    facts: list[str] = []
    if isinstance(param.type, click.Choice):
        choices = ", ".join(f"\\fB{_lit(str(c))}\\fR" for c in param.type.choices)
        facts.append(f"One of: {choices}.")
    counting = isinstance(param, click.Option) and param.count
    value_range = None if counting else _range(param.type)
    if value_range:
        facts.append(f"Range: {value_range}.")
    default = _default(param)
    if default is not None:
        facts.append(f"Default: \\fB{_lit(default)}\\fR.")
    for var in _envvars(param, ctx):
        facts.append(f"Environment variable: \\fB{_lit(var)}\\fR.")
    if getattr(param, "multiple", False):
        facts.append("May be given more than once.")
    if param.required:
        facts.append("Required.")
    if lines and facts:
        lines.append(".br")
    lines.extend(facts)
    return "\n".join(lines) if lines else "(no description)"


def _visible_params(node: Node) -> list[click.Parameter]:
    return [p for p in node.command.get_params(node.ctx) if not getattr(p, "hidden", False)]


# --------------------------------------------------------------------------- pages


def _environment(nodes: list[Node]) -> dict[str, list[tuple[str, str, str]]]:
    """envvar -> [(command, option, help)] across the given commands."""
    env: dict[str, list[tuple[str, str, str]]] = {}
    for node in nodes:
        for param in _visible_params(node):
            for var in _envvars(param, node.ctx):
                option = max(param.opts, key=len)
                text = " ".join(inspect.cleandoc(getattr(param, "help", None) or "").split())
                env.setdefault(var, []).append((node.display, option, text))
    return dict(sorted(env.items()))


def _environment_section(env: dict[str, list[tuple[str, str, str]]]) -> list[str]:
    out = ['.SH "ENVIRONMENT"']
    for var, uses in env.items():
        out += [".TP", f"\\fB{_lit(var)}\\fR"]
        grouped: dict[tuple[str, str], list[str]] = {}
        for display, option, text in uses:
            grouped.setdefault((option, text), []).append(f"\\fB{_lit(display)}\\fR")
        sentences = []
        for (option, text), where in grouped.items():
            sentence = f"Default for \\fB{_lit(option)}\\fR of {', '.join(where)}"
            sentences.append(_sentence(f"{sentence}: {_inline(text)}" if text else sentence))
        out.append("\n.br\n".join(sentences))
    return out


def _exit_status_section() -> list[str]:
    classes = _error_classes()
    out = [
        '.SH "EXIT STATUS"',
        "Every subcommand exits with one of these codes; scripts may rely on the numbers.",
    ]
    for name, number, meaning in exit_code_docs():
        out += [".TP", f"\\fB{number}\\fR ({_lit(name)})", _sentence(_inline(meaning))]
        if number in classes:
            names = ", ".join(f"\\fI{_lit(c)}\\fR" for c in classes[number])
            out += [".br", f"Raised as: {names}."]
    return out


def _page(node: Node, children: list[Node], all_nodes: list[Node], version: str) -> str:
    command = node.command
    title = node.page.upper()
    out = [
        '.\\" Generated by scripts/gendocs.py from the click definitions; do not edit.',
        f'.TH "{_lit(title)}" "1" "" "vmsniff {_esc(version)}" "{MANUAL}"',
        '.SH "NAME"',
        f"{_lit(node.page)} \\- {_esc(_short(command))}",
        '.SH "SYNOPSIS"',
        f"\\fB{_lit(node.display)}\\fR "
        + " ".join(_lit(piece) for piece in command.collect_usage_pieces(node.ctx)),
        '.SH "DESCRIPTION"',
    ]
    paragraphs = _paragraphs(_help_text(command)) or [_esc(_short(command))]
    if command.deprecated:
        paragraphs.insert(0, "\\fBDeprecated.\\fR")
    out.append("\n.PP\n".join(paragraphs))
    if command.epilog:
        out += [".PP", *_paragraphs(inspect.cleandoc(command.epilog))]

    params = _visible_params(node)
    arguments = [p for p in params if isinstance(p, click.Argument)]
    options = [p for p in params if not isinstance(p, click.Argument)]
    if arguments:
        out.append('.SH "ARGUMENTS"')
        for param in arguments:
            out += [".TP", f"\\fI{_lit(param.make_metavar(node.ctx))}\\fR"]
            out.append(_param_body(param, node.ctx))
    if options:
        out.append('.SH "OPTIONS"')
        if len(node.path) > 1:
            out.append(
                f"Options of {_see_also(PROG)} (such as \\fB\\-v\\fR) go before the subcommand."
            )
        for param in options:
            out += [".TP", _option_tag(param, node.ctx), _param_body(param, node.ctx)]
    if children:
        out.append('.SH "COMMANDS"')
        for child in children:
            out += [
                ".TP",
                f"\\fB{_lit(child.path[-1])}\\fR",
                f"{_esc(_short(child.command))}. See {_see_also(child.page)}.",
            ]

    if len(node.path) == 1:
        env = _environment(all_nodes)
        if env:
            out += _environment_section(env)
        out += _exit_status_section()
    else:
        env = _environment([node])
        if env:
            out += _environment_section(env)
        out += ['.SH "EXIT STATUS"', f"See {_see_also(PROG)}."]

    refs: list[str] = []
    if len(node.path) == 1:
        refs += [n.page for n in all_nodes if n is not node]
    else:
        refs += ["-".join(node.path[:i]) for i in range(1, len(node.path))]
        refs += [child.page for child in children]
    out.append('.SH "SEE ALSO"')
    out.append(",\n".join(_see_also(ref) for ref in refs) + ("," if refs else ""))
    out.append("\\fBovs\\-vsctl\\fR(8), \\fBovs\\-tcpdump\\fR(8), \\fBtcpdump\\fR(8)")
    return "\n".join(out) + "\n"


def command_pages(nodes: list[Node] | None = None) -> dict[str, str]:
    """``man/<page>.1`` -> roff text, one page per command of the tree."""
    nodes = list(walk()) if nodes is None else nodes
    version = vmsniff.__version__
    pages = {}
    for node in nodes:
        children = [n for n in nodes if n.path[:-1] == node.path]
        pages[f"man/{node.page}.1"] = _page(node, children, nodes, version)
    return pages


def completions() -> dict[str, str]:
    """``completions/<file>`` -> what click prints for ``_VMSNIFF_COMPLETE=<shell>_source``."""
    from vmsniff.cli import cli

    out = {}
    for shell, filename in COMPLETION_FILES.items():
        cls = get_completion_class(shell)
        if cls is None:
            raise RuntimeError(f"this click has no {shell} completion")
        source = cls(cli, {}, PROG, COMPLETE_VAR).source()
        # Byte for byte what `_VMSNIFF_COMPLETE=<shell>_source vmsniff` prints (click's
        # shell_complete writes source() with nl=False).
        out[f"completions/{filename}"] = source
    return out


def generate() -> dict[str, str]:
    """Every generated file: path relative to the project root -> content."""
    return dict(sorted({**completions(), **command_pages()}.items()))


# --------------------------------------------------------------------------- check / write


def _existing(root: Path) -> set[str]:
    found = set()
    for name in OWNED_DIRS:
        directory = root / name
        if directory.is_dir():
            found |= {p.relative_to(root).as_posix() for p in directory.rglob("*") if p.is_file()}
    return found


def check(root: Path = ROOT) -> list[str]:
    """What differs between the tree on disk and a fresh generation (empty when in sync)."""
    wanted = generate()
    problems = []
    for path, content in wanted.items():
        target = root / path
        if not target.is_file():
            problems.append(f"missing: {path}")
        elif target.read_text(encoding="utf-8") != content:
            problems.append(f"differs: {path}")
    for path in sorted(_existing(root) - set(wanted)):
        problems.append(f"stale extra: {path}")
    return problems


def write(root: Path = ROOT) -> list[str]:
    """Write what changed, remove stale extras; returns the paths touched."""
    wanted = generate()
    touched = []
    for path, content in wanted.items():
        target = root / path
        if target.is_file() and target.read_text(encoding="utf-8") == content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        touched.append(f"wrote {path}")
    for path in sorted(_existing(root) - set(wanted)):
        (root / path).unlink()
        touched.append(f"removed {path}")
    return touched


def main(argv: list[str] | None = None) -> int:
    """Command line of the script; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the files on disk; exit 1 if stale"
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="project root (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.root)
        for problem in problems:
            print(problem)
        if problems:
            print(
                "generated docs are stale: run .venv/bin/python scripts/gendocs.py", file=sys.stderr
            )
            return 1
        return 0
    for line in write(args.root) or ["completions/ and man/ are up to date"]:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
