"""Many vmsniff sessions at once on one lab switch: each one's end leaves the others whole.

Two, then eight foreground sessions (GRE mirrors of one VM and of different VMs, and
``capture --at ovs`` sessions) run at the same time; they are stopped one by one, by
``cleanup ID`` (the owner then exits 12) or by SIGINT, and after each stop every other
session's rows are still there and its mirror still delivers the VM's frames.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.functional.test_capture import start_capture
from tests.functional.test_mirror import assert_clean, collector, start_mirror, vmsniff
from tests.functional.test_sessions import listed
from vmsniff.lab.topology import RECEIVER_IP, Lab
from vmsniff.lab.traffic import make_traffic

pytestmark = pytest.mark.lab

VMS = ("c-private", "c-native")
PEER = {"c-private": "c-native", "c-native": "c-private"}


def _mirror(lab: Lab, vm: str, key: int) -> subprocess.Popen[str]:
    return start_mirror(lab, vm, "--to", RECEIVER_IP, "--key", str(key), "--ttl", "6s")


def _keys_arriving(lab: Lab) -> set[int]:
    with collector(lab) as got:
        for vm in VMS:
            make_traffic(lab, vm, PEER[vm], count=1)
    return {int(k) for k, _, _ in got}  # type: ignore[call-overload]


@pytest.mark.parametrize("count", [2, 8])
def test_concurrent_sessions_end_one_by_one_leaving_the_others_intact(
    lab: Lab, count: int, tmp_path: Path
) -> None:
    procs: list[tuple[str, int | None, subprocess.Popen[str]]] = []
    try:
        captures = 1 if count == 2 else 2
        for i in range(count - captures):  # mirrors: alternate VMs, so two share each VM
            key = 72000000 + 10 * i
            procs.append(("mirror", key, _mirror(lab, VMS[i % 2], key)))
        for i in range(captures):
            out = tmp_path / f"cap{i}.pcapng"
            procs.append(("capture", None, start_capture(lab, VMS[i % 2], "--at", "ovs",
                                                         "-w", str(out))))  # fmt: skip
        sessions = {s["session"]: s for s in listed(lab)}
        assert len(sessions) == count
        time.sleep(2.5)  # past a renewal (ttl 6 s: every 2 s), all at once
        live = [p for p in procs]
        for n, (kind, key, proc) in enumerate(procs):
            assert proc.poll() is None, proc.communicate()
            if n % 2 == 0:  # half are removed from outside: their owner notices (exit 12)
                sid = _sid_of(lab, kind, key, proc, sessions)
                assert vmsniff(lab, "cleanup", sid).returncode == 0
                _out, err = proc.communicate(timeout=30)
                assert proc.returncode == 12, err
            else:
                proc.send_signal(signal.SIGINT)
                _out, err = proc.communicate(timeout=30)
                assert proc.returncode == 0, err
            live.remove((kind, key, proc))
            others = listed(lab)
            assert len(others) == len(live)
            assert all(not s["problems"] and s["state"] == "active" for s in others)
            if n in (0, len(procs) // 2):  # the rest still mirror
                wanted = {k for kind_, k, _ in live if kind_ == "mirror" and k is not None}
                assert wanted <= _keys_arriving(lab)
            for _kind, _key, p in live:
                assert p.poll() is None
        assert_clean(lab)
    finally:
        for _kind, _key, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        vmsniff(lab, "cleanup", "--all")


def _sid_of(
    lab: Lab, kind: str, key: int | None, proc: subprocess.Popen[str], sessions: dict[str, dict]
) -> str:
    if kind == "mirror":
        head: str = proc.head  # type: ignore[attr-defined]
        return head.split("session ", 1)[1].split(":", 1)[0]
    found = [s for s in sessions.values() if s["pid"] is not None and s["encap"] == "internal"]
    # a capture runs under `ip netns exec`, which execs python: the pid is the Popen's
    mine = [s for s in found if s["pid"] == proc.pid]
    assert mine, json.dumps(found)
    return str(mine[0]["session"])
