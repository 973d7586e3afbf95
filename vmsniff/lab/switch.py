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

from vmsniff.lab._run import LabError, need, run, run_in
from vmsniff.lab.topology import Lab

__all__ = [
    "DAEMONS",
    "appctl",
    "daemon_pid",
    "ofctl",
    "ovs_env",
    "start_daemons",
    "stop_pidfile",
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
    rd = lab.rundir
    env = ovs_env(lab)
    db = rd / "conf.db"
    if not SCHEMA.exists():
        raise LabError(f"Open vSwitch schema {SCHEMA} is missing; reinstall openvswitch-switch")
    run(["ovsdb-tool", "create", str(db), str(SCHEMA)], env=env)
    run_in(
        lab.hypervisor_ns,
        [
            "ovsdb-server",
            str(db),
            f"--remote=punix:{lab.ovsdb_socket}",
            f"--pidfile={lab.pidfile('ovsdb-server')}",
            f"--unixctl={rd / 'ovsdb-server.ctl'}",
            f"--log-file={rd / 'ovsdb-server.log'}",
            "--detach",
            "--no-chdir",
        ],
        env=env,
    )
    _wait_for(lab.ovsdb_socket, "ovsdb-server")
    vsctl(lab, "--no-wait", "init")
    run_in(
        lab.hypervisor_ns,
        [
            "ovs-vswitchd",
            lab.ovsdb_remote,
            f"--pidfile={lab.pidfile('ovs-vswitchd')}",
            f"--unixctl={rd / 'ovs-vswitchd.ctl'}",
            f"--log-file={rd / 'ovs-vswitchd.log'}",
            "--disable-system",
            "--detach",
            "--no-chdir",
        ],
        env=env,
    )
    _wait_for(rd / "ovs-vswitchd.ctl", "ovs-vswitchd")


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
