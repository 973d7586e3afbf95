"""``vmsniff capture --flows`` on a terminal, in the lab: the flow table redrawn while the VM's
traffic flows, then printed once."""

from __future__ import annotations

import re
import threading
import time

import pytest

from tests.functional.test_mirror import _env
from tests.unit.cli.test_render_receive import _under_pty
from vmsniff.lab.topology import Lab
from vmsniff.lab.traffic import make_traffic

pytestmark = pytest.mark.lab


def test_capture_flows_is_redrawn_live_then_printed_once(lab: Lab) -> None:
    def traffic() -> None:
        time.sleep(1.5)
        make_traffic(lab, "c-private", "c-native", count=3)

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        shown = _under_pty("ip", "netns", "exec", lab.hypervisor_ns, "PYTHON", "-m",
                           "vmsniff", "capture", "c-private", "--at", "tap", "--flows",
                           "--duration", "5", env=_env(lab))  # fmt: skip
    finally:
        sender.join()
    titles = re.findall(r"(\d+) flows, (\d+) packets", shown)
    assert titles[0] == ("0", "0")  # drawn at once
    final = titles[-1]
    assert int(final[0]) >= 4 and int(final[1]) >= 30  # ARP, ICMP x2, UDP, TCP
    assert len(titles) >= 4  # at least two redraws between the first frame and the end
    assert titles.count(final) >= 2  # the last redraw, then the table printed at the end
    assert shown.count("totals") == 1  # the totals table: once, at the end
    assert "capturing c-private" in shown and "written" in shown
