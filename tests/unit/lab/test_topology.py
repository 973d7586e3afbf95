from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from vmsniff.lab.domains import NOVA_NS, node_xml
from vmsniff.lab.topology import Plug, lab_for, validate_prefix


def test_names_follow_os_vif_and_fit_linux_limits() -> None:
    lab = lab_for("vmsniff-lab")
    for vm in lab.vms:
        suffix = vm.port_id[:11]
        assert vm.tap == f"tap{suffix}"
        assert len(vm.tap) == 14
        if vm.plug is Plug.HYBRID:
            assert (vm.qbr, vm.qvb, vm.ovs_port) == (f"qbr{suffix}", f"qvb{suffix}", f"qvo{suffix}")
        else:
            assert vm.qbr is None and vm.ovs_port == vm.tap
        assert re.fullmatch(r"fa:16:3e(:[0-9a-f]{2}){3}", vm.mac)
        assert vm.instance_name == f"instance-{vm.index:08x}"
        assert vm.address.startswith("10.250.")


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
        iface = dom.find("devices/interface")
        assert iface is not None
        assert iface.find("target").get("dev") == vm.tap  # type: ignore[union-attr]
        assert iface.find("mac").get("address") == vm.mac  # type: ignore[union-attr]
        source = iface.find("source").get("bridge")  # type: ignore[union-attr]
        assert source == (vm.qbr if vm.plug is Plug.HYBRID else "br-int")


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
