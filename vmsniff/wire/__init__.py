"""Sans-IO codecs for what arrives on the wire: Ethernet/VLAN, IPv4, GRE, ERSPAN, decap.

Every decoder takes bytes and returns values, or raises
:class:`vmsniff.errors.MalformedPacket`; none touches a socket, a file or a clock. The numbers
they share are defined in :mod:`vmsniff.formats`.

:mod:`.decap` is the receiver's per-packet decoder, written for speed (one function, flat).
:mod:`.ethernet`, :mod:`.gre` and :mod:`.erspan` are the reference codecs, one header and one
dataclass each, with encoders: they build and check the frames of the tests, the fuzzer and the
benchmarks, where a field-by-field reading matters more than speed.
"""

from vmsniff.wire.decap import Decapsulated, decap_ethernet, decap_ip, decap_linktype
from vmsniff.wire.erspan import (
    ErspanII,
    ErspanIII,
    encode_erspan_ii,
    encode_erspan_iii,
    parse_erspan_ii,
    parse_erspan_iii,
)
from vmsniff.wire.ethernet import (
    EthernetHeader,
    VlanTag,
    encode_ethernet,
    parse_ethernet,
    strip_vlan,
)
from vmsniff.wire.gre import GreHeader, encode_gre, parse_gre
from vmsniff.wire.ipv4 import IPv4Header, Reassembler, encode_ipv4, parse_ipv4

__all__ = [
    "Decapsulated",
    "ErspanII",
    "ErspanIII",
    "EthernetHeader",
    "GreHeader",
    "IPv4Header",
    "Reassembler",
    "VlanTag",
    "decap_ethernet",
    "decap_ip",
    "decap_linktype",
    "encode_erspan_ii",
    "encode_erspan_iii",
    "encode_ethernet",
    "encode_gre",
    "encode_ipv4",
    "parse_erspan_ii",
    "parse_erspan_iii",
    "parse_ethernet",
    "parse_gre",
    "parse_ipv4",
    "strip_vlan",
]
