"""``lab up``: build the sandbox hypervisor described by :mod:`vmsniff.lab.topology`.

Order matters: the run directory and the state file first (so that ``lab down`` can find
everything even if a later step fails), then namespaces, Open vSwitch, the underlay with
the tunnel IP on br-phy, the VMs plugged the way os-vif plugs them, libvirt XML, the
management network (a veth from the root namespace into the hypervisor's), and the
stand-in cloud (Keystone/Nova/Neutron on the management address) with its clouds.yaml.
On any failure the half-built lab is torn down before the error propagates.

With ``--hosts N`` each hypervisor gets its own daemons, br-int/br-phy and management veth,
the underlay becomes a Linux bridge in PREFIX-ul joining every br-phy and the receiver,
and (ML2/OVS) compute-1's br-int has a GRE port to each other host's (a star: no loop for
the NORMAL action to flood around), so VMs on different hosts reach each other as over
Neutron's tunnel network. With ``--ovn`` OVN's daemons program br-int instead (Geneve
between the chassis), see :mod:`vmsniff.lab.ovn`. A file ``/run/PREFIX/vmsniff.toml``
names every host's OVSDB and libvirt for ``vmsniff resolve`` (``lab env`` points
VMSNIFF_CONFIG at it).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from vmsniff.errors import InvalidState, PermissionDenied
from vmsniff.lab import links, ovn
from vmsniff.lab._run import run_in
from vmsniff.lab.cloudsetup import start_cloud
from vmsniff.lab.domains import node_xml
from vmsniff.lab.status import endpoints_config
from vmsniff.lab.switch import start_daemons, tunnel_endpoint, vsctl
from vmsniff.lab.teardown import teardown
from vmsniff.lab.topology import (
    LOCAL_VLAN,
    MGMT_HV_DEVICE,
    MGMT_PREFIXLEN,
    RECEIVER_IP,
    TENANT_NET,
    TENANT_PREFIXLEN,
    UNDERLAY_BRIDGE,
    UNDERLAY_PREFIXLEN,
    VM_MTU,
    Hypervisor,
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
        for ns in lab.namespaces:
            links.create_namespace(ns)
        for hv in lab.hypervisors:
            start_daemons(hv)
            _bridges(lab, hv)
        _underlay(lab)
        if lab.ovn:
            ovn.start_central(lab)
            for hv in lab.hypervisors:
                ovn.start_controller(lab, hv)
        elif lab.hosts > 1:
            _host_tunnels(lab)
        for vm in lab.vms:
            for nic in vm.nics:
                _plug(lab, vm, nic)
            if len(vm.nics) > 1:
                _source_routes(vm)
        if lab.ovn:
            ovn.logical_ports(lab)
        for hv in lab.hypervisors:
            hv.libvirt_xml.write_text(node_xml(lab, hv))
            _management(lab, hv)
        if lab.hosts > 1 or lab.ovn:
            lab.endpoints_config.write_text(endpoints_config(lab))
        start_cloud(lab)
        _wait_ports_up(lab)
        if lab.ovn:
            ovn.wait_bound(lab)
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
        "hosts": lab.hosts,
        "ovn": lab.ovn,
        "extra_vms": lab.extra_vms,
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

    nets = [(hv, ipaddress.ip_network(hv.mgmt_net)) for hv in lab.hypervisors]
    for device, cidr in links.addresses(None):
        for hv, net in nets:
            if device == hv.mgmt_root_device or ipaddress.ip_interface(cidr).network.overlaps(net):
                raise InvalidState(
                    f"the management network {hv.mgmt_net} of lab {lab.prefix!r} is in use "
                    f"in the root namespace ({device} has {cidr})",
                    hint="run `vmsniff lab down` for that lab, or pick another --prefix",
                )


def _management(lab: Lab, hyp: Hypervisor) -> None:
    """The compute node's management NIC: a veth from the root namespace to the hypervisor.

    The stand-in cloud listens on the root end of the first host's, so the cloud's API is
    reachable from the hypervisor namespace (as on a real compute node) and from the root
    namespace alike. Another host reaches that address through its own veth: the root
    namespace accepts a packet for any of its addresses on any of its devices.
    """
    hv, root_dev = hyp.namespace, hyp.mgmt_root_device
    links.veth(None, root_dev, hv, MGMT_HV_DEVICE)
    # No IPv6 on the root end: its router solicitations would only be noise in the lab.
    links.sysctl(None, f"net.ipv6.conf.{root_dev}.disable_ipv6=1")
    links.add_address(None, root_dev, hyp.mgmt_root_ip, MGMT_PREFIXLEN)
    links.set_link(None, root_dev)
    links.add_address(hv, MGMT_HV_DEVICE, hyp.mgmt_hv_ip, MGMT_PREFIXLEN)
    links.set_link(hv, MGMT_HV_DEVICE)
    if hyp.number > 1:
        links.add_route(hv, f"{lab.mgmt_root_ip}/32", hyp.mgmt_root_ip)


def _bridges(lab: Lab, hv: Hypervisor) -> None:
    # ML2/OVS: standalone fail mode, the NORMAL action switches between the VMs' access
    # ports. OVN: secure, ovn-controller's flows decide everything (as ovn-controller
    # itself would create br-int).
    int_mode = ["fail_mode=secure", "other_config:disable-in-band=true"] if lab.ovn else []
    # A multi-host underlay: br-phy's MAC is fixed, so that peers' ARP entries are known.
    phy_mac = [f"other_config:hwaddr={hv.br_phy_mac}"] if lab.hosts > 1 else []
    vsctl(
        hv,
        "--", "add-br", "br-int",
        "--", "set", "Bridge", "br-int", "datapath_type=netdev", *int_mode,
        "--", "add-br", "br-phy",
        "--", "set", "Bridge", "br-phy", "datapath_type=netdev", *phy_mac,
        "--", "set", "Interface", "br-phy", f"mtu_request={lab.underlay_mtu}",
    )  # fmt: skip


def _underlay(lab: Lab) -> None:
    """phy0 (on br-phy) <-> eth0 of the receiver; the tunnel IP lives on br-phy itself.

    Several hosts: each phy0 and the receiver's eth0 meet on a Linux bridge in PREFIX-ul,
    with static forwarding entries for every br-phy and the receiver, so that the bridge
    never floods one host's tunnel traffic to the receiver while it has not learnt yet.
    """
    rx = lab.receiver_ns
    if lab.shared_underlay:
        ul = lab.underlay_ns
        links.add_bridge(ul, UNDERLAY_BRIDGE)
        links.set_link(ul, UNDERLAY_BRIDGE, mtu=lab.underlay_mtu)
        ends = [(rx, "eth0", "rx", None)] + [
            (hv.namespace, "phy0", hv.underlay_port, hv.br_phy_mac) for hv in lab.hypervisors
        ]
        for ns, dev, port, _ in ends:
            links.veth(ns, dev, ul, port)
            links.set_link(ul, port, mtu=lab.underlay_mtu, master=UNDERLAY_BRIDGE)
            links.disable_offloads(ul, port)
    else:
        links.veth(lab.hypervisor_ns, "phy0", rx, "eth0")
    links.set_link(rx, "eth0", mtu=lab.underlay_mtu)
    links.disable_offloads(rx, "eth0")
    links.add_address(rx, "eth0", RECEIVER_IP, UNDERLAY_PREFIXLEN)
    for hv in lab.hypervisors:
        links.set_link(hv.namespace, "phy0", mtu=lab.underlay_mtu)
        links.disable_offloads(hv.namespace, "phy0")
        vsctl(hv, "add-port", "br-phy", "phy0")
        tunnel_endpoint(lab, hv)
    if lab.shared_underlay:
        rx_mac = str(links.link_info(rx, "eth0")["mac"])
        for _ns, _, port, mac in ends:
            run_in(lab.underlay_ns, ["bridge", "fdb", "replace", mac or rx_mac, "dev", port,
                                     "master", "static"])  # fmt: skip


def _host_tunnels(lab: Lab) -> None:
    """GRE between compute-1's br-int and each other host's, as Neutron's tunnel network.

    A star, not a mesh: the NORMAL action floods broadcasts to every port, so a loop of
    tunnels would circulate them forever. The tenant frames keep their local VLAN tag
    inside GRE (the tunnel ports are trunks), which is the same tag on every host.
    """
    hub = lab.hypervisors[0]
    for spoke in lab.hypervisors[1:]:
        for here, there in ((hub, spoke), (spoke, hub)):
            port = f"gre-{there.name}"
            vsctl(here, "--", "add-port", "br-int", port,
                  "--", "set", "Interface", port, "type=gre",
                  f"options:remote_ip={there.tunnel_ip}")  # fmt: skip


def _plug(lab: Lab, vm: LabVm, nic: LabNic) -> None:
    """Plug one NIC the way os-vif does, with the external_ids it sets and the agent's tag
    (ML2/OVS; with OVN there is no tag: ovn-controller finds the port by its iface-id)."""
    host = lab.host_of(vm)
    hv, ns, dev = host.namespace, vm.namespace, nic.device
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
    tag = [] if lab.ovn else [f"tag={LOCAL_VLAN}"]
    vsctl(
        host,
        "--", "add-port", "br-int", nic.ovs_port, *tag,
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
    for hv, port in ((lab.host_of(vm), nic.ovs_port) for vm in lab.vms for nic in vm.nics):
        while True:
            ofport = vsctl(hv, "get", "Interface", port, "ofport").strip()
            if ofport.lstrip("-").isdigit() and int(ofport) > 0:
                break
            if time.monotonic() > deadline:
                error = vsctl(hv, "get", "Interface", port, "error").strip()
                raise InvalidState(f"OVS port {port} did not come up: {error}")
            time.sleep(0.05)
