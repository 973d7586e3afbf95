"""The lab's Open vSwitch: a real ovsdb-server and ovs-vswitchd with the userspace datapath.

Both daemons run inside the hypervisor namespace with their own run directory, pidfiles
and unixctl sockets (FACTS.md: without OVS_RUNDIR vswitchd binds the host's
/var/run/openvswitch), ``--disable-system`` keeps vswitchd off the kernel datapath this
kernel lacks, and every bridge uses ``datapath_type=netdev``.

Every function takes a :class:`Hypervisor` or a :class:`Lab`; a lab stands for its first
hypervisor (``compute-1``), which is all the one-host lab has.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from vmsniff.lab import links
from vmsniff.lab._run import LabError, need, run, run_in
from vmsniff.lab.topology import RECEIVER_IP, UNDERLAY_PREFIXLEN, Hypervisor, Lab

__all__ = [
    "DAEMONS",
    "Node",
    "appctl",
    "daemon_pid",
    "host",
    "ofctl",
    "ovs_env",
    "restart_daemon",
    "start_daemon",
    "start_daemons",
    "stop_daemon",
    "stop_pidfile",
    "tunnel_endpoint",
    "vsctl",
]

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
DAEMONS = ("ovs-vswitchd", "ovsdb-server")  #: in the order they are stopped

#: A hypervisor, or a lab standing for its first one.
Node = Lab | Hypervisor


def host(node: Node) -> Hypervisor:
    """The hypervisor ``node`` stands for."""
    return node.hypervisors[0] if isinstance(node, Lab) else node


def ovs_env(node: Node) -> dict[str, str]:
    """Environment that keeps every OVS tool inside the host's run directory."""
    rd = str(host(node).rundir)
    return {**os.environ, "OVS_RUNDIR": rd, "OVS_LOGDIR": rd, "OVS_DBDIR": rd, "OVS_SYSCONFDIR": rd}


def vsctl(node: Node, *args: str, timeout: float = 15.0) -> str:
    """Run ``ovs-vsctl`` against the host's database (``--timeout`` so it never hangs)."""
    argv = ["ovs-vsctl", f"--db={host(node).ovsdb_remote}", f"--timeout={int(timeout)}", *args]
    return run(argv, env=ovs_env(node), timeout=timeout + 5).stdout


def appctl(node: Node, daemon: str, *args: str) -> str:
    """Run ``ovs-appctl`` against one of the host's daemons."""
    target = str(host(node).rundir / f"{daemon}.ctl")
    argv = ["ovs-appctl", f"--target={target}", "--timeout=10", *args]
    return run(argv, env=ovs_env(node)).stdout


def ofctl(node: Node, *args: str) -> str:
    """Run ``ovs-ofctl`` against a host's bridge (it finds ``<bridge>.mgmt`` in OVS_RUNDIR)."""
    return run(["ovs-ofctl", "--timeout=10", *args], env=ovs_env(node)).stdout


def start_daemons(node: Node) -> None:
    """Create the database and start ovsdb-server, then ovs-vswitchd, in the host's ns."""
    lab = host(node)
    for tool in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl"):
        need(tool, "openvswitch-switch")
    if not SCHEMA.exists():
        raise LabError(f"Open vSwitch schema {SCHEMA} is missing; reinstall openvswitch-switch")
    lab.rundir.mkdir(mode=0o700, parents=True, exist_ok=True)
    run(["ovsdb-tool", "create", str(lab.rundir / "conf.db"), str(SCHEMA)], env=ovs_env(lab))
    start_daemon(lab, "ovsdb-server")
    vsctl(lab, "--no-wait", "init")
    start_daemon(lab, "ovs-vswitchd")


def start_daemon(node: Node, daemon: str) -> None:
    """Start one of :data:`DAEMONS` on the host's existing database; return once it listens."""
    lab = host(node)
    rd = lab.rundir
    common = [
        f"--pidfile={lab.pidfile(daemon)}",
        f"--unixctl={rd / f'{daemon}.ctl'}",
        f"--log-file={rd / f'{daemon}.log'}",
        "--detach",
        "--no-chdir",
    ]
    if daemon == "ovsdb-server":
        argv = ["ovsdb-server", str(rd / "conf.db"), f"--remote=punix:{lab.ovsdb_socket}", *common]
        ready = lab.ovsdb_socket
    elif daemon == "ovs-vswitchd":
        argv = ["ovs-vswitchd", lab.ovsdb_remote, *common, "--disable-system"]
        ready = rd / "ovs-vswitchd.ctl"
    else:
        raise ValueError(f"not a lab daemon: {daemon}")
    run_in(lab.namespace, argv, env=ovs_env(lab))
    _wait_for(ready, daemon)


