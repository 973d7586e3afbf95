"""Real captures (../shared/captures) through our reader and decapsulator, against tshark.

Each ``gre/`` and ``erspan/`` capture has a ``.expected.tsv``: tshark 4.0's fields per frame,
outer layer first. We decapsulate one GRE layer, the mirror's, so our inner frame is the layer
right after the outer one (index 1), which is the last value except for nested tunnels.

Where we and tshark part ways, on purpose (``REFUSED`` below):

* GRE version 1 (tcpdump pptp.pcap): PPTP's enhanced GRE (RFC 2637) carrying PPP. tshark
  decodes it; it is not a mirror's encapsulation, and we count it as malformed.
* GRE protocols other than Ethernet bridging, IPv4, IPv6 and ERSPAN: NHRP 0x2001
  (nhrp.pcapng), Cisco MetaData 0x8909, CDP 0x2000 and protocol 0 keepalives
  (various_gre.pcap). tshark decodes them; they are not mirrored traffic and we have no pcap link
  type to write them under.
* GRE in UDP port 4754 (RFC 8086, gre-over-udp-4754.pcap): tshark decodes it; our receiver reads
  a raw IPPROTO_GRE socket, where it never arrives.
* erspan-type-iii-pb-1.pcap: a fuzzed 79-byte capture of a 188109-byte frame, cut inside the
  ERSPAN platform-specific subheader. tshark shows the partial header fields and marks the rest
  missing; we refuse it, since there is no inner frame to give. Both agree it is cut short.
  Its GRE flags 0x1d00 set the strict-source-route bit and recursion control 5; we accept those
  bits as RFC 1701 receivers do (tshark and tcpdump too).

Outer IPv4 fragments (zeek erspan.pcap has 39): tshark reassembles and shows the GRE fields on
the frame completing the datagram; so do we, and the frames before it show no GRE in either.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from vmsniff.errors import MalformedPacket
from vmsniff.formats.capture import LINKTYPE_ETHERNET
from vmsniff.pcap.reader import Record
from vmsniff.wire.decap import decap_linktype
from vmsniff.wire.ethernet import parse_ethernet
from vmsniff.wire.ipv4 import Reassembler, format_ipv4, parse_ipv4

ReadCapture = Callable[[Path], list[Record]]
LoadExpected = Callable[[Path], list[dict[str, list[str]]]]

pytestmark = pytest.mark.captures

REFUSED = {
    "gre/tcpdump__pptp.pcap": {"GRE: unsupported version 1 (PPTP enhanced GRE)": 1},
    "gre/tcpdump__nhrp.pcapng": {"GRE: unsupported protocol 0x2001": 25},
    "gre/tcpdump__various_gre.pcap": {
        "GRE: unsupported protocol 0x8909": 20,
        "GRE: unsupported protocol 0x0000": 8,
        "GRE: unsupported protocol 0x2000": 2,
    },
    "gre/zeek__gre-over-udp-4754.pcap": {"not GRE: IP protocol 17": 14},
    "erspan/tcpdump__erspan-type-iii-pb-1.pcap": {"ERSPAN III: platform subheader cut short": 1},
}
# Frames with no GRE at all (PPTP's TCP control channel, CDP/STP/loopback frames over LLC).
NOT_GRE_PREFIXES = ("not GRE:",)


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def test_decap_matches_tshark(
    tunnel_capture: str, captures: Path, read_capture: ReadCapture, load_expected: LoadExpected
) -> None:
    name, base = tunnel_capture, captures
    records = read_capture(base / name)
    expected = load_expected(base / f"{name}.expected.tsv")
    assert len(records) == len(expected)
    reassembler = Reassembler()
    refused: Counter[str] = Counter()
    decoded = 0
    for rec, row in zip(records, expected, strict=True):
        frame = row["frame.number"][0]
        assert rec.origlen == int(row["frame.len"][0]), frame
        try:
            d = decap_linktype(rec.linktype, rec.data, reassembler, (rec.ts_ns or 0) / 1e9)
        except MalformedPacket as exc:
            if str(exc).startswith(NOT_GRE_PREFIXES) and not row["gre.proto"]:
                continue  # neither of us sees GRE here
            refused[str(exc)] += 1
            continue
        if d is None:  # a fragment held for reassembly: tshark shows no GRE either
            assert not row["gre.proto"], frame
            continue
        decoded += 1
        assert d.proto == int(row["gre.proto"][0], 16), frame
        assert d.key == (int(row["gre.key"][0], 16) if row["gre.key"] else None), frame
        seqs = row["gre.sequence_number"]
        assert d.seq == (int(seqs[0]) if seqs else None), frame
        if row["erspan.version"]:
            assert d.erspan_version == int(row["erspan.version"][0]), frame
            assert d.erspan_session == int(row["erspan.spanid"][0]), frame
            assert d.erspan_vlan == int(row["erspan.vlan"][0]), frame
        else:
            assert d.erspan_version is None, frame
        # The inner frame: the layer after the outer one in tshark's lists.
        outer_eth = 1 if rec.linktype == LINKTYPE_ETHERNET else 0
        inner = bytes(d.inner)
        if d.linktype == LINKTYPE_ETHERNET:
            eth = parse_ethernet(inner)
            assert _mac(eth.src) == row["eth.src"][outer_eth], frame
            assert _mac(eth.dst) == row["eth.dst"][outer_eth], frame
            for tag in eth.tags:
                assert str(tag.vid) in row["vlan.id"], frame
            ip_bytes = inner[eth.header_len :] if eth.ethertype == 0x0800 else b""
        else:
            ip_bytes = inner if inner[0] >> 4 == 4 else b""
        assert format_ipv4(d.outer_src) == row["ip.src"][0], frame
        if ip_bytes:
            ip, _, _ = parse_ipv4(ip_bytes)
            assert format_ipv4(ip.src) == row["ip.src"][1], frame
            assert format_ipv4(ip.dst) == row["ip.dst"][1], frame
        # Lengths: the outer frame is our inner frame plus the envelope (plus link padding).
        envelope = len(rec.data) - d.caplen
        if d.caplen == len(inner) and rec.origlen == len(rec.data):
            assert envelope + d.origlen <= rec.origlen, frame
            assert rec.origlen - (envelope + d.origlen) < 60, frame  # padding of short frames
    assert dict(refused) == REFUSED.get(name, {})
    assert decoded + sum(refused.values()) > 0 or name.endswith("pptp.pcap")


def test_malformed_captures_are_counted_not_fatal(
    malformed_capture: str, captures: Path, read_capture: ReadCapture
) -> None:
    name, base = malformed_capture, captures
    try:
        records = read_capture(base / name)
    except MalformedPacket:
        return  # the file itself is broken: counted as such, no other exception
    bad = 0
    for rec in records:
        try:
            decap_linktype(rec.linktype, rec.data, Reassembler())
        except MalformedPacket:
            bad += 1
    # None of these holds a decodable GRE packet: every frame is counted, none crashes.
    assert bad == len(records) > 0


def test_reader_matches_tshark(any_capture: str, captures: Path, read_capture: ReadCapture) -> None:
    """Every capture, read by our streaming reader, against tshark's timestamps and lengths."""
    name, base = any_capture, captures
    out = subprocess.run(
        ["tshark", "-r", str(base / name), "-T", "fields", "-e", "frame.time_epoch",
         "-e", "frame.len", "-e", "frame.cap_len", "-e", "frame.interface_id"],
        capture_output=True, text=True, check=True, env={**os.environ, "LC_ALL": "C"},
    )  # fmt: skip
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    records = read_capture(base / name)
    assert len(records) == len(rows)
    for rec, (epoch, length, caplen, iface) in zip(records, rows, strict=True):
        assert rec.ts_ns is not None
        assert Decimal(rec.ts_ns) / 10**9 == Decimal(epoch)
        assert (rec.origlen, len(rec.data)) == (int(length), int(caplen))
        assert rec.interface == (int(iface) if iface else 0)
