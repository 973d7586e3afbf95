"""Shared test helpers: whether root/lab tests may run, and how to refuse when they may not."""

from __future__ import annotations

import os

import pytest


def skip_or_fail(reason: str) -> None:
    """Skip outside CI; in CI (CI set) a missing requirement is a failure, never a skip."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run every test)")
    pytest.skip(reason)


def require_root() -> None:
    if os.geteuid() != 0:
        skip_or_fail("needs root: network namespaces and Open vSwitch")
