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
    Lab,
    LabNic,
    LabVm,
)

__all__ = ["cloud_url", "env_vars", "status"]


def env_vars(lab: Lab) -> dict[str, str]:
    """Environment that points vmsniff (and ovs-vsctl, virsh, openstack) at the lab."""
    env = {
        "VMSNIFF_OVSDB": lab.ovsdb_remote,
        "LIBVIRT_DEFAULT_URI": lab.libvirt_uri,
        "VMSNIFF_HOST": HOST,
    }
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
    try:
        mgmt_up = lab.mgmt_root_ip in str(links.link_info(None, lab.mgmt_root_device)["addresses"])
    except Exception:  # not there (yet, or any more)
        mgmt_up = False
    if not state and not any(namespaces.values()):
        overall = "absent"
    elif (
        state.get("status") == "running"
        and all(namespaces.values())
        and all(daemons[d]["pid"] for d in DAEMONS)
        and mgmt_up
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
        "vms": [_vm(vm) for vm in lab.vms],
        "namespaces": namespaces,
        "env": env_vars(lab),
    }


def _nic(nic: LabNic) -> dict[str, Any]:
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
        "tag": LOCAL_VLAN,
    }


def _vm(vm: LabVm) -> dict[str, Any]:
    return {
        "name": vm.name,
        "server_id": vm.server_id,
        "instance_name": vm.instance_name,
        "namespace": vm.namespace,
        **_nic(vm.primary),
        "nics": [{"device": nic.device, **_nic(nic)} for nic in vm.nics],
    }
