from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from vmsniff.lab.cloudsetup import lab_inventory
from vmsniff.lab.domains import NOVA_NS, node_xml
from vmsniff.lab.topology import Plug, lab_for, validate_prefix


def test_names_follow_os_vif_and_fit_linux_limits() -> None:
    lab = lab_for("vmsniff-lab")
    for vm in lab.vms:
        assert vm.instance_name == f"instance-{vm.index:08x}"
        for i, nic in enumerate(vm.nics):
            suffix = nic.port_id[:11]
            assert nic.tap == f"tap{suffix}"
            assert len(nic.tap) == 14
            if nic.plug is Plug.HYBRID:
                assert (nic.qbr, nic.qvb, nic.ovs_port) == (
                    f"qbr{suffix}",
                    f"qvb{suffix}",
                    f"qvo{suffix}",
                )
            else:
                assert nic.qbr is None and nic.ovs_port == nic.tap
            assert re.fullmatch(r"fa:16:3e(:[0-9a-f]{2}){3}", nic.mac)
            assert nic.address.startswith("10.250.1.")
            assert nic.device == f"eth{i}"


def test_the_single_nic_properties_are_the_first_nics() -> None:
    for vm in lab_for("vmsniff-lab").vms:
        first = vm.nics[0]
        assert (vm.port_id, vm.mac, vm.address, vm.plug) == (
            first.port_id,
            first.mac,
            first.address,
            first.plug,
        )
        assert (vm.tap, vm.qbr, vm.qvb, vm.ovs_port) == (
            first.tap,
            first.qbr,
            first.qvb,
            first.ovs_port,
        )


def test_c_multi_has_two_nics_one_of_each_plug_and_nothing_is_shared() -> None:
    lab = lab_for("vmsniff-lab")
    multi = lab.vm("c-multi")
    assert [(n.device, n.plug) for n in multi.nics] == [("eth0", Plug.OVS), ("eth1", Plug.HYBRID)]
    assert len({n.table for n in multi.nics}) == 2
    nics = [n for vm in lab.vms for n in vm.nics]
    ghosts = lab.ghosts
    for attr in ("port_id", "mac", "address", "tap"):
        values = [getattr(n, attr) for n in nics] + [getattr(g, attr) for g in ghosts]
        assert len(set(values)) == len(values), attr
    assert len({n.ovs_port for n in nics}) == len(nics)
    indexes = [vm.index for vm in lab.vms] + [g.index for g in ghosts]
    assert len(set(indexes)) == len(indexes)


def test_ids_are_deterministic_per_prefix_and_differ_between_prefixes() -> None:
    a1, a2, b = lab_for("lab-a"), lab_for("lab-a"), lab_for("lab-b")
    assert a1.vms == a2.vms
    assert {vm.port_id for vm in a1.vms}.isdisjoint({vm.port_id for vm in b.vms})
    assert set(a1.namespaces).isdisjoint(b.namespaces)
    assert a1.rundir != b.rundir


@pytest.mark.parametrize("bad", ["", "Lab", "1lab", "lab/x", "a" * 25, "lab x", "../etc"])
def test_bad_prefixes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_prefix(bad)


def test_domain_xml_is_what_nova_writes() -> None:
    lab = lab_for("vmsniff-lab")
    root = ET.fromstring(node_xml(lab))
    domains = root.findall("domain")
    assert len(domains) == len(lab.vms) + len(lab.ghosts)
    for dom, vm in zip(domains, lab.vms, strict=False):
        assert dom.findtext("name") == vm.instance_name
        assert dom.findtext("uuid") == vm.server_id
        inst = dom.find(f"metadata/{{{NOVA_NS}}}instance")
        assert inst is not None
        assert inst.findtext(f"{{{NOVA_NS}}}name") == vm.name
        ifaces = dom.findall("devices/interface")
        ports = inst.findall(f"{{{NOVA_NS}}}ports/{{{NOVA_NS}}}port")
        assert len(ifaces) == len(ports) == len(vm.nics)
        for iface, port, nic in zip(ifaces, ports, vm.nics, strict=True):
            assert iface.find("target").get("dev") == nic.tap  # type: ignore[union-attr]
            assert iface.find("mac").get("address") == nic.mac  # type: ignore[union-attr]
            source = iface.find("source").get("bridge")  # type: ignore[union-attr]
            assert source == (nic.qbr if nic.plug is Plug.HYBRID else "br-int")
            virtualport = iface.find("virtualport/parameters")
            if nic.plug is Plug.OVS:
                assert virtualport is not None
                assert virtualport.get("interfaceid") == nic.port_id
            else:
                assert virtualport is None
            assert port.get("uuid") == nic.port_id
            assert port.find(f"{{{NOVA_NS}}}ip").get("address") == nic.address  # type: ignore[union-attr]


