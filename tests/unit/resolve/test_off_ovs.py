"""NICs that are not on Open vSwitch (SR-IOV, macvtap) say why they cannot be mirrored."""

from __future__ import annotations

import pytest

from vmsniff.model import PlugKind
from vmsniff.resolve.libvirt import DomainIface, DomainInfo
from vmsniff.resolve.merge import merge_nics
from vmsniff.resolve.nova import CloudPort
from vmsniff.resolve.ovsdb import OvsIface

SERVER = "11111111-2222-3333-4444-555555555555"
PORT = "abcdef01-2345-6789-abcd-ef0123456789"
MAC = "fa:16:3e:00:00:01"


def port(vnic_type: str) -> CloudPort:
    return CloudPort(PORT, MAC, "net1", "private", ("10.0.0.5",), vnic_type, "hw_veb", None, "h")


def domain(kind: str) -> DomainInfo:
    iface = DomainIface(MAC, kind, None, None, None, None)
    return DomainInfo("instance-00000004", SERVER, "running", "c-sriov", None, None, (iface,))


@pytest.mark.parametrize("vnic", ["direct", "direct-physical", "remote-managed"])
def test_sriov_from_neutron_names_the_vnic_type(vnic: str) -> None:
    nics, warnings = merge_nics(SERVER, [port(vnic)], domain("hostdev"), [])
    assert nics[0].plug is PlugKind.SRIOV
    assert warnings == [
        f"NIC {MAC} is SR-IOV (vnic_type {vnic}): its traffic bypasses Open vSwitch, so it "
        "cannot be mirrored or captured on the host"
    ]


def test_sriov_offline_names_the_libvirt_interface_type() -> None:
    nics, warnings = merge_nics(SERVER, [], domain("hostdev"), [])
    assert nics[0].plug is PlugKind.SRIOV
    (warning,) = warnings
    assert warning.startswith(f"NIC {MAC} is SR-IOV (libvirt interface type hostdev):")


def test_sriov_seen_by_libvirt_despite_a_normal_vnic_type_blames_libvirt() -> None:
    _, warnings = merge_nics(SERVER, [port("normal")], domain("hostdev"), None)
    (warning,) = warnings
    assert "(libvirt interface type hostdev)" in warning


def test_macvtap_says_an_ovs_mirror_cannot_see_it() -> None:
    nics, warnings = merge_nics(SERVER, [port("macvtap")], domain("direct"), [])
    assert nics[0].plug is PlugKind.MACVTAP
    (warning,) = warnings
    assert warning.startswith(f"NIC {MAC} is macvtap (vnic_type macvtap):")
    assert "bypasses Open vSwitch" in warning and "OVS mirror cannot see it" in warning


def test_nics_on_ovs_get_no_such_warning() -> None:
    tap = f"tap{PORT[:11]}"
    iface = OvsIface(tap, tap, "br-int", "system", PORT, MAC, SERVER, 5, 1, 1500, None)
    diface = DomainIface(MAC, "ethernet", tap, None, None, 1500)
    info = DomainInfo("instance-00000002", SERVER, "running", "c-native", None, None, (diface,))
    nics, warnings = merge_nics(SERVER, [port("normal")], info, [iface])
    assert nics[0].plug is PlugKind.OVS and warnings == []
