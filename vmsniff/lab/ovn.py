"""The lab on OVN: Debian's real ovn-central and ovn-host (23.03) in the lab's namespaces.

Central: the NB and SB databases are plain ovsdb-servers on OVN's schemas, ``ovn-northd``
joins them; all three run in the first hypervisor's namespace with their files in
``/run/PREFIX/ovn`` (unix sockets, so every chassis reaches them through the filesystem).
Each hypervisor is a chassis: its ``Open_vSwitch`` row names the SB remote, its system-id
(the host name), Geneve as encapsulation on its tunnel IP, and the netdev datapath; then
``ovn-controller`` runs there with ``OVN_RUNDIR`` set to the host's run directory (it
refuses ``--unixctl`` and would otherwise use /var/run/ovn; FACTS.md, OVN 23.03).

The stand-in Neutron's network is a logical switch ``neutron-NETWORK_ID`` and each of its
ports a logical switch port named by the port id with the port's MAC and IP, as
networking-ovn makes them; the tap on br-int carries ``external_ids:iface-id`` = port id,
which is how ovn-controller binds the port to its chassis.
"""

from __future__ import annotations

import time
from pathlib import Path

from vmsniff.errors import InvalidState
from vmsniff.lab._run import LabError, need, run, run_in
from vmsniff.lab.switch import daemon_pid, ovs_env, stop_pidfile, vsctl
from vmsniff.lab.topology import MAX_HOSTS, Hypervisor, Lab

__all__ = [
    "CENTRAL",
    "central_pidfile",
    "controller_pidfile",
    "nbctl",
    "ovn_daemons",
    "sbctl",
    "start_central",
    "start_controller",
    "stop_ovn",
    "logical_ports",
    "wait_bound",
]

SCHEMAS = Path("/usr/share/ovn")
#: Central daemons (pidfile name -> what their command line holds), in the order stopped.
CENTRAL = {"ovn-northd": "ovn-northd", "ovnsb-server": "ovnsb_db", "ovnnb-server": "ovnnb_db"}


def _env(node: Lab | Hypervisor, rundir: Path) -> dict[str, str]:
    # OVS_RUNDIR too: ovn-controller finds its chassis's br-int.mgmt there, and with
    # another host's it would program that host's bridge instead of its own.
    rd = str(rundir)
    return {**ovs_env(node), "OVN_RUNDIR": rd, "OVN_LOGDIR": rd, "OVN_DBDIR": rd}


def central_pidfile(lab: Lab, name: str) -> Path:
    return lab.ovn_rundir / f"{name}.pid"


def controller_pidfile(hv: Hypervisor) -> Path:
    return hv.pidfile("ovn-controller")


def nbctl(lab: Lab, *args: str) -> str:
    """Run ``ovn-nbctl`` against the lab's NB database."""
    argv = ["ovn-nbctl", f"--db={lab.ovn_nb_remote}", "--timeout=15", *args]
    return run(argv, env=_env(lab, lab.ovn_rundir)).stdout


def sbctl(lab: Lab, *args: str) -> str:
    """Run ``ovn-sbctl`` against the lab's SB database."""
    argv = ["ovn-sbctl", f"--db={lab.ovn_sb_remote}", "--timeout=15", *args]
    return run(argv, env=_env(lab, lab.ovn_rundir)).stdout


