"""``lab traffic``: known, countable traffic between two lab VMs.

Starts the agent's echo server in the destination VM's namespace, runs the sender in the
source VM's namespace, and returns both sides' counts. Each side uses one NIC of its VM (the
first unless told): the server listens on that NIC's address and the sender binds to its
own, so that a multi-NIC VM's source routes carry the traffic through that NIC.

Per round trip of ``count``: ICMP echo (84-byte IP packets), UDP echo (128-byte), TCP echo
over one connection (200-byte writes) and ICMP echo with full 1500-byte IP packets.
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
from vmsniff.lab.topology import Lab, LabNic, LabVm

__all__ = ["make_traffic"]


def _vm(lab: Lab, name: str) -> LabVm:
    try:
        return lab.vm(name)
    except KeyError:
        names = ", ".join(vm.name for vm in lab.vms)
        raise NotFound(f"the lab has no VM named {name!r}", hint=f"lab VMs: {names}") from None


def _nic(vm: LabVm, which: int | str) -> LabNic:
    """The NIC of that index, or of that device name inside the VM (``eth1``)."""
    for i, nic in enumerate(vm.nics):
        if which in (i, nic.device):
            return nic
    names = ", ".join(f"{i} ({nic.device})" for i, nic in enumerate(vm.nics))
    raise NotFound(f"{vm.name} has no NIC {which}", hint=f"its NICs: {names}")


def make_traffic(
    lab: Lab,
    source: str,
    destination: str,
    count: int = 5,
    *,
    source_nic: int | str = 0,
    destination_nic: int | str = 0,
) -> dict[str, Any]:
    """Send the traffic mix from ``source`` to ``destination``, each through the NIC of that
    index (``vm.nics``) or device name (``eth1``); return counts and timing."""
    src, dst = _vm(lab, source), _vm(lab, destination)
    src_nic, dst_nic = _nic(src, source_nic), _nic(dst, destination_nic)
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
        ["ip", "netns", "exec", dst.namespace, *agent, "serve", "--bind", dst_nic.address],
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
            ["ip", "netns", "exec", src.namespace, *agent, "send", dst_nic.address,
             "--source", src_nic.address, "--count", str(count)],
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
        "from": _end(src, src_nic),
        "to": _end(dst, dst_nic),
        "count": count,
        "seconds": round(time.monotonic() - started, 3),
        "traffic": result,
    }


def _end(vm: LabVm, nic: LabNic) -> dict[str, str]:
    return {"name": vm.name, "device": nic.device, "address": nic.address, "mac": nic.mac}
