"""``lab traffic``: known, countable traffic between two lab VMs.

Starts the agent's echo server in the destination VM's namespace, runs the sender in the
source VM's namespace, and returns both sides' counts. Per round trip of ``count``:
ICMP echo (84-byte IP packets), UDP echo (128-byte), TCP echo over one connection
(200-byte writes) and ICMP echo with full 1500-byte IP packets.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from vmsniff.errors import InvalidState, NotFound
from vmsniff.lab._run import LabError
from vmsniff.lab.links import existing_namespaces
from vmsniff.lab.topology import Lab, LabVm

__all__ = ["make_traffic"]


def _vm(lab: Lab, name: str) -> LabVm:
    try:
        return lab.vm(name)
    except KeyError:
        names = ", ".join(vm.name for vm in lab.vms)
        raise NotFound(f"the lab has no VM named {name!r}", hint=f"lab VMs: {names}") from None


def make_traffic(lab: Lab, source: str, destination: str, count: int = 5) -> dict[str, Any]:
    """Send the traffic mix from ``source`` to ``destination``; return counts and timing."""
    src, dst = _vm(lab, source), _vm(lab, destination)
    if src.name == dst.name:
        raise InvalidState("source and destination must be different VMs")
    missing = {src.namespace, dst.namespace} - existing_namespaces()
    if missing:
        raise InvalidState(
            f"the lab {lab.prefix!r} is not running (no namespace {', '.join(sorted(missing))})",
            hint="start it with `vmsniff lab up`",
        )
    agent = [sys.executable, "-m", "vmsniff.lab.agent"]
    server = subprocess.Popen(
        ["ip", "netns", "exec", dst.namespace, *agent, "serve", "--bind", dst.address],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    started = time.monotonic()
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise LabError(f"the traffic echo server in {dst.namespace} did not start")
        proc = subprocess.run(
            ["ip", "netns", "exec", src.namespace, *agent, "send", dst.address,
             "--count", str(count)],
            capture_output=True, text=True, timeout=60 + count * 4,
        )  # fmt: skip
        if proc.returncode != 0:
            raise LabError(f"the traffic sender in {src.namespace} failed: {proc.stderr.strip()}")
        result: dict[str, Any] = json.loads(proc.stdout)
    finally:
        if server.stdin:
            server.stdin.close()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout:
            server.stdout.close()
    return {
        "from": {"name": src.name, "address": src.address, "mac": src.mac},
        "to": {"name": dst.name, "address": dst.address, "mac": dst.mac},
        "count": count,
        "seconds": round(time.monotonic() - started, 3),
        "traffic": result,
    }
