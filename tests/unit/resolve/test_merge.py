from __future__ import annotations

import pytest

from vmsniff.errors import Ambiguous, Conflict, NotFound
from vmsniff.model import PlugKind
from vmsniff.resolve.libvirt import DomainIface, DomainInfo, parse_domain
from vmsniff.resolve.merge import merge_nics, select_nics, single_nic
from vmsniff.resolve.nova import CloudPort
from vmsniff.resolve.ovsdb import OvsIface

SERVER = "11111111-2222-3333-4444-555555555555"
PORT = "abcdef01-2345-6789-abcd-ef0123456789"
MAC = "fa:16:3e:00:00:01"


def port(**kw: object) -> CloudPort:
    base = dict(
        id=PORT, mac=MAC, network_id="net1", network_name="private", fixed_ips=("10.0.0.5",),
        vnic_type="normal", vif_type="ovs", hybrid_plug=True, host="compute-1",
    )  # fmt: skip
    base.update(kw)
    return CloudPort(**base)  # type: ignore[arg-type]


def iface(**kw: object) -> OvsIface:
    base = dict(
        name=f"qvo{PORT[:11]}", port=f"qvo{PORT[:11]}", bridge="br-int", type="system",
        iface_id=PORT, mac=MAC, vm_uuid=SERVER, ofport=5, tag=3, mtu=1500, error=None,
    )  # fmt: skip
    base.update(kw)
    return OvsIface(**base)  # type: ignore[arg-type]


def domain(*ifaces: DomainIface) -> DomainInfo:
    return DomainInfo("instance-00000001", SERVER, "running", "c-private", None, None, ifaces)


HYBRID_IFACE = DomainIface(MAC, "bridge", f"tap{PORT[:11]}", f"qbr{PORT[:11]}", None, 1500)


def test_hybrid_nic_from_all_three_sources() -> None:
    nics, warnings = merge_nics(SERVER, [port()], domain(HYBRID_IFACE), [iface()])
    assert warnings == []
    (nic,) = nics
    assert nic.plug is PlugKind.HYBRID
    assert (nic.tap, nic.ovs_port, nic.bridge, nic.tag) == (
        f"tap{PORT[:11]}", f"qvo{PORT[:11]}", "br-int", 3,
    )  # fmt: skip
    assert nic.sources == ("nova", "libvirt", "ovsdb")
    assert nic.network_name == "private" and nic.fixed_ips == ("10.0.0.5",)


def test_native_ovs_and_ovn_plugs() -> None:
    tap = f"tap{PORT[:11]}"
    ovs_iface = DomainIface(MAC, "bridge", tap, "br-int", PORT, None)
    nics, _ = merge_nics(SERVER, [port(hybrid_plug=False)], domain(ovs_iface),
                         [iface(name=tap, port=tap)])  # fmt: skip
    assert nics[0].plug is PlugKind.OVS and nics[0].ovs_port == tap
    nics, _ = merge_nics(SERVER, [port()], None, [iface(name=tap, port=tap)], ovn=True)
    assert nics[0].plug is PlugKind.OVN


def test_sriov_and_macvtap_are_not_on_ovs() -> None:
    nics, _ = merge_nics(SERVER, [port(vnic_type="direct")], None, [])
    assert nics[0].plug is PlugKind.SRIOV and not nics[0].plug.on_ovs
    nics, _ = merge_nics(SERVER, [], domain(DomainIface(MAC, "direct", None, None, None, None)), [])
    assert nics[0].plug is PlugKind.MACVTAP


def test_convention_is_last_resort_and_reported() -> None:
    nics, warnings = merge_nics(SERVER, [port()], None, None)  # OVSDB not consulted
    assert nics[0].ovs_port == f"qvo{PORT[:11]}"
    assert any("naming convention" in n for n in nics[0].notes)
    nics, warnings = merge_nics(SERVER, [port()], None, [])  # consulted, not found
    assert any("no OVS interface" in w for w in warnings)


