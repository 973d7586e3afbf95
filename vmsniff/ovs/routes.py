"""Open vSwitch's own route table: which ``--to`` addresses cannot receive a tunnel.

A tunnel port goes wherever ovs-vswitchd's route table sends its ``remote_ip`` (it mirrors
the kernel's with the kernel datapath; the userspace datapath keeps its own, from the
addresses of its bridges). The table is the only place that knows this hypervisor's own
addresses and its connected subnets, so a tunnel to the hypervisor itself or to a subnet's
broadcast address -- both of which OVS accepts and routes like any receiver (seen in the
lab: ``--to 10.250.0.1`` left through br-phy) -- is refused from it, before anything is made.

``ovs-appctl ovs/route/show`` prints lines such as::

    Cached: 10.250.0.1/32 dev br-phy SRC 10.250.0.1 local
    Cached: 10.250.0.0/24 dev br-phy SRC 10.250.0.1
    User: 10.250.0.2/32 dev br-phy GW 10.250.0.254 SRC 10.250.0.1

:func:`parse_routes` and :func:`unusable_receivers` are pure; :func:`read_routes` asks the
local ovs-vswitchd through its control socket and returns None when it cannot (a remote
OVSDB, no ovs-appctl): the check is then skipped, and Open vSwitch's own route check after
the commit (``tunnel_egress_iface``) still applies.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass

__all__ = ["Route", "parse_routes", "read_routes", "unusable_receivers"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of ovs-vswitchd's route table."""

    network: Network
    dev: str
    gateway: str | None
    src: str | None
    local: bool  #: an address of this host


def parse_routes(text: str) -> list[Route]:
    """The routes in ``ovs-appctl ovs/route/show`` output; lines it cannot read are skipped."""
    routes = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 4 or not words[0].endswith(":") or words[2] != "dev":
            continue
        try:
            network = ipaddress.ip_network(words[1], strict=False)
        except ValueError:
            continue
        fields = dict(zip(words[4::2], words[5::2], strict=False))
        routes.append(
            Route(network, words[3], fields.get("GW"), fields.get("SRC"), words[-1] == "local")
        )
    return routes


def unusable_receivers(routes: list[Route]) -> dict[str, str]:
    """Addresses a mirror must not be sent to, and why: this host's own addresses, and the
    broadcast address of each directly connected IPv4 subnet of /30 or wider."""
    refused: dict[str, str] = {}
    for r in routes:
        if r.local:
            for addr in (r.network.network_address, r.src):
                if addr is not None:
                    refused.setdefault(
                        str(addr), f"an address of this hypervisor ({r.dev}, in Open vSwitch's "
                        "route table)",
                    )  # fmt: skip
    for r in routes:
        net = r.network
        if not r.local and r.gateway is None and net.version == 4 and net.prefixlen <= 30:
            refused.setdefault(
                str(net.broadcast_address),
                f"the broadcast address of {net} ({r.dev}, in Open vSwitch's route table)",
            )
    return refused


def read_routes(ovsdb_remote: str, timeout: float = 2.0) -> str | None:
    """``ovs-appctl ovs/route/show`` of the ovs-vswitchd next to a ``unix:`` OVSDB socket
    (its run directory: ``ovs-vswitchd.ctl``, or ``ovs-vswitchd.PID.ctl`` by its pidfile);
    None when there is no such vswitchd or it does not answer."""
    if not ovsdb_remote.startswith("unix:"):
        return None
    rundir = os.path.dirname(ovsdb_remote[5:])
    targets = [os.path.join(rundir, "ovs-vswitchd.ctl")]
    try:
        with open(os.path.join(rundir, "ovs-vswitchd.pid"), encoding="ascii") as f:
            targets.append(os.path.join(rundir, f"ovs-vswitchd.{int(f.read().strip())}.ctl"))
    except (OSError, ValueError):
        pass
    for target in targets:
        if not os.path.exists(target):
            continue
        try:
            proc = subprocess.run(
                ["ovs-appctl", "-t", target, "ovs/route/show"],
                capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode == 0:
            return proc.stdout
    return None
