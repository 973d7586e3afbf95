"""The lab's Open vSwitch: a real ovsdb-server and ovs-vswitchd with the userspace datapath.

Both daemons run inside the hypervisor namespace with their own run directory, pidfiles
and unixctl sockets (FACTS.md: without OVS_RUNDIR vswitchd binds the host's
/var/run/openvswitch), ``--disable-system`` keeps vswitchd off the kernel datapath this
kernel lacks, and every bridge uses ``datapath_type=netdev``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from vmsniff.lab import links
from vmsniff.lab._run import LabError, need, run, run_in
from vmsniff.lab.topology import RECEIVER_IP, TUNNEL_IP, UNDERLAY_PREFIXLEN, Lab

__all__ = [
    "DAEMONS",
    "appctl",
    "daemon_pid",
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


def ovs_env(lab: Lab) -> dict[str, str]:
    """Environment that keeps every OVS tool inside the lab's run directory."""
    rd = str(lab.rundir)
    return {**os.environ, "OVS_RUNDIR": rd, "OVS_LOGDIR": rd, "OVS_DBDIR": rd, "OVS_SYSCONFDIR": rd}


def vsctl(lab: Lab, *args: str, timeout: float = 15.0) -> str:
    """Run ``ovs-vsctl`` against the lab's database (``--timeout`` so it never hangs)."""
    argv = ["ovs-vsctl", f"--db={lab.ovsdb_remote}", f"--timeout={int(timeout)}", *args]
    return run(argv, env=ovs_env(lab), timeout=timeout + 5).stdout


def appctl(lab: Lab, daemon: str, *args: str) -> str:
    """Run ``ovs-appctl`` against one of the lab's daemons."""
    target = str(lab.rundir / f"{daemon}.ctl")
    return run(["ovs-appctl", f"--target={target}", "--timeout=10", *args], env=ovs_env(lab)).stdout


def ofctl(lab: Lab, *args: str) -> str:
    """Run ``ovs-ofctl`` against a lab bridge (it finds ``<bridge>.mgmt`` in OVS_RUNDIR)."""
    return run(["ovs-ofctl", "--timeout=10", *args], env=ovs_env(lab)).stdout


def start_daemons(lab: Lab) -> None:
    """Create the database and start ovsdb-server, then ovs-vswitchd, in the hypervisor ns."""
    for tool in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl"):
        need(tool, "openvswitch-switch")
    if not SCHEMA.exists():
        raise LabError(f"Open vSwitch schema {SCHEMA} is missing; reinstall openvswitch-switch")
    run(["ovsdb-tool", "create", str(lab.rundir / "conf.db"), str(SCHEMA)], env=ovs_env(lab))
    start_daemon(lab, "ovsdb-server")
    vsctl(lab, "--no-wait", "init")
    start_daemon(lab, "ovs-vswitchd")


def start_daemon(lab: Lab, daemon: str) -> None:
    """Start one of :data:`DAEMONS` on the lab's existing database; return once it listens."""
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
    run_in(lab.hypervisor_ns, argv, env=ovs_env(lab))
    _wait_for(ready, daemon)


def restart_daemon(lab: Lab, daemon: str, outage: float = 0.0) -> None:
    """Stop one of :data:`DAEMONS` by its pidfile, wait ``outage`` seconds, start it again.

    For fault injection (bench/faults.py): the database file survives, so ovsdb-server comes
    back with every row. ovs-vswitchd recreates br-phy's device, which loses the tunnel IP
    and the route/ARP entries the lab gave it: :func:`tunnel_endpoint` puts them back.
    """
    stop_daemon(lab, daemon)
    if outage > 0:
        time.sleep(outage)
    start_daemon(lab, daemon)
    if daemon == "ovs-vswitchd":
        tunnel_endpoint(lab)


def stop_daemon(lab: Lab, daemon: str) -> bool:
    """Stop one of :data:`DAEMONS` (by pidfile, command line checked). True if it ran."""
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


def tunnel_endpoint(lab: Lab) -> None:
    """The tunnel IP on br-phy, and the route and ARP entry to the receiver in vswitchd.

    Userspace tunnels resolve the next hop themselves: give them the route and the ARP
    entry up front instead of waiting for OVS to learn them (FACTS.md).
    """
    hv = lab.hypervisor_ns
    _wait_device(hv, "br-phy")
    links.set_link(hv, "br-phy", mtu=lab.underlay_mtu)
    if f"{TUNNEL_IP}/{UNDERLAY_PREFIXLEN}" not in links.link_info(hv, "br-phy")["addresses"]:
        links.add_address(hv, "br-phy", TUNNEL_IP, UNDERLAY_PREFIXLEN)
    rx_mac = links.link_info(lab.receiver_ns, "eth0")["mac"]
    appctl(lab, "ovs-vswitchd", "ovs/route/add", f"{RECEIVER_IP}/32", "br-phy")
    appctl(lab, "ovs-vswitchd", "tnl/arp/set", "br-phy", RECEIVER_IP, str(rx_mac))


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
