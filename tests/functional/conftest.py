"""The lab fixture: one real lab per test session, unique prefix, always torn down."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import require_root, skip_or_fail
from vmsniff.lab.build import build
from vmsniff.lab.teardown import teardown
from vmsniff.lab.topology import Lab, lab_for


def unique_prefix(tag: str) -> str:
    """A prefix no other test run uses: the pid and a tag."""
    return f"vmst{os.getpid()}-{tag}"


def _require_lab_tools() -> None:
    require_root()
    for tool in ("ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "tshark", "tcpdump"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed (scripts/install.sh installs it)")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A running lab for the whole session (jumbo underlay), removed even when tests fail."""
    _require_lab_tools()
    the_lab = lab_for(unique_prefix("s"))
    try:
        build(the_lab)
        yield the_lab
    finally:
        teardown(the_lab)


@pytest.fixture
def fresh_lab_prefix() -> Iterator[str]:
    """A prefix for a test that builds its own lab; whatever it leaves is removed after."""
    _require_lab_tools()
    prefix = unique_prefix("f")
    try:
        yield prefix
    finally:
        teardown(lab_for(prefix))
