"""``lab up``: build the sandbox hypervisor described by :mod:`vmsniff.lab.topology`.

Order matters: the run directory and the state file first (so that ``lab down`` can find
everything even if a later step fails), then namespaces, Open vSwitch, the underlay with
the tunnel IP on br-phy, the VMs plugged the way os-vif plugs them, libvirt XML, the
management network (a veth from the root namespace into the hypervisor's), and the
stand-in cloud (Keystone/Nova/Neutron on the management address) with its clouds.yaml.
On any failure the half-built lab is torn down before the error propagates.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from vmsniff.errors import InvalidState, PermissionDenied
from vmsniff.lab import links
from vmsniff.lab.cloudsetup import start_cloud
from vmsniff.lab.domains import node_xml
from vmsniff.lab.switch import start_daemons, tunnel_endpoint, vsctl
from vmsniff.lab.teardown import teardown
from vmsniff.lab.topology import (
    LOCAL_VLAN,
    MGMT_HV_DEVICE,
    MGMT_PREFIXLEN,
    RECEIVER_IP,
    TENANT_NET,
    TENANT_PREFIXLEN,
    UNDERLAY_PREFIXLEN,
    VM_MTU,
    Lab,
    LabNic,
    LabVm,
    Plug,
)

__all__ = ["build", "is_running"]


def is_running(lab: Lab) -> bool:
    """True if a lab with this prefix exists (its state file or its hypervisor namespace)."""
    return lab.state_file.exists() or lab.hypervisor_ns in links.existing_namespaces()


def build(lab: Lab) -> dict[str, Any]:
    """Build the lab; return timing facts. Raises InvalidState if it already runs."""
    if os.geteuid() != 0:
        raise PermissionDenied(
            "the lab needs root (network namespaces, Open vSwitch)", hint="run it as root"
        )
    if is_running(lab):
        raise InvalidState(
            f"a lab with prefix {lab.prefix!r} is already running (state in {lab.rundir})",
            hint="use it, run `vmsniff lab down` first, or pick another --prefix",
        )
    _check_management_free(lab)
    started = time.monotonic()
    lab.rundir.mkdir(mode=0o700, parents=True, exist_ok=False)
    _write_state(lab, "starting")
    try:
        for ns in (lab.hypervisor_ns, lab.receiver_ns, *(vm.namespace for vm in lab.vms)):
            links.create_namespace(ns)
        start_daemons(lab)
        _bridges(lab)
        _underlay(lab)
        for vm in lab.vms:
            for nic in vm.nics:
                _plug(lab, vm, nic)
            if len(vm.nics) > 1:
                _source_routes(vm)
        lab.libvirt_xml.write_text(node_xml(lab))
        _management(lab)
        start_cloud(lab)
        _wait_ports_up(lab)
    except BaseException:
        teardown(lab)
        raise
    _write_state(lab, "running")
    return {"seconds": round(time.monotonic() - started, 3)}


def _write_state(lab: Lab, status: str) -> None:
    state = {
        "prefix": lab.prefix,
        "status": status,
        "underlay_mtu": lab.underlay_mtu,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = lab.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(lab.state_file)


def _check_management_free(lab: Lab) -> None:
    """Refuse to build when the root namespace already uses the lab's management /30.

    The /30 comes from a hash of the prefix: two prefixes may (rarely) share one, and two
    devices in the root namespace on one subnet would break both labs' routes.
    """
    import ipaddress

    net = ipaddress.ip_network(lab.mgmt_net)
    for device, cidr in links.addresses(None):
        if device == lab.mgmt_root_device or ipaddress.ip_interface(cidr).network.overlaps(net):
            raise InvalidState(
                f"the management network {lab.mgmt_net} of lab {lab.prefix!r} is in use "
                f"in the root namespace ({device} has {cidr})",
                hint="run `vmsniff lab down` for that lab, or pick another --prefix",
            )


def _management(lab: Lab) -> None:
    """The compute node's management NIC: a veth from the root namespace to the hypervisor.

    The stand-in cloud listens on the root end, so the cloud's API is reachable from the
    hypervisor namespace (as on a real compute node) and from the root namespace alike.
    """
    hv, root_dev = lab.hypervisor_ns, lab.mgmt_root_device
    links.veth(None, root_dev, hv, MGMT_HV_DEVICE)
    # No IPv6 on the root end: its router solicitations would only be noise in the lab.
    links.sysctl(None, f"net.ipv6.conf.{root_dev}.disable_ipv6=1")
    links.add_address(None, root_dev, lab.mgmt_root_ip, MGMT_PREFIXLEN)
    links.set_link(None, root_dev)
    links.add_address(hv, MGMT_HV_DEVICE, lab.mgmt_hv_ip, MGMT_PREFIXLEN)
    links.set_link(hv, MGMT_HV_DEVICE)


def _bridges(lab: Lab) -> None:
    # Standalone fail mode: the NORMAL action switches between the VMs' access ports.
    vsctl(
        lab,
        "--", "add-br", "br-int",
        "--", "set", "Bridge", "br-int", "datapath_type=netdev",
        "--", "add-br", "br-phy",
        "--", "set", "Bridge", "br-phy", "datapath_type=netdev",
        "--", "set", "Interface", "br-phy", f"mtu_request={lab.underlay_mtu}",
    )  # fmt: skip


def _underlay(lab: Lab) -> None:
    """phy0 (on br-phy) <-> eth0 of the receiver; the tunnel IP lives on br-phy itself."""
    hv, rx = lab.hypervisor_ns, lab.receiver_ns
    links.veth(hv, "phy0", rx, "eth0")
    links.set_link(hv, "phy0", mtu=lab.underlay_mtu)
    links.set_link(rx, "eth0", mtu=lab.underlay_mtu)
    links.disable_offloads(rx, "eth0")
    links.disable_offloads(hv, "phy0")
    links.add_address(rx, "eth0", RECEIVER_IP, UNDERLAY_PREFIXLEN)
    vsctl(lab, "add-port", "br-phy", "phy0")
    tunnel_endpoint(lab)


def _plug(lab: Lab, vm: LabVm, nic: LabNic) -> None:
    """Plug one NIC the way os-vif does, with the external_ids it sets and the agent's tag."""
    hv, ns, dev = lab.hypervisor_ns, vm.namespace, nic.device
    links.veth(hv, nic.tap, ns, dev)
    links.set_link(ns, dev, mtu=VM_MTU, mac=nic.mac)
    links.disable_offloads(ns, dev)
    links.disable_offloads(hv, nic.tap)
    # A second NIC on the same subnet gets no route in the main table: its traffic leaves
    # through it by source address (_source_routes), the rest through the first NIC.
    links.add_address(ns, dev, nic.address, TENANT_PREFIXLEN, prefix_route=nic is vm.nics[0])
    if nic.plug is Plug.HYBRID:
        assert nic.qbr and nic.qvb
        links.add_bridge(hv, nic.qbr)
        links.set_link(hv, nic.qbr, mtu=VM_MTU)
        links.veth(hv, nic.qvb, hv, nic.ovs_port)
        links.set_link(hv, nic.qvb, mtu=VM_MTU, master=nic.qbr)
        links.set_link(hv, nic.ovs_port, mtu=VM_MTU)
        links.disable_offloads(hv, nic.qvb)
        links.disable_offloads(hv, nic.ovs_port)
        links.set_link(hv, nic.tap, mtu=VM_MTU, master=nic.qbr)
    else:
        links.set_link(hv, nic.tap, mtu=VM_MTU)
    vsctl(
        lab,
        "--", "add-port", "br-int", nic.ovs_port, f"tag={LOCAL_VLAN}",
        "--", "set", "Interface", nic.ovs_port,
        f"external_ids:iface-id={nic.port_id}",
        "external_ids:iface-status=active",
        f"external_ids:attached-mac={nic.mac}",
        f"external_ids:vm-uuid={vm.server_id}",
    )  # fmt: skip


