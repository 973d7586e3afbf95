"""The packet API: dissect frames of any capture into typed, named layers.

::

    from vmsniff.dissect import read_file, IPProto, TcpFlags

    for frame in read_file("vm.pcapng"):
        tcp = frame.find("tcp")
        if tcp is not None and tcp.flags & TcpFlags.SYN and not tcp.flags & TcpFlags.ACK:
            ip = frame.find("ipv4") or frame.find("ipv6")
            print(frame.ts_ns, frame.interface, frame.direction, ip.src, "->", ip.dst, tcp.dport)

:func:`decode` dissects one frame, lazily (a layer is read from the frame's bytes when first
asked for, no copies); :func:`read_file` every frame of a pcap or pcapng file (any link type
vmsniff reads; the interface name and direction of vmsniff's pcapng files included);
:func:`flow_key` what a frame says about its flow, from the same header walk, building no
layers.
Each layer is a frozen dataclass (:mod:`.layers`), each constant an enum (:mod:`.constants`);
docs/packet-api.md lists them all, generated from the code (:mod:`.reference`). A frame whose
bytes stop making sense keeps the layers before and says why in :attr:`Frame.error`.
"""

from vmsniff.dissect.constants import ArpOp, EtherType, Icmp6Type, IcmpType, IPProto, TcpFlags
from vmsniff.dissect.files import read_file
from vmsniff.dissect.flow import FlowKey, flow_key
from vmsniff.dissect.frame import Frame, decode
from vmsniff.dissect.layers import (
    LAYERS,
    Arp,
    Dhcp,
    Dns,
    Erspan,
    Ethernet,
    Geneve,
    Gre,
    Icmp,
    ICMPv6,
    IPv4,
    IPv6,
    Layer,
    OpenFlow,
    Tcp,
    Udp,
    Vlan,
    Vxlan,
)

__all__ = [
    "LAYERS",
    "Arp",
    "ArpOp",
    "Dhcp",
    "Dns",
    "Erspan",
    "EtherType",
    "Ethernet",
    "FlowKey",
    "Frame",
    "Geneve",
    "Gre",
    "ICMPv6",
    "IPProto",
    "IPv4",
    "IPv6",
    "Icmp",
    "Icmp6Type",
    "IcmpType",
    "Layer",
    "OpenFlow",
    "TcpFlags",
    "Tcp",
    "Udp",
    "Vlan",
    "Vxlan",
    "decode",
    "flow_key",
    "read_file",
]
