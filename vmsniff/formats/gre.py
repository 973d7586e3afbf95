"""GRE, RFC 2784 with the key and sequence extensions of RFC 2890.

Layout (RFC 2784 section 2, RFC 2890 section 2)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    |C|R|K|S|s|Recur|  Flags  | Ver |         Protocol Type         |
    |      Checksum (optional)      |       Reserved1 (optional)    |
    |                         Key (optional)                        |
    |                 Sequence Number (optional)                    |

The optional words appear in that order, each only when its flag is set.
"""

from __future__ import annotations

__all__ = [
    "FAST_FLAG_WORDS",
    "FLAG_C",
    "FLAG_K",
    "FLAG_R",
    "FLAG_S",
    "GRE_FIXED_LEN",
    "GRE_PROTO_OFFSET",
    "OPTIONAL_FLAGS",
    "UNDECODABLE",
    "VERSION_MASK",
    "gre_header_len",
    "key_offset",
]

FLAG_C = 0x8000  #: checksum present (RFC 2784)
FLAG_R = 0x4000  #: routing present (RFC 1701 only)
FLAG_K = 0x2000  #: key present (RFC 2890 section 2.1)
FLAG_S = 0x1000  #: sequence number present (RFC 2890 section 2.2)
VERSION_MASK = 0x0007
#: The flags that each add one 32-bit word after the fixed header.
OPTIONAL_FLAGS = FLAG_C | FLAG_K | FLAG_S
#: Routing (RFC 1701 source routes, which nobody sends) or a version other than 0 (PPTP):
#: a header vmsniff does not decode.
UNDECODABLE = FLAG_R | VERSION_MASK
GRE_FIXED_LEN = 4  #: flags/version and protocol type
GRE_PROTO_OFFSET = 2

#: Flag words of "the fast shape" (:mod:`vmsniff.filter.kernel`): version 0, no routing, any
#: mix of C, K and S, and none of the bits RFC 1701 gave to routers.
FAST_FLAG_WORDS = tuple(
    sorted({c | k | s for c in (0, FLAG_C) for k in (0, FLAG_K) for s in (0, FLAG_S)})
)


def gre_header_len(flags: int) -> int:
    """The header's length in bytes for its first 16-bit word ``flags``."""
    return GRE_FIXED_LEN + 4 * bin(flags & OPTIONAL_FLAGS).count("1")


def key_offset(flags: int) -> int:
    """Where the key starts in the GRE header (after the checksum word, when present)."""
    return GRE_FIXED_LEN + (4 if flags & FLAG_C else 0)
