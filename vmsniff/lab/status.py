"""``lab status`` and ``lab env``: what a running lab is made of, as documented data.

The JSON keys are a contract for scripts and tests (docs/lab.md lists them):

- ``prefix``, ``status`` (``running``, ``starting``, ``degraded``, ``absent``), ``rundir``,
  ``ovsdb`` (the OVSDB remote), ``libvirt_uri``, ``host`` (the compute node's name)
- ``hypervisor``: ``namespace``, ``tunnel_ip``, ``bridges``, ``underlay_mtu``, ``daemons``
  (name -> ``pid`` (null when not running) and ``pidfile``)
- ``management``: ``network`` (the /30), ``device`` and ``address`` (root namespace end,
  where the stand-in cloud listens), ``hypervisor_device``, ``hypervisor_address``, ``up``
- ``receiver``: ``namespace``, ``address``, ``device``, ``mac``, ``mtu``
- ``vms``: list of ``name``, ``server_id``, ``instance_name``, ``namespace``, ``address``,
  ``mac``, ``port_id``, ``tap``, ``ovs_port``, ``bridge``, ``plug``, ``qbr``, ``qvb``, ``tag``
  (those of the VM's first NIC) and ``nics``: per NIC, in order, ``device`` (its name inside
  the VM) and the same keys from ``address`` to ``tag``
- ``namespaces``: name -> exists (bool); ``env``: the variables ``lab env`` exports
- ``hosts`` (how many), ``ovn`` (bool), ``hypervisors``: per host ``host``, ``namespace``,
  ``ovsdb``, ``libvirt_uri``, ``tunnel_ip``, ``rundir``, ``management_address``, ``daemons``;
  every VM has a ``host``; ``ovn_central`` (only with ``ovn``): ``nb``, ``sb``,
  ``logical_switch`` and ``daemons``; ``endpoints_config``: the file ``lab env`` names in
  VMSNIFF_CONFIG (null for a one-host ML2/OVS lab, which needs none)

The top-level ``ovsdb``, ``libvirt_uri``, ``host``, ``hypervisor`` and ``management`` keys are
those of the first host (``compute-1``), as they were before labs had several.
"""

from __future__ import annotations

import json
from typing import Any

from vmsniff.lab import links
from vmsniff.lab.switch import DAEMONS, daemon_pid
from vmsniff.lab.teardown import EXTRA_DAEMONS
from vmsniff.lab.topology import (
    HOST,
    LOCAL_VLAN,
    MGMT_HV_DEVICE,
    RECEIVER_IP,
    TUNNEL_IP,
    Hypervisor,
    Lab,
    LabNic,
    LabVm,
    lab_for,
)

__all__ = ["cloud_url", "endpoints_config", "env_vars", "running_lab", "status"]


def running_lab(prefix: str) -> Lab:
    """The lab of ``prefix`` as ``lab up`` built it (hosts, OVN, MTU from its state file).

    A lab with no readable state file is taken for a one-host lab: ``lab down`` finds every
    host anyway (:mod:`vmsniff.lab.teardown`).
    """
    lab = lab_for(prefix)
    try:
        state = json.loads(lab.state_file.read_text())
        return lab_for(
            prefix,
            int(state.get("underlay_mtu", lab.underlay_mtu)),
            hosts=int(state.get("hosts", 1)),
            ovn=bool(state.get("ovn", False)),
            extra_vms=int(state.get("extra_vms", 0)),
        )
    except (OSError, ValueError, TypeError):
        return lab


def endpoints_config(lab: Lab) -> str:
    """vmsniff's config file (TOML) naming each lab host's OVSDB and libvirt.

    Per-host entries (``[hosts."compute-2"]``), which :mod:`vmsniff.resolve.endpoints` uses
    for a VM that Nova places on a host other than this one (VMSNIFF_HOST).
    """
    lines = [
        "# Written by `vmsniff lab up`: where each lab host's OVSDB and libvirt are.",
        f'host = "{HOST}"',
    ]
    for hv in lab.hypervisors:
        lines += [
            "",
            f'[hosts."{hv.name}"]',
            f'ovsdb = "{hv.ovsdb_remote}"',
            f'libvirt = "{hv.libvirt_uri}"',
        ]
    return "\n".join(lines) + "\n"


def env_vars(lab: Lab, host: str | None = None) -> dict[str, str]:
    """Environment that points vmsniff (and ovs-vsctl, virsh, openstack) at the lab, as seen
    from ``host`` (a host name such as ``compute-2``; default the first host)."""
    hv = lab.hypervisor(host) if host else lab.hypervisors[0]
    env = {
        "VMSNIFF_OVSDB": hv.ovsdb_remote,
        "LIBVIRT_DEFAULT_URI": hv.libvirt_uri,
        "VMSNIFF_HOST": hv.name,
    }
    if lab.endpoints_config.exists():
        env["VMSNIFF_CONFIG"] = str(lab.endpoints_config)
    if lab.ovn:
        env["OVN_NB_DB"] = lab.ovn_nb_remote
        env["OVN_SB_DB"] = lab.ovn_sb_remote
    clouds = lab.rundir / "clouds.yaml"
    if clouds.exists():
        env["OS_CLIENT_CONFIG_FILE"] = str(clouds)
        env["OS_CLOUD"] = "vmsniff-lab"
        port_file = lab.rundir / "cloud.port"
        if port_file.exists():
            env["VMSNIFF_LAB_CLOUD_URL"] = cloud_url(lab, port_file.read_text().strip())
    return env


def cloud_url(lab: Lab, port: str) -> str:
    """The stand-in cloud's base URL: the management address, reachable from both sides."""
    return f"http://{lab.mgmt_root_ip}:{port}"


