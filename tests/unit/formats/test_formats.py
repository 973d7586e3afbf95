"""vmsniff.formats: each fact defined once, and what the other modules build on it agrees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vmsniff.formats.capture import (
    EPB_FROM_VM,
    EPB_TO_VM,
    direction_from_epb,
    epb_flags_of,
)
from vmsniff.formats.gre import (
    FAST_FLAG_WORDS,
    FLAG_C,
    FLAG_K,
    FLAG_S,
    gre_header_len,
    key_offset,
)
from vmsniff.model import Direction
from vmsniff.wire.gre import encode_gre, parse_gre

PACKAGE = Path(__file__).resolve().parents[3] / "vmsniff"

# Literals that must not be spelled out again outside vmsniff/formats (the review found each
# defined several times). A match in a comment or docstring is fine; in code it is a copy.
FACTS = {
    r"\b0x8100\b|\b0x88[aA]8\b|\b0x9100\b": "a VLAN TPID",
    r"\b262144\b": "MAX_SNAPLEN",
    r"\bPACKET_OUTGOING\s*=": "PACKET_OUTGOING",
    r"\b0x6558\b": "ETHERTYPE_TEB",
    r"\b0x88[bB][eE]\b|\b0x22[eE][bB]\b": "an ERSPAN protocol",
    r"\b0x[aA]1[bB]2(?:3[cC]4[dD]|[cC]3[dD]4)\b": "a pcap magic",
    r"\b0x0[aA]0[dD]0[dD]0[aA]\b|\b0x1[aA]2[bB]3[cC]4[dD]\b": "a pcapng magic",
}


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of ``path`` that are code: docstrings and comments left out."""
    out, in_doc = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        quotes = stripped.count('"""')
        if in_doc or quotes:
            if quotes == 1:
                in_doc = not in_doc
            continue
        out.append((number, line.split("#", 1)[0]))
    return out


@pytest.mark.parametrize("pattern", sorted(FACTS))
def test_a_format_constant_is_defined_only_in_formats(pattern: str) -> None:
    copies = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "formats" not in path.parts and "lab" not in path.parts
        for number, line in _code_lines(path)
        if re.search(pattern, line)
    ]
    assert not copies, f"{FACTS[pattern]} spelled out again; import it from vmsniff.formats:\n" + (
        "\n".join(copies)
    )


def test_direction_maps_to_epb_flags_and_back() -> None:
    assert epb_flags_of(Direction.FROM_VM) == EPB_FROM_VM == 0b10  # outbound (pcapng 4.3.1)
    assert epb_flags_of(Direction.TO_VM) == EPB_TO_VM == 0b01  # inbound
    assert epb_flags_of(Direction.BOTH) == epb_flags_of(None) == 0
    for direction in (Direction.FROM_VM, Direction.TO_VM):
        assert direction_from_epb(epb_flags_of(direction)) is direction
        assert direction_from_epb(epb_flags_of(direction) | 0xF0) is direction  # other bits
    assert direction_from_epb(0) is None and direction_from_epb(0b11) is None


def test_the_fast_flag_words_are_every_mix_of_c_k_s() -> None:
    assert FAST_FLAG_WORDS == (0x0000, 0x1000, 0x2000, 0x3000, 0x8000, 0x9000, 0xA000, 0xB000)


@pytest.mark.parametrize("flags", FAST_FLAG_WORDS)
def test_header_length_and_key_offset_agree_with_the_reference_codec(flags: int) -> None:
    key = 0x01020304 if flags & FLAG_K else None
    seq = 7 if flags & FLAG_S else None
    data = encode_gre(0x6558, b"payload", key=key, seq=seq, with_checksum=bool(flags & FLAG_C))
    header = parse_gre(data)
    assert header.flags & 0xF000 == flags
    assert gre_header_len(flags) == header.header_len
    if key is not None:
        at = key_offset(flags)
        assert int.from_bytes(data[at : at + 4], "big") == key
