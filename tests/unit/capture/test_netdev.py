"""Finding a ``--at ovs`` port's device (the set-up itself needs root: see the lab tests)."""

from __future__ import annotations

import pytest

from vmsniff.capture.netdev import link_exists, wait_link
from vmsniff.errors import InvalidState


def test_link_exists() -> None:
    assert link_exists("lo")
    assert not link_exists("vmsnope0")


def test_a_port_whose_device_never_appears_says_where_to_run() -> None:
    wait_link("lo", timeout=0.1)
    with pytest.raises(InvalidState) as exc:
        wait_link("vmsnope0", timeout=0.05)
    assert "network namespace" in exc.value.message and "ovs-vswitchd" in (exc.value.hint or "")
