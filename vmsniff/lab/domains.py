"""libvirt domain XML for the lab's VMs, written the way Nova's libvirt driver writes it.

The file is a ``<node>`` for libvirt's built-in ``test:///PATH`` driver: each ``<domain>``
has Nova's ``instance-0000000N`` name, the server UUID, ``<nova:instance>`` metadata
(display name, owner, flavor, one ``<nova:port>`` per NIC) and one ``<interface>`` per NIC,
in the same order, with the MAC and ``target dev`` (the tap). Hybrid plugs point
``<source bridge>`` at the ``qbr``; native OVS plugs at br-int with an ``openvswitch``
virtualport carrying the Neutron port id.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from vmsniff.lab.topology import (
    PROJECT_NAME,
    USER_NAME,
    GhostVm,
    Hypervisor,
    Lab,
    LabNic,
    LabVm,
    Plug,
)

__all__ = ["NOVA_NS", "node_xml"]

NOVA_NS = "http://openstack.org/xmlns/libvirt/nova/1.1"
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"


def _interface(nic: LabNic) -> str:
    if nic.plug is Plug.HYBRID:
        return f"""    <interface type="bridge">
      <mac address={quoteattr(nic.mac)}/>
      <model type="virtio"/>
      <driver name="vhost" rx_queue_size="512"/>
      <source bridge={quoteattr(nic.qbr or "")}/>
      <mtu size="1500"/>
      <target dev={quoteattr(nic.tap)}/>
    </interface>"""
    return f"""    <interface type="bridge">
      <mac address={quoteattr(nic.mac)}/>
      <model type="virtio"/>
      <driver name="vhost" rx_queue_size="512"/>
      <source bridge="br-int"/>
      <mtu size="1500"/>
      <target dev={quoteattr(nic.tap)}/>
      <virtualport type="openvswitch">
        <parameters interfaceid={quoteattr(nic.port_id)}/>
      </virtualport>
    </interface>"""


def _nova_port(port_id: str, address: str) -> str:
    return f"""          <nova:port uuid="{port_id}">
            <nova:ip type="fixed" address="{address}" ipVersion="4"/>
          </nova:port>"""


def _ghost_interface(vm: GhostVm) -> str:
    if vm.nic == "sriov":
        return f"""    <interface type="hostdev" managed="yes">
      <mac address={quoteattr(vm.mac)}/>
      <source>
        <address type="pci" domain="0x0000" bus="0x04" slot="0x10" function="0x{vm.index:x}"/>
      </source>
    </interface>"""
    return f"""    <interface type="bridge">
      <mac address={quoteattr(vm.mac)}/>
      <model type="virtio"/>
      <source bridge="br-int"/>
      <target dev={quoteattr(vm.tap)}/>
      <virtualport type="openvswitch">
        <parameters interfaceid={quoteattr(vm.port_id)}/>
      </virtualport>
    </interface>"""


def _domain(lab: Lab, vm: LabVm | GhostVm) -> str:
    if isinstance(vm, GhostVm):
        interfaces, project = _ghost_interface(vm), vm.project
        ports = _nova_port(vm.port_id, vm.address)
        # The test driver's own namespace sets the initial run state (5 = shut off).
        runstate = "\n    <test:runstate>5</test:runstate>" if vm.state == "shutoff" else ""
    else:
        interfaces = "\n".join(_interface(nic) for nic in vm.nics)
        ports = "\n".join(_nova_port(nic.port_id, nic.address) for nic in vm.nics)
        project, runstate = PROJECT_NAME, ""
    return f"""  <domain type="test" xmlns:test="{TEST_NS}">
    <name>{vm.instance_name}</name>
    <uuid>{vm.server_id}</uuid>
    <metadata>
      <nova:instance xmlns:nova="{NOVA_NS}">
        <nova:package version="29.0.0"/>
        <nova:name>{vm.name}</nova:name>
        <nova:creationTime>2026-12-01 09:00:00</nova:creationTime>
        <nova:flavor name="m1.tiny">
          <nova:memory>512</nova:memory>
          <nova:disk>1</nova:disk>
          <nova:swap>0</nova:swap>
          <nova:ephemeral>0</nova:ephemeral>
          <nova:vcpus>1</nova:vcpus>
        </nova:flavor>
        <nova:owner>
          <nova:user uuid="{lab.user_id}">{USER_NAME}</nova:user>
          <nova:project uuid="{lab.project_uuid(project)}">{project}</nova:project>
        </nova:owner>
        <nova:root type="image" uuid="00000000-0000-4000-8000-00000000c1c0"/>
        <nova:ports>
{ports}
        </nova:ports>
      </nova:instance>
    </metadata>
    <memory unit="KiB">524288</memory>
    <currentMemory unit="KiB">524288</currentMemory>
    <vcpu placement="static">1</vcpu>
    <os>
      <type arch="x86_64" machine="pc">hvm</type>
    </os>{runstate}
    <devices>
{interfaces}
    </devices>
  </domain>"""


def node_xml(lab: Lab, hypervisor: Hypervisor | None = None) -> str:
    """The ``<node>`` document for ``test:///`` holding the domains of one host's VMs (the
    paper-only ones are on the first host), or with no ``hypervisor`` every lab VM's."""
    if hypervisor is None:
        vms: list[LabVm | GhostVm] = [*lab.vms, *lab.ghosts]
    else:
        vms = [*lab.vms_on(hypervisor), *(lab.ghosts if hypervisor.number == 1 else [])]
    domains = "\n".join(_domain(lab, vm) for vm in vms)
    return f'<?xml version="1.0"?>\n<node>\n{domains}\n</node>\n'
