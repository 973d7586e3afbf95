"""ERSPAN, after draft-foschiano-erspan-03 (section 4): what rides after a GRE header.

* type I: GRE protocol 0x88BE without a sequence number; no ERSPAN header (section 4.1);
* type II: GRE protocol 0x88BE with the S bit; an 8-byte header, version 1 (section 4.2);
* type III: GRE protocol 0x22EB; a 12-byte header, version 2, and an 8-byte
  platform-specific subheader when ``O`` is set (section 4.3).

The GRE protocol numbers are EtherTypes (:mod:`.ethernet`).
"""

from __future__ import annotations

__all__ = [
    "DIRECTION_EGRESS",
    "DIRECTION_INGRESS",
    "ERSPAN_II_LEN",
    "ERSPAN_III_LEN",
    "ERSPAN_III_PLATFORM_LEN",
    "FT_ETHERNET",
    "FT_IP",
]

ERSPAN_II_LEN = 8
ERSPAN_III_LEN = 12
ERSPAN_III_PLATFORM_LEN = 8  #: the optional subheader after a type III header (O bit)
FT_ETHERNET = 0  #: type III frame type: an Ethernet frame follows
FT_IP = 2  #: type III frame type: an IP packet follows
DIRECTION_INGRESS = 0  #: type III ``D`` bit: into the mirrored port, i.e. sent by the VM
DIRECTION_EGRESS = 1  #: out of the mirrored port, i.e. sent to the VM
