"""A lab with several hypervisors (and OVN) as data: names, addresses, where each VM runs."""

from __future__ import annotations

import hashlib
import ipaddress
import tomllib
import xml.etree.ElementTree as ET

import pytest

from vmsniff.lab.cloudsetup import lab_inventory
from vmsniff.lab.domains import node_xml
from vmsniff.lab.status import endpoints_config, env_vars
from vmsniff.lab.topology import (
    MAX_HOSTS,
    RECEIVER_IP,
    TUNNEL_IP,
    UNDERLAY_NET,
    Plug,
    lab_for,
)
from vmsniff.resolve.endpoints import endpoints_for


def test_the_one_host_lab_keeps_every_name_it_had() -> None:
    lab = lab_for("vmsniff-lab")
    (hv,) = lab.hypervisors
    assert (hv.name, hv.namespace, hv.rundir) == ("compute-1", lab.hypervisor_ns, lab.rundir)
    assert (hv.ovsdb_remote, hv.libvirt_uri, hv.tunnel_ip) == (
        lab.ovsdb_remote,
        lab.libvirt_uri,
        TUNNEL_IP,
    )
    # The management /30 and device come from the same hash as before labs had hosts.
    digest = hashlib.sha256(b"vmsniff-lab-mgmt/vmsniff-lab").digest()
    index = int.from_bytes(digest[:4], "big") % 8192  # /30s in a /17
    base = ipaddress.ip_network("10.250.128.0/17").network_address + (index << 2)
    assert lab.mgmt_net == f"{base}/30"
    assert lab.mgmt_root_device == "vmlab" + digest[4:9].hex()[:10]
    assert lab.namespaces == [vm.namespace for vm in lab.vms] + [
        "vmsniff-lab-hv",
        "vmsniff-lab-rx",
    ]
    assert not lab.shared_underlay
    assert {lab.host_of(vm).name for vm in lab.vms} == {"compute-1"}


def test_hosts_have_their_own_names_addresses_and_management_networks() -> None:
    lab = lab_for("lab-h", hosts=MAX_HOSTS)
    hvs = lab.hypervisors
    assert [hv.name for hv in hvs] == [f"compute-{n}" for n in range(1, MAX_HOSTS + 1)]
    for attr in ("namespace", "rundir", "ovsdb_remote", "libvirt_uri", "tunnel_ip", "mgmt_net",
                 "mgmt_root_device", "br_phy_mac", "underlay_port"):  # fmt: skip
        values = [getattr(hv, attr) for hv in hvs]
        assert len(set(values)) == len(values), attr
    underlay = ipaddress.ip_network(UNDERLAY_NET)
    for hv in hvs:
        assert ipaddress.ip_address(hv.tunnel_ip) in underlay
        assert hv.tunnel_ip != RECEIVER_IP
        assert len(hv.mgmt_root_device) <= 15 and len(hv.namespace) <= 40
        assert hv.rundir == lab.rundir or hv.rundir.parent == lab.rundir
    nets = [ipaddress.ip_network(hv.mgmt_net) for hv in hvs]
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    assert lab.underlay_ns in lab.namespaces and lab.shared_underlay
    assert set(lab.namespaces) <= set(lab_for("lab-h").possible_namespaces)


def test_vms_are_dealt_out_over_the_hosts() -> None:
    lab = lab_for("lab-h", hosts=2)
    assert {vm.name: lab.host_of(vm).name for vm in lab.vms} == {
        "c-private": "compute-1",
        "c-native": "compute-2",
        "c-multi": "compute-1",
    }
    assert [vm.name for vm in lab.vms_on(lab.hypervisor("compute-2"))] == ["c-native"]
    with pytest.raises(KeyError):
        lab.hypervisor("compute-3")


@pytest.mark.parametrize("hosts", [0, MAX_HOSTS + 1])
def test_a_host_count_out_of_range_is_refused(hosts: int) -> None:
    with pytest.raises(ValueError, match="hosts"):
        lab_for("lab-h", hosts=hosts)


def test_ovn_plugs_every_nic_straight_into_br_int() -> None:
    classic, ovn = lab_for("lab-o", hosts=2), lab_for("lab-o", hosts=2, ovn=True)
    assert {n.plug for vm in ovn.vms for n in vm.nics} == {Plug.OVS}
    assert Plug.HYBRID in {n.plug for vm in classic.vms for n in vm.nics}
    # Same ports, MACs and addresses: only the plug differs.
    for a, b in zip(classic.vms, ovn.vms, strict=True):
        assert [(n.port_id, n.mac, n.address) for n in a.nics] == [
            (n.port_id, n.mac, n.address) for n in b.nics
        ]
    assert ovn.logical_switch == f"neutron-{ovn.network_id}"
    assert ovn.ovn_nb_remote.startswith(f"unix:{ovn.rundir}/")


def test_nova_reports_each_vms_host_and_libvirt_xml_is_per_host() -> None:
    lab = lab_for("lab-h", hosts=2)
    inventory = lab_inventory(lab)
    for vm in lab.vms:
        server = inventory.server(vm.server_id)
        assert server is not None
        assert server.host == server.hypervisor_hostname == lab.host_of(vm).name
    for hv in lab.hypervisors:
        names = {d.findtext("uuid") for d in ET.fromstring(node_xml(lab, hv)).findall("domain")}
        expected = {vm.server_id for vm in lab.vms_on(hv)}
        if hv.number == 1:
            expected |= {g.server_id for g in lab.ghosts}
        assert names == expected, hv.name


def test_the_endpoints_config_sends_resolve_to_the_vms_host() -> None:
    lab = lab_for("lab-h", hosts=3)
    config = tomllib.loads(endpoints_config(lab))
    for me in ("compute-1", "compute-3"):
        ep = endpoints_for("compute-2", env={"VMSNIFF_HOST": me}, config=config)
        hv2 = lab.hypervisor("compute-2")
        assert (ep.local, ep.ovsdb, ep.libvirt) == (False, hv2.ovsdb_remote, hv2.libvirt_uri)
        assert ep.ovsdb_origin == "config host entry"


def test_env_vars_take_the_view_of_the_host_asked_for() -> None:
    lab = lab_for("lab-h", hosts=2)
    hv2 = lab.hypervisor("compute-2")
    env = env_vars(lab, "compute-2")
    assert (env["VMSNIFF_HOST"], env["VMSNIFF_OVSDB"], env["LIBVIRT_DEFAULT_URI"]) == (
        "compute-2",
        hv2.ovsdb_remote,
        hv2.libvirt_uri,
    )
    assert env_vars(lab)["VMSNIFF_HOST"] == "compute-1"
    assert "OVN_NB_DB" in env_vars(lab_for("lab-h", hosts=2, ovn=True))