def test_match_by_mac_when_iface_id_missing_is_noted() -> None:
    nics, _ = merge_nics(SERVER, [], domain(HYBRID_IFACE), [iface(iface_id=None)])
    assert nics[0].ovs_port == f"qvo{PORT[:11]}"
    assert any("attached-mac" in n for n in nics[0].notes)


@pytest.mark.parametrize(
    ("ifaces", "dom", "needle"),
    [
        ([iface(vm_uuid="99999999-0000-0000-0000-000000000000")], None, "belongs to vm-uuid"),
        ([iface(mac="fa:16:3e:99:99:99")], None, "attached-mac"),
        ([iface()], DomainIface(MAC, "bridge", "tapX", "br-int", "other-port", None),
         "virtualport says"),
    ],
)  # fmt: skip
def test_contradictions_raise_conflict_naming_both_sides(
    ifaces: list[OvsIface], dom: DomainIface | None, needle: str
) -> None:
    with pytest.raises(Conflict, match=needle):
        merge_nics(SERVER, [port()], domain(dom) if dom else None, ifaces)


def test_select_and_single_nic() -> None:
    other = port(id="99999999-aaaa-bbbb-cccc-dddddddddddd", mac="fa:16:3e:00:00:02",
                 network_id="net2", network_name="public")  # fmt: skip
    nics, _ = merge_nics(SERVER, [port(), other], None, None)
    with pytest.raises(Ambiguous) as info:
        single_nic(nics)
    assert len(info.value.candidates) == 2
    assert single_nic(select_nics(nics, "public")).mac == "fa:16:3e:00:00:02"
    assert single_nic(select_nics(nics, "FA:16:3E:00:00:01")).port_id == PORT
    assert single_nic(select_nics(nics, PORT[:8])).port_id == PORT
    with pytest.raises(NotFound, match="no NIC matches"):
        select_nics(nics, "nothing")


def test_parse_domain_reads_nova_metadata_and_interfaces() -> None:
    xml = f"""<domain type='kvm'><name>instance-0000000a</name><uuid>{SERVER}</uuid>
      <metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
        <nova:name>web-1</nova:name><nova:owner><nova:project uuid="p1">demo</nova:project>
        </nova:owner></nova:instance></metadata>
      <devices>
        <interface type='ethernet'><mac address='FA:16:3E:AA:BB:CC'/><target dev='tap1'/>
          <mtu size='1450'/></interface>
        <interface type='vhostuser'><mac address='fa:16:3e:00:00:09'/></interface>
        <interface type='hostdev'><mac address='fa:16:3e:00:00:0a'/></interface>
      </devices></domain>"""
    info = parse_domain(xml, "running")
    assert (info.name, info.display_name, info.project_name) == (
        "instance-0000000a",
        "web-1",
        "demo",
    )
    assert [i.kind for i in info.ifaces] == ["ethernet", "vhostuser", "hostdev"]
    assert info.ifaces[0].mac == "fa:16:3e:aa:bb:cc" and info.ifaces[0].mtu == 1450
    assert info.ifaces[0].tap == "tap1" and info.ifaces[1].tap is None


def test_nics_come_in_the_guests_order_whatever_neutron_lists() -> None:
    """libvirt's devices are eth0, eth1, ... in the guest; Neutron lists ports by id. A port
    only Neutron knows comes last; without libvirt, Neutron's order is all there is."""
    macs = ["fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b", "fa:16:3e:00:00:0c"]
    ids = ["ffff" + PORT[4:], "0000" + PORT[4:], "8888" + PORT[4:]]
    ports = sorted((port(id=i, mac=m) for i, m in zip(ids, macs, strict=True)), key=lambda p: p.id)
    dom = domain(*(DomainIface(m, "bridge", f"tap{i[:11]}", f"qbr{i[:11]}", None, 1500)
                   for i, m in zip(ids[:2], macs[:2], strict=True)))  # fmt: skip
    nics, _ = merge_nics(SERVER, ports, dom, None)
    assert [n.mac for n in nics] == macs  # eth0, eth1, then the port libvirt does not have
    nics, _ = merge_nics(SERVER, ports, None, None)
    assert [n.mac for n in nics] == [p.mac for p in ports]
