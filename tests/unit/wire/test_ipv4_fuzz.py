"""What the fuzzer (``python -m fuzz``) found in IPv4 reassembly, kept as regression tests,
and the reassembler's bounds under hostile fragments (count, bytes, timeout)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmsniff.errors import MalformedPacket
from vmsniff.formats.capture import LINKTYPE_RAW
from vmsniff.pcap.pcap import file_header, record
from vmsniff.wire.decap import decap_ip
from vmsniff.wire.gre import encode_gre
from vmsniff.wire.ipv4 import Reassembler, encode_ipv4

ROOT = Path(__file__).resolve().parents[3]
HV = bytes([10, 250, 0, 1])
RX = bytes([10, 250, 0, 2])
NOP4 = b"\x01\x01\x01\x01"  # four IPv4 NOP options: a 24-byte header


def oversized(options: bytes = NOP4) -> list[bytes]:
    """Fragments of a GRE datagram whose data ends at 65515 bytes, the last offset the
    reassembler accepts, from a first fragment with a 24-byte header: 65539 bytes in all,
    above what an IPv4 total length can say (the ping of death's shape)."""
    body = encode_gre(0x6558, bytes(0xFFFF - 20 - 4))
    out, off = [], 0
    while off < len(body):
        part = body[off : off + 8192]
        more = off + len(part) < len(body)
        out.append(encode_ipv4(HV, RX, 47, part, ident=9, mf=more, frag_offset=off,
                               options=options if off == 0 else b""))  # fmt: skip
        off += len(part)
    return out


def test_a_reassembled_datagram_above_65535_bytes_is_malformed() -> None:
    """Found by the fuzzer (ipv4-reasm, boundary seed): rebuilding the datagram raised
    struct.error ('H' format requires 0 <= number <= 65535) instead of MalformedPacket."""
    reasm = Reassembler()
    *head, last = oversized()
    for frag in head:
        assert decap_ip(frag, reasm, 0.0) is None
    with pytest.raises(MalformedPacket, match="above 65535"):
        decap_ip(last, reasm, 0.0)
    assert len(reasm) == 0  # and nothing of it is kept


def test_the_largest_datagram_still_reassembles() -> None:
    reasm = Reassembler()
    *head, last = oversized(options=b"")
    for frag in head:
        assert decap_ip(frag, reasm, 0.0) is None
    d = decap_ip(last, reasm, 0.0)
    assert d is not None and d.caplen == 0xFFFF - 20 - 4


def test_receive_counts_an_oversized_datagram_as_malformed(tmp_path: Path) -> None:
    """Through the command: ``receive -r`` of such fragments used to stop with an internal
    error; now the datagram is one malformed packet and the run goes on."""
    src = tmp_path / "in.pcap"
    frames = oversized() + [encode_ipv4(HV, RX, 47, encode_gre(0x6558, bytes(60)))]
    src.write_bytes(file_header(65535, LINKTYPE_RAW)
                    + b"".join(record(i, f) for i, f in enumerate(frames)))  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "vmsniff", "receive", "-r", str(src), "-w",
         str(tmp_path / "out.pcap"), "--json"],
        cwd=ROOT, capture_output=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    stats = json.loads(done.stdout)
    assert stats["malformed"] == 1 and stats["written"] == 1


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 0x1FFF), st.booleans(),
                  st.integers(0, 64), st.floats(0, 4)),
        max_size=60,
    )
)  # fmt: skip
def test_hostile_fragments_stay_bounded(frags: list[tuple[int, int, bool, int, float]]) -> None:
    """Whatever fragments come (any ident, offset, size, flag, clock step): at most
    ``max_datagrams`` partial datagrams are held, each below 64 KiB, and none outlives the
    timeout once the clock moves on."""
    reasm = Reassembler(max_datagrams=2, timeout=3.0)
    now = 0.0
    for ident, offset, more, size, dt in frags:
        now += dt
        pkt = encode_ipv4(HV, RX, 47, bytes(size), ident=ident, mf=more, frag_offset=offset * 8)
        try:
            decap_ip(pkt, reasm, now)
        except MalformedPacket:
            pass
        assert len(reasm) <= 2
        held = [sum(len(p) for p in pend.parts.values()) for pend in reasm._table.values()]
        assert all(h <= 0xFFFF for h in held)
        assert all(len(pend.parts) <= reasm.max_fragments for pend in reasm._table.values())
    reasm.expire(now + 3.5)
    assert len(reasm) == 0


def test_a_datagram_in_too_many_pieces_is_dropped() -> None:
    """8-byte fragments that never complete: each was checked against every piece held, so
    8179 of them (229 kB on the wire) cost 3.5 s of CPU here. Past ``max_fragments`` the
    datagram is dropped as malformed, and what a later fragment costs stays small."""
    reasm = Reassembler()  # the default: 256 pieces
    frags = [encode_ipv4(HV, RX, 47, bytes(8), ident=1, mf=True, frag_offset=8 * i)
             for i in range(1, 1000)]  # fmt: skip
    for frag in frags[:256]:
        assert decap_ip(frag, reasm, 0.0) is None
    with pytest.raises(MalformedPacket, match="more than 256"):
        decap_ip(frags[256], reasm, 0.0)
    assert len(reasm) == 0
    # a repeat of a piece held does not count as one more
    reasm = Reassembler(max_fragments=2)
    decap_ip(frags[0], reasm, 0.0)
    decap_ip(frags[1], reasm, 0.0)
    assert decap_ip(frags[1], reasm, 0.0) is None and len(reasm) == 1


def test_a_datagram_cut_for_the_smallest_mtu_still_reassembles() -> None:
    """65515 bytes of GRE cut into 552-byte pieces (MTU 576): 119 fragments, under the limit."""
    body = encode_gre(0x6558, bytes(0xFFFF - 20 - 4))
    frags = [encode_ipv4(HV, RX, 47, body[o : o + 552], ident=3, mf=o + 552 < len(body),
                         frag_offset=o) for o in range(0, len(body), 552)]  # fmt: skip
    reasm = Reassembler()
    done = [d for f in reversed(frags) if (d := decap_ip(f, reasm, 0.0)) is not None]
    assert len(frags) == 119 and len(done) == 1 and done[0].caplen == len(body) - 4


def test_the_campaigns_first_inputs_run_clean() -> None:
    """What ``python -m fuzz --decoder ipv4-reasm --seed 1`` starts with (fragment runs,
    boundary sizes, more datagrams than the table holds)."""
    from fuzz.run import inputs
    from fuzz.targets import TARGETS

    run = TARGETS["ipv4-reasm"].run
    for data in inputs("ipv4-reasm", 1, 300):
        run(data)
