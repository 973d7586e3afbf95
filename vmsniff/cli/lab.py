"""``vmsniff lab``: the sandbox hypervisor (real Open vSwitch in network namespaces)."""

from __future__ import annotations

import shlex
from typing import Any

import click

from vmsniff.cli._context import Env
from vmsniff.errors import UsageError

PREFIX_OPTION = click.option(
    "--prefix",
    default="vmsniff-lab",
    show_default=True,
    envvar="VMSNIFF_LAB_PREFIX",
    help="Names the lab's namespaces and run directory (/run/PREFIX); run several side by side.",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _lab(
    prefix: str,
    underlay_mtu: int | None = None,
    *,
    hosts: int = 1,
    ovn: bool = False,
    extra_vms: int = 0,
) -> Any:
    from vmsniff.lab.topology import DEFAULT_UNDERLAY_MTU, lab_for

    try:
        return lab_for(prefix, underlay_mtu or DEFAULT_UNDERLAY_MTU, hosts=hosts, ovn=ovn,
                       extra_vms=extra_vms)  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _running(prefix: str) -> Any:
    """The lab as `lab up` built it (its hosts and OVN come from its state file)."""
    from vmsniff.lab.status import running_lab

    _lab(prefix)  # validates the prefix
    return running_lab(prefix)


@click.group()
def lab() -> None:
    """A sandbox hypervisor: OVS br-int/br-phy, VMs as namespaces, a GRE receiver.

    Built from real parts (ovsdb-server and ovs-vswitchd with the userspace datapath,
    libvirt test-driver XML) in network namespaces; needs root. The host's own namespace
    gets one device, the management veth to the hypervisor namespace, on which the
    stand-in cloud listens; every address is inside 10.250.0.0/16.
    """


@lab.command()
@PREFIX_OPTION
@click.option(
    "--underlay-mtu",
    type=click.IntRange(1280, 9000),
    default=9000,
    show_default=True,
    help="Tunnel underlay MTU; 1500 reproduces the silent drop of full-size mirrored frames.",
)
@click.option(
    "--hosts",
    type=click.IntRange(1, 8),
    default=1,
    show_default=True,
    help="Hypervisors (compute-1..N, a namespace each with its own OVS); VMs are spread over them.",
)
@click.option(
    "--ovn",
    is_flag=True,
    help="Run the cloud on OVN (NB/SB, ovn-northd, an ovn-controller per host, Geneve) "
    "instead of ML2/OVS.",
)
@click.option(
    "--extra-vms",
    type=click.IntRange(0, 60),
    default=0,
    show_default=True,
    metavar="N",
    help="N more one-NIC VMs (c-extra-1..N, 10.250.1.101..), spread over the hosts after the "
    "three usual ones: for sessions over many VMs.",
)
@JSON_OPTION
@click.pass_obj
def up(
    env: Env, prefix: str, underlay_mtu: int, hosts: int, ovn: bool, extra_vms: int, as_json: bool
) -> None:
    """Build and start the lab."""
    from vmsniff.lab.build import build
    from vmsniff.lab.status import status

    the_lab = _lab(prefix, underlay_mtu, hosts=hosts, ovn=ovn, extra_vms=extra_vms)
    facts = build(the_lab)
    if as_json:
        env.json({**status(the_lab), "up_seconds": facts["seconds"]})
        return
    env.info(f"lab {prefix} is up in {facts['seconds']:.2f} s")
    env.info(f'point vmsniff at it with:  eval "$(vmsniff lab env --prefix {prefix})"')


@lab.command()
@PREFIX_OPTION
@JSON_OPTION
@click.pass_obj
def down(env: Env, prefix: str, as_json: bool) -> None:
    """Stop and remove the lab (idempotent; also cleans up after a crashed `lab up`)."""
    from vmsniff.lab.teardown import teardown

    report = teardown(_lab(prefix))
    if as_json:
        env.json(report)
        return
    if not (
        report["processes_stopped"] or report["namespaces_removed"] or report["rundir_removed"]
    ):
        env.info(f"lab {prefix} was not running; nothing to remove")
        return
    env.info(
        f"lab {prefix} removed: {len(report['processes_stopped'])} processes, "
        f"{len(report['namespaces_removed'])} namespaces, run directory {report['rundir_removed']}"
    )


@lab.command()
@PREFIX_OPTION
@JSON_OPTION
@click.pass_obj
def status(env: Env, prefix: str, as_json: bool) -> None:
    """Show the lab's topology: namespaces, devices, addresses, sockets, pidfiles."""
    from vmsniff.cli._render import lab_status_table
    from vmsniff.lab.status import status as lab_status

    data = lab_status(_running(prefix))
    if as_json:
        env.json(data)
    else:
        lab_status_table(env, data)
        if data["status"] != "absent" and (data["hosts"] > 1 or data["ovn"]):
            _hosts_lines(env, data)
    if data["status"] == "absent":
        raise click.exceptions.Exit(5)


def _hosts_lines(env: Env, data: dict[str, Any]) -> None:
    """Every hypervisor of a multi-host (or OVN) lab, and its VMs, one line each."""
    for hv in data["hypervisors"]:
        vms = ", ".join(vm["name"] for vm in data["vms"] if vm["host"] == hv["host"]) or "-"
        env.out.print(
            f"  {hv['host']}: ns {hv['namespace']}, OVSDB {hv['ovsdb']}, "
            f"tunnel IP {hv['tunnel_ip']}; VMs {vms}"
        )
    if data["ovn"]:
        central = data["ovn_central"]
        env.out.print(f"  OVN: NB {central['nb']}, SB {central['sb']}")
    if data["endpoints_config"]:
        env.out.print(f"  endpoints config {data['endpoints_config']} (VMSNIFF_CONFIG)")


@lab.command("env")
@PREFIX_OPTION
@click.option(
    "--host",
    metavar="NAME",
    help="Which hypervisor's view (compute-2, ...): its OVSDB, libvirt and VMSNIFF_HOST. "
    "Default: compute-1.",
)
@click.pass_obj
def env_command(env: Env, prefix: str, host: str | None) -> None:
    """Print shell exports that point vmsniff, ovs-vsctl and virsh at the lab."""
    from vmsniff.errors import InvalidState
    from vmsniff.lab.build import is_running
    from vmsniff.lab.status import env_vars

    the_lab = _running(prefix)
    if not is_running(the_lab):
        raise InvalidState(f"lab {prefix!r} is not running", hint="start it: vmsniff lab up")
    names = [hv.name for hv in the_lab.hypervisors]
    if host is not None and host not in names:
        raise UsageError(f"lab {prefix!r} has no host {host!r}; its hosts: {', '.join(names)}")
    for key, value in env_vars(the_lab, host).items():
        env.stdout.write(f"export {key}={shlex.quote(value)}\n")


@lab.command()
@PREFIX_OPTION
@click.option("--from", "source", default="c-private", show_default=True, help="Sending VM.")
@click.option("--to", "destination", default="c-native", show_default=True, help="Answering VM.")
@click.option("--from-nic", default="eth0", show_default=True, metavar="DEVICE",
              help="The sending VM's NIC (c-multi has eth0 and eth1).")  # fmt: skip
@click.option("--to-nic", default="eth0", show_default=True, metavar="DEVICE",
              help="The answering VM's NIC.")  # fmt: skip
@click.option(
    "-c", "--count", type=click.IntRange(1, 10000), default=5, show_default=True,
    help="Round trips of each kind (ICMP, UDP, TCP, full-size ICMP).",
)  # fmt: skip
@JSON_OPTION
@click.pass_obj
def traffic(
    env: Env, prefix: str, source: str, destination: str, from_nic: str, to_nic: str, count: int,
    as_json: bool,
) -> None:  # fmt: skip
    """Make known, countable traffic between two lab VMs (ICMP, UDP, TCP, 1500-byte IP)."""
    from vmsniff.cli._render import traffic_table
    from vmsniff.lab.traffic import make_traffic

    result = make_traffic(_running(prefix), source, destination, count, source_nic=from_nic,
                          destination_nic=to_nic)  # fmt: skip
    if as_json:
        env.json(result)
    else:
        traffic_table(env, result)
