"""Which lines of the fuzzed modules a campaign's inputs reach (``python -m fuzz.lines``).

The fuzzer has no coverage feedback, so this says whether its seeds and mutations get into
the code at all: the first ``--inputs`` of each decoder's campaign run under ``sys.settrace``
(slow: keep it to a few thousand), against every line the compiler put in the module's code
objects. The lines not reached are printed, to read.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import types
from collections.abc import Iterator
from pathlib import Path

from fuzz.run import inputs
from fuzz.targets import TARGETS
from vmsniff.pcap import reader
from vmsniff.pipeline import inplace, ring
from vmsniff.wire import decap, erspan, ethernet, gre, ipv4

MODULES = (reader, decap, gre, erspan, ethernet, ipv4, inplace, ring)


def _lines(code: types.CodeType) -> Iterator[int]:
    """Lines of the functions in ``code`` (not of module or class bodies: they ran at import)."""
    if code.co_flags & inspect.CO_NEWLOCALS:
        for _start, _end, line in code.co_lines():
            if line is not None and line > code.co_firstlineno:
                yield line
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _lines(const)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.lines", description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=3000, help="inputs per decoder")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--missing", action="store_true", help="list the lines not reached")
    args = ap.parse_args(argv)
    files = {str(Path(m.__file__ or "").resolve()): m for m in MODULES}
    hit: dict[str, set[int]] = {f: set() for f in files}

    def tracer(frame: types.FrameType, event: str, arg: object) -> object:
        seen = hit.get(frame.f_code.co_filename)
        if seen is None:
            return None
        seen.add(frame.f_lineno)
        return tracer

    for name, target in TARGETS.items():
        data = list(inputs(name, args.seed, args.inputs))
        sys.settrace(tracer)
        try:
            for d in data:
                try:
                    target.run(d)
                except Exception:  # a crash is the campaign's business, not this count's
                    pass
        finally:
            sys.settrace(None)
    print(f"first {args.inputs} inputs of each decoder, seed {args.seed}")
    print("| module | lines | reached | % |")
    print("| --- | ---: | ---: | ---: |")
    for path, module in files.items():
        source = Path(path).read_text()
        every = set(_lines(compile(source, path, "exec")))
        got = hit[path] & every
        print(
            f"| {module.__name__} | {len(every)} | {len(got)} | {100 * len(got) / len(every):.0f} |"
        )
        if args.missing:
            print(f"    not reached: {sorted(every - got)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
