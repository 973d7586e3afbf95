"""Helpers for tests that read the real captures in ../shared/captures.

The captures are not part of the project (README there: never commit them). Tests find them
through ``VMSNIFF_CAPTURES``, else at ``../shared/captures`` from the project root, or, in a
local clone (``git clone /work/main /tmp/x``), from the checkout it was cloned from. When they
are absent the tests skip with a reason, except under CI (``CI`` set), where they must fail.
"""

from __future__ import annotations

import csv
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from vmsniff.pcap.reader import Record, read_records

PROJECT_ROOT = Path(__file__).resolve().parents[3]
ABSENT = "<captures absent>"


def captures_path() -> Path:
    """Where the captures should be (they may be absent)."""
    env = os.environ.get("VMSNIFF_CAPTURES")
    if env:
        return Path(env)
    here = (PROJECT_ROOT / ".." / "shared" / "captures").resolve()
    if here.is_dir():
        return here
    origin = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "remote", "get-url", "origin"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    if origin.startswith("/") and (Path(origin) / ".." / "shared" / "captures").is_dir():
        return (Path(origin) / ".." / "shared" / "captures").resolve()
    return here


def require_captures() -> Path:
    """The captures directory, or skip (fail under CI) when it is absent."""
    path = captures_path()
    if not (path / "MANIFEST.tsv").is_file():
        reason = f"real captures not found at {path} (set VMSNIFF_CAPTURES to their directory)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so they must be present")
        pytest.skip(reason)
    return path


def capture_names(category: str) -> list[str]:
    """Capture files of a category (``gre/x.pcap``) for parametrization, or one placeholder."""
    base = captures_path() / category
    if not base.is_dir():
        return [ABSENT]
    return sorted(
        f"{category}/{p.name}"
        for p in base.iterdir()
        if p.suffix in (".pcap", ".pcapng") and p.is_file()
    )


_CATEGORIES = {
    "tunnel_capture": ("gre", "erspan"),
    "malformed_capture": ("malformed",),
    "any_capture": ("gre", "erspan", "malformed", "mixed", "openflow"),
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``tunnel_capture``, ``malformed_capture`` and ``any_capture`` by file name."""
    for fixture, categories in _CATEGORIES.items():
        if fixture in metafunc.fixturenames:
            names = sorted({n for c in categories for n in capture_names(c)})
            if ABSENT in names:
                names = [ABSENT]
            metafunc.parametrize(fixture, names)


@pytest.fixture
def captures() -> Path:
    """The captures directory; skips (fails under CI) when absent."""
    return require_captures()


@pytest.fixture
def read_capture() -> Callable[[Path], list[Record]]:
    """A function reading every record of a capture file through our streaming reader."""
    return _read_capture


@pytest.fixture
def load_expected() -> Callable[[Path], list[dict[str, list[str]]]]:
    """A function loading a ``.expected.tsv``."""
    return _load_expected


def _read_capture(path: Path) -> list[Record]:
    """Every record of a capture file, through our streaming reader (odd chunk size on purpose)."""
    with path.open("rb") as fh:
        return list(read_records(iter(lambda: fh.read(1000), b"")))


def _load_expected(path: Path) -> list[dict[str, list[str]]]:
    """tshark's field dump: one dict per frame, each field split into its layers (outer first)."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [{k: (v.split(",") if v else []) for k, v in row.items()} for row in rows]