def restart_daemon(
    lab: Lab, daemon: str, outage: float = 0.0, *, hypervisor: Hypervisor | None = None
) -> None:
    """Stop one of :data:`DAEMONS` by its pidfile, wait ``outage`` seconds, start it again.

    For fault injection (bench/faults.py): the database file survives, so ovsdb-server comes
    back with every row. ovs-vswitchd recreates br-phy's device, which loses the tunnel IP
    and the route/ARP entries the lab gave it: :func:`tunnel_endpoint` puts them back.
    ``hypervisor`` picks the host (default: the first).
    """
    hv = hypervisor or host(lab)
    stop_daemon(hv, daemon)
    if outage > 0:
        time.sleep(outage)
    start_daemon(hv, daemon)
    if daemon == "ovs-vswitchd":
        tunnel_endpoint(lab, hv)


def stop_daemon(node: Node, daemon: str) -> bool:
    """Stop one of :data:`DAEMONS` (by pidfile, command line checked). True if it ran."""
    lab = host(node)
    if daemon not in DAEMONS:
        raise ValueError(f"not a lab daemon: {daemon}")
    stopped = stop_pidfile(lab.pidfile(daemon), [daemon, f"{lab.rundir}/"])
    # Its socket files outlive a stopped daemon; a new one would refuse or a client would
    # hang on them, so wait until they are gone or remove the stale ones.
    for path in (lab.rundir / f"{daemon}.ctl",) + (
        (lab.ovsdb_socket,) if daemon == "ovsdb-server" else ()
    ):
        path.unlink(missing_ok=True)
    return stopped


def tunnel_endpoint(lab: Lab, hypervisor: Hypervisor | None = None) -> None:
    """The tunnel IP on br-phy, and the route and ARP entry to the receiver in vswitchd.

    Userspace tunnels resolve the next hop themselves: give them the route and the ARP
    entry up front instead of waiting for OVS to learn them (FACTS.md). With several
    hosts, every other host's tunnel IP gets the same (for the tunnels between br-ints:
    GRE with ML2/OVS, Geneve with OVN); their br-phy MACs are fixed, so known in advance.
    """
    hv = hypervisor or host(lab)
    ns = hv.namespace
    _wait_device(ns, "br-phy")
    links.set_link(ns, "br-phy", mtu=lab.underlay_mtu)
    if f"{hv.tunnel_ip}/{UNDERLAY_PREFIXLEN}" not in links.link_info(ns, "br-phy")["addresses"]:
        links.add_address(ns, "br-phy", hv.tunnel_ip, UNDERLAY_PREFIXLEN)
    rx_mac = links.link_info(lab.receiver_ns, "eth0")["mac"]
    neighbours = [(RECEIVER_IP, str(rx_mac))]
    if lab.hosts > 1:
        neighbours += [(p.tunnel_ip, p.br_phy_mac) for p in lab.hypervisors if p != hv]
    for address, mac in neighbours:
        appctl(hv, "ovs-vswitchd", "ovs/route/add", f"{address}/32", "br-phy")
        appctl(hv, "ovs-vswitchd", "tnl/arp/set", "br-phy", address, mac)


def _wait_device(namespace: str, name: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            links.link_info(namespace, name)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _wait_for(path: Path, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise LabError(
                f"{what} did not create {path} within {timeout:.0f} s; see its log there"
            )
        time.sleep(0.02)


def daemon_pid(pidfile: Path, expect: Sequence[str]) -> int | None:
    """The pid in ``pidfile`` if that process is alive and its command line holds ``expect``.

    Checking the command line guards against killing an unrelated process that reused
    the pid of a lab daemon that died long ago.
    """
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    if all(word in cmdline for word in expect):
        return pid
    return None


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie no longer runs: this machine's init may not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat.rsplit(") ", 1)[1].startswith("Z")


def stop_pidfile(pidfile: Path, expect: Sequence[str], timeout: float = 5.0) -> bool:
    """Stop the process named by ``pidfile`` (TERM, then KILL). True if one was running."""
    pid = daemon_pid(pidfile, expect)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    # Wait on the pid itself: a daemon may remove its pidfile before it has exited.
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True