def status(lab: Lab) -> dict[str, Any]:
    """The lab's topology and health, as the documented dict."""
    existing = links.existing_namespaces()
    namespaces = {ns: ns in existing for ns in lab.namespaces}
    state: dict[str, Any] = {}
    if lab.state_file.exists():
        try:
            state = json.loads(lab.state_file.read_text())
        except (OSError, ValueError):
            state = {"status": "degraded"}
    underlay_mtu = int(state.get("underlay_mtu", lab.underlay_mtu))
    daemons = {}
    rundir = f"{lab.rundir}/"
    for name in (*DAEMONS, *EXTRA_DAEMONS):
        word = EXTRA_DAEMONS.get(name, name)
        pidfile = lab.pidfile(name)
        daemons[name] = {"pid": daemon_pid(pidfile, [word, rundir]), "pidfile": str(pidfile)}
    hypervisors = [_hypervisor(hv, rundir) for hv in lab.hypervisors]
    mgmt_up = hypervisors[0]["management_up"]
    ovn_central: dict[str, Any] | None = None
    healthy = all(h["management_up"] for h in hypervisors) and all(
        info["pid"] for h in hypervisors for info in h["daemons"].values()
    )
    if lab.ovn:
        from vmsniff.lab.ovn import CENTRAL, central_pidfile

        central = {
            name: {
                "pid": daemon_pid(central_pidfile(lab, name), [word, rundir]),
                "pidfile": str(central_pidfile(lab, name)),
            }
            for name, word in CENTRAL.items()
        }
        ovn_central = {
            "nb": lab.ovn_nb_remote,
            "sb": lab.ovn_sb_remote,
            "logical_switch": lab.logical_switch,
            "daemons": central,
        }
        healthy = healthy and all(info["pid"] for info in central.values())
    if not state and not any(namespaces.values()):
        overall = "absent"
    elif (
        state.get("status") == "running"
        and all(namespaces.values())
        and all(daemons[d]["pid"] for d in DAEMONS)
        and healthy
    ):
        overall = "running"
    else:
        overall = state.get("status", "degraded")
        if overall == "running":
            overall = "degraded"
    receiver: dict[str, Any] = {
        "namespace": lab.receiver_ns,
        "address": RECEIVER_IP,
        "device": "eth0",
    }
    if namespaces[lab.receiver_ns]:
        try:
            info = links.link_info(lab.receiver_ns, "eth0")
            receiver.update(mac=info["mac"], mtu=info["mtu"])
        except Exception:  # a half-built lab: report what there is
            pass
    return {
        "prefix": lab.prefix,
        "status": overall,
        "created": state.get("created"),
        "rundir": str(lab.rundir),
        "ovsdb": lab.ovsdb_remote,
        "libvirt_uri": lab.libvirt_uri,
        "host": HOST,
        "hypervisor": {
            "namespace": lab.hypervisor_ns,
            "tunnel_ip": TUNNEL_IP,
            "bridges": ["br-int", "br-phy"],
            "underlay_device": "phy0",
            "underlay_mtu": underlay_mtu,
            "daemons": daemons,
        },
        "management": {
            "network": lab.mgmt_net,
            "device": lab.mgmt_root_device,
            "address": lab.mgmt_root_ip,
            "hypervisor_device": MGMT_HV_DEVICE,
            "hypervisor_address": lab.mgmt_hv_ip,
            "up": mgmt_up,
        },
        "receiver": receiver,
        "vms": [_vm(lab, vm) for vm in lab.vms],
        "namespaces": namespaces,
        "env": env_vars(lab),
        "hosts": lab.hosts,
        "ovn": lab.ovn,
        "extra_vms": lab.extra_vms,
        "hypervisors": hypervisors,
        **({"ovn_central": ovn_central} if ovn_central is not None else {}),
        "endpoints_config": (str(lab.endpoints_config) if lab.hosts > 1 or lab.ovn else None),
    }


def _hypervisor(hv: Hypervisor, rundir: str) -> dict[str, Any]:
    daemons = {}
    for name in DAEMONS:
        pidfile = hv.pidfile(name)
        daemons[name] = {"pid": daemon_pid(pidfile, [name, rundir]), "pidfile": str(pidfile)}
    try:
        up = hv.mgmt_root_ip in str(links.link_info(None, hv.mgmt_root_device)["addresses"])
    except Exception:  # not there (yet, or any more)
        up = False
    return {
        "host": hv.name,
        "namespace": hv.namespace,
        "ovsdb": hv.ovsdb_remote,
        "libvirt_uri": hv.libvirt_uri,
        "tunnel_ip": hv.tunnel_ip,
        "rundir": str(hv.rundir),
        "management_address": hv.mgmt_hv_ip,
        "management_up": up,
        "daemons": daemons,
    }


def _nic(lab: Lab, nic: LabNic) -> dict[str, Any]:
    return {
        "address": nic.address,
        "mac": nic.mac,
        "port_id": nic.port_id,
        "tap": nic.tap,
        "ovs_port": nic.ovs_port,
        "bridge": "br-int",
        "plug": nic.plug.value,
        "qbr": nic.qbr,
        "qvb": nic.qvb,
        "tag": None if lab.ovn else LOCAL_VLAN,
    }


def _vm(lab: Lab, vm: LabVm) -> dict[str, Any]:
    return {
        "name": vm.name,
        "host": lab.host_of(vm).name,
        "server_id": vm.server_id,
        "instance_name": vm.instance_name,
        "namespace": vm.namespace,
        **_nic(lab, vm.primary),
        "nics": [{"device": nic.device, **_nic(lab, nic)} for nic in vm.nics],
    }