def _wait_for(path: Path, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise LabError(f"{what} did not create {path} within {timeout:.0f} s; see its log")
        time.sleep(0.02)


def start_central(lab: Lab) -> None:
    """Create NB and SB, start their ovsdb-servers and ovn-northd (first hypervisor's ns)."""
    for tool in ("ovn-northd", "ovn-nbctl", "ovn-sbctl"):
        need(tool, "ovn-central")
    rd = lab.ovn_rundir
    rd.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = _env(lab, rd)
    ns = lab.hypervisor_ns
    for db, name in (("nb", "ovnnb-server"), ("sb", "ovnsb-server")):
        schema = SCHEMAS / f"ovn-{db}.ovsschema"
        if not schema.exists():
            raise LabError(f"OVN schema {schema} is missing; reinstall ovn-common")
        run(["ovsdb-tool", "create", str(rd / f"ovn{db}_db.db"), str(schema)], env=env)
        sock = rd / f"ovn{db}_db.sock"
        run_in(ns, [
            "ovsdb-server", str(rd / f"ovn{db}_db.db"), f"--remote=punix:{sock}",
            f"--pidfile={central_pidfile(lab, name)}", f"--unixctl={rd / f'{name}.ctl'}",
            f"--log-file={rd / f'{name}.log'}", "--detach", "--no-chdir",
        ], env=env)  # fmt: skip
        _wait_for(sock, f"the OVN {db.upper()} ovsdb-server")
    run_in(ns, [
        "ovn-northd", f"--ovnnb-db={lab.ovn_nb_remote}", f"--ovnsb-db={lab.ovn_sb_remote}",
        f"--pidfile={central_pidfile(lab, 'ovn-northd')}", f"--unixctl={rd / 'ovn-northd.ctl'}",
        f"--log-file={rd / 'ovn-northd.log'}", "--detach", "--no-chdir",
    ], env=env)  # fmt: skip
    _wait_for(rd / "ovn-northd.ctl", "ovn-northd")


def start_controller(lab: Lab, hv: Hypervisor) -> None:
    """Make ``hv`` an OVN chassis: its Open_vSwitch external_ids, then ovn-controller."""
    need("ovn-controller", "ovn-host")
    vsctl(
        hv, "set", "Open_vSwitch", ".",
        f"external_ids:system-id={hv.name}",
        f"external_ids:hostname={hv.name}",
        f"external_ids:ovn-remote={lab.ovn_sb_remote}",
        "external_ids:ovn-encap-type=geneve",
        f"external_ids:ovn-encap-ip={hv.tunnel_ip}",
        "external_ids:ovn-bridge-datapath-type=netdev",
    )  # fmt: skip
    run_in(hv.namespace, [
        "ovn-controller", hv.ovsdb_remote, f"--pidfile={controller_pidfile(hv)}",
        f"--log-file={hv.rundir / 'ovn-controller.log'}", "--detach", "--no-chdir",
    ], env=_env(hv, hv.rundir))  # fmt: skip
    _wait_for(controller_pidfile(hv), "ovn-controller")


def logical_ports(lab: Lab) -> None:
    """The tenant network as a logical switch, each VM NIC as a logical switch port."""
    cmds = ["--may-exist", "ls-add", lab.logical_switch]
    for vm in lab.vms:
        for nic in vm.nics:
            addresses = f"{nic.mac} {nic.address}"
            cmds += ["--", "lsp-add", lab.logical_switch, nic.port_id,
                     "--", "lsp-set-addresses", nic.port_id, addresses]  # fmt: skip
    nbctl(lab, *cmds)


def wait_bound(lab: Lab, timeout: float = 30.0) -> None:
    """Wait until every VM port is bound on its chassis and ovn-controller installed its flows.

    ovn-controller marks an Interface ``external_ids:ovn-installed="true"`` once the port's
    flows are in br-int; before that, traffic would be dropped.
    """
    deadline = time.monotonic() + timeout
    for vm in lab.vms:
        hv = lab.host_of(vm)
        for nic in vm.nics:
            while True:
                ids = vsctl(hv, "get", "Interface", nic.ovs_port, "external_ids")
                if 'ovn-installed="true"' in ids:
                    break
                if time.monotonic() > deadline:
                    raise InvalidState(
                        f"OVN did not bind port {nic.port_id} ({vm.name}) on {hv.name} within "
                        f"{timeout:.0f} s",
                        hint=f"see {hv.rundir}/ovn-controller.log and {lab.ovn_rundir}",
                    )
                time.sleep(0.1)


def ovn_daemons(lab: Lab) -> dict[str, dict[str, object]]:
    """Every OVN process of a running lab: name -> ``pid`` (null when not running), pidfile."""
    out: dict[str, dict[str, object]] = {}
    rundir = f"{lab.rundir}/"
    for name, word in CENTRAL.items():
        pidfile = central_pidfile(lab, name)
        out[name] = {"pid": daemon_pid(pidfile, [word, rundir]), "pidfile": str(pidfile)}
    for hv in lab.hypervisors:
        pidfile = controller_pidfile(hv)
        out[f"ovn-controller/{hv.name}"] = {
            "pid": daemon_pid(pidfile, ["ovn-controller", rundir]),
            "pidfile": str(pidfile),
        }
    return out


def stop_ovn(lab: Lab) -> list[str]:
    """Stop every OVN process a lab of this prefix may have (any --hosts); names of those that
    ran. Controllers first, so that none of them races a vanishing SB."""
    stopped: list[str] = []
    rundir = f"{lab.rundir}/"
    for n in range(1, MAX_HOSTS + 1):
        hv = Hypervisor(lab.prefix, n)
        if stop_pidfile(controller_pidfile(hv), ["ovn-controller", rundir]):
            stopped.append(f"ovn-controller/{hv.name}")
    for name, word in CENTRAL.items():
        if stop_pidfile(central_pidfile(lab, name), [word, rundir]):
            stopped.append(name)
    return stopped