def _source_routes(vm: LabVm) -> None:
    """Make each NIC of a multi-NIC VM carry exactly its own address's traffic.

    Both NICs sit on one subnet, so by default the kernel would answer ARP for either
    address on either NIC and send everything out of one of them ("ARP flux"): arp_ignore=1
    answers only on the NIC holding the address, arp_announce=2 asks with the NIC's own
    address, and a rule per NIC (``from ADDRESS lookup TABLE``) sends what a socket bound to
    that address sends out of that NIC.
    """
    links.sysctl(vm.namespace, "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
    for nic in vm.nics:
        links.source_route(vm.namespace, nic.device, nic.address, TENANT_NET, nic.table)


def _wait_ports_up(lab: Lab, timeout: float = 10.0) -> None:
    """Wait until vswitchd gave every VM port an OpenFlow port number."""
    deadline = time.monotonic() + timeout
    for port in (nic.ovs_port for vm in lab.vms for nic in vm.nics):
        while True:
            ofport = vsctl(lab, "get", "Interface", port, "ofport").strip()
            if ofport.lstrip("-").isdigit() and int(ofport) > 0:
                break
            if time.monotonic() > deadline:
                error = vsctl(lab, "get", "Interface", port, "error").strip()
                raise InvalidState(f"OVS port {port} did not come up: {error}")
            time.sleep(0.05)