def test_the_cloud_knows_every_nic_as_a_port_of_its_server() -> None:
    lab = lab_for("vmsniff-lab")
    inventory = lab_inventory(lab)
    for vm in lab.vms:
        server = inventory.server(vm.server_id)
        assert server is not None and server.name == vm.name
        assert [(p.id, p.mac, p.ips, p.hybrid_plug, p.network) for p in server.ports] == [
            (n.port_id, n.mac, (n.address,), n.plug is Plug.HYBRID, lab.network_id) for n in vm.nics
        ]


def test_ghost_domains_cover_the_error_cases() -> None:
    lab = lab_for("vmsniff-lab")
    root = ET.fromstring(node_xml(lab))
    by_name = {d.findtext("name"): d for d in root.findall("domain")}
    names = [g.name for g in lab.ghosts]
    assert names.count("c-twin") == 2
    stopped = next(g for g in lab.ghosts if g.name == "c-stopped")
    runstate = by_name[stopped.instance_name].findtext(
        "{http://libvirt.org/schemas/domain/test/1.0}runstate"
    )
    assert runstate == "5"
    sriov = next(g for g in lab.ghosts if g.name == "c-sriov")
    iface = by_name[sriov.instance_name].find("devices/interface")
    assert iface is not None and iface.get("type") == "hostdev"


def test_traffic_picks_a_nic_by_index_or_device_name() -> None:
    from vmsniff.errors import NotFound
    from vmsniff.lab.traffic import _nic

    vm = lab_for("vms-t").vm("c-multi")
    assert _nic(vm, 1) is _nic(vm, "eth1") is vm.nics[1]
    assert _nic(vm, "eth0") is vm.primary
    with pytest.raises(NotFound, match="no NIC eth3"):
        _nic(vm, "eth3")


def test_the_management_network_is_a_lab_30_apart_from_underlay_and_tenant() -> None:
    import ipaddress

    from vmsniff.lab.topology import LAB_BLOCK, MGMT_PREFIXLEN, TENANT_NET, UNDERLAY_NET

    lab = lab_for("vmsniff-lab")
    net = ipaddress.ip_network(lab.mgmt_net)
    assert net.prefixlen == MGMT_PREFIXLEN and net.subnet_of(ipaddress.ip_network(LAB_BLOCK))
    for other in (UNDERLAY_NET, TENANT_NET):
        assert not net.overlaps(ipaddress.ip_network(other))
    hosts = [str(h) for h in net.hosts()]
    assert [lab.mgmt_root_ip, lab.mgmt_hv_ip] == hosts
    assert re.fullmatch(r"vmlab[0-9a-f]{10}", lab.mgmt_root_device)
    assert lab_for("vmsniff-lab").mgmt_net == lab.mgmt_net  # recomputed by `lab down`


def test_labs_side_by_side_get_their_own_management_network_and_device() -> None:
    labs = [lab_for(f"lab-{i}") for i in range(50)]
    assert len({lab.mgmt_root_device for lab in labs}) == 50
    # 8192 /30s: among 50 prefixes one pair may share a /30 (here it does); `lab up` refuses
    # the second of them (tests/functional/test_lab.py), it never shares the subnet.
    assert len({lab.mgmt_net for lab in labs}) >= 49
    assert lab_for("lab-a").mgmt_net != lab_for("lab-b").mgmt_net
