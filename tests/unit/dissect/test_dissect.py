"""vmsniff.dissect: fields as tshark reads them, tcpdump's lines, hostile bytes, the docs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.wire.conftest import captures_path, require_captures
from vmsniff.dissect import (
    Dns,
    Gre,
    IPProto,
    IPv4,
    IPv6,
    Tcp,
    TcpFlags,
    Udp,
    Vlan,
    Vxlan,
    decode,
    read_file,
)
from vmsniff.dissect.printer import Printer, PrintOptions, frame_json
from vmsniff.dissect.reference import render
from vmsniff.formats.capture import LINKTYPE_ETHERNET, LINKTYPE_RAW
from vmsniff.pcap.pcap import file_header, record

ROOT = Path(__file__).resolve().parents[3]
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def _crafted() -> list[bytes]:
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest
    from scapy.layers.inet6 import IPv6 as IP6
    from scapy.layers.l2 import ARP, Dot1Q, Ether
    from scapy.layers.vxlan import VXLAN

    e = Ether(**MACS)
    inner = Ether(**MACS) / IP(src="192.168.0.5", dst="192.168.0.6") / TCP(sport=4000, dport=22)
    return [bytes(p) for p in (
        e / IP(src="10.0.0.1", dst="10.0.0.2", ttl=7, id=99) / TCP(sport=1234, dport=80, flags="S",
            seq=1000, options=[("MSS", 1460), ("NOP", None), ("WScale", 7)]),
        e / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=1234, flags="SA", seq=5,
                                                      ack=1001) / b"hello",
        e / Dot1Q(vlan=7, prio=3) / Dot1Q(vlan=20) / IP(src="10.0.0.3", dst="10.0.0.4") / UDP(
            sport=5000, dport=6000) / (b"x" * 10),
        e / IP(src="10.0.0.1", dst="10.0.0.9") / ICMP(type=8, id=77, seq=3) / b"ping",
        e / IP6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest(id=5, seq=6),
        e / IP6(src="fd00::1", dst="fd00::2") / TCP(sport=40000, dport=443, flags="PA") / b"abc",
        e / ARP(op=1, psrc="10.0.0.1", pdst="10.0.0.2", hwsrc=MACS["src"]),
        e / IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=5353, dport=53) / DNS(
            rd=1, qd=DNSQR(qname="example.org", qtype="AAAA")),
        e / IP(src="172.16.0.1", dst="172.16.0.2") / UDP(sport=1111, dport=4789) / VXLAN(vni=42)
        / inner,
        e / IP(src="172.16.0.1", dst="172.16.0.2") / GRE(key_present=1, key=100, proto=0x6558)
        / inner,
    )]  # fmt: skip


def _pcap(path: Path, frames: list[bytes]) -> Path:
    path.write_bytes(file_header(65535, LINKTYPE_ETHERNET)
                     + b"".join(record(i * 1000, f) for i, f in enumerate(frames)))  # fmt: skip
    return path


# tshark field -> how to read ours from a frame (outermost layer), None when absent
FIELDS: dict[str, Any] = {
    "ip.src": lambda f: getattr(f.find(IPv4), "src", None),
    "ip.dst": lambda f: getattr(f.find(IPv4), "dst", None),
    "ip.ttl": lambda f: getattr(f.find(IPv4), "ttl", None),
    "ip.id": lambda f: _hex(getattr(f.find(IPv4), "ident", None)),
    "ip.proto": lambda f: getattr(f.find(IPv4), "proto", None),
    "ipv6.src": lambda f: getattr(f.find(IPv6), "src", None),
    "ipv6.dst": lambda f: getattr(f.find(IPv6), "dst", None),
    "tcp.srcport": lambda f: getattr(f.find(Tcp), "sport", None),
    "tcp.dstport": lambda f: getattr(f.find(Tcp), "dport", None),
    "tcp.seq_raw": lambda f: getattr(f.find(Tcp), "seq", None),
    "tcp.flags": lambda f: _hex(getattr(f.find(Tcp), "flags", None), 4),
    "tcp.len": lambda f: getattr(f.find(Tcp), "payload_length", None),
    "udp.srcport": lambda f: getattr(f.find(Udp), "sport", None),
    "udp.dstport": lambda f: getattr(f.find(Udp), "dport", None),
    # tshark's vlan.id is 802.1Q's (0x8100, 0x9100); an 802.1ad S-tag is ieee8021ad.id
    "vlan.id": lambda f: next(
        (x.vid for x in f.layers if isinstance(x, Vlan) and x.tpid != 0x88A8), None
    ),
    "vxlan.vni": lambda f: getattr(f.find(Vxlan), "vni", None),
    "gre.key": lambda f: _hex(getattr(f.find(Gre), "key", None), 8),
    "dns.qry.name": lambda f: getattr(f.find(Dns), "qname", None),
}


def _hex(value: int | None, width: int = 4) -> str | None:
    return None if value is None else f"0x{value:0{width}x}"


def _tshark(path: Path) -> list[dict[str, str]]:
    args = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=f"]
    for name in FIELDS:
        args += ["-e", name]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return [dict(zip(FIELDS, line.split("\t"), strict=True)) for line in done.stdout.splitlines()]


def _not_compared(frame: Any) -> set[str]:
    """Fields tshark reads where vmsniff, by design, does not: from a datagram reassembled out
    of fragments, from the packet an ICMP error quotes, from inside an OpenFlow message."""
    skip = set()
    ip4, ip6 = frame.find(IPv4), frame.find(IPv6)
    if (ip4 is not None and ip4.is_fragment) or (ip6 is not None and ip6.fragment_id is not None):
        skip |= {n for n in FIELDS if n.startswith(("tcp.", "udp.", "dns.", "vxlan.", "gre."))}
    icmp = frame.find("icmp")
    if icmp is not None and icmp.ident is None or frame.find("openflow") is not None:
        skip |= {n for n in FIELDS if n.startswith(("udp.", "dns.", "vxlan."))}
        if icmp is not None:
            skip |= {n for n in FIELDS if n.startswith("tcp.")}
    return skip


def _compare(path: Path, skip_fields: frozenset[str] = frozenset()) -> int:
    compared = 0
    for frame, theirs in zip(read_file(str(path)), _tshark(path), strict=True):
        skip = skip_fields | _not_compared(frame)
        for name, read in FIELDS.items():
            if name in skip or not theirs[name]:
                continue
            ours = read(frame)
            if ours is None and frame.error:
                continue  # dissection stopped before it (tshark may read further)
            assert str(ours) == theirs[name], (name, frame.layers, frame.error)
            compared += 1
    return compared


def test_fields_match_tshark_on_crafted_frames(tmp_path: Path) -> None:
    assert _compare(_pcap(tmp_path / "c.pcap", _crafted())) > 60


REAL = [p for p in sorted(captures_path().rglob("*.pcap*")) if p.suffix in (".pcap", ".pcapng")]


@pytest.mark.parametrize("path", REAL or [Path("absent")], ids=lambda p: p.name)
def test_fields_match_tshark_on_the_real_captures(path: Path) -> None:
    require_captures()
    # tshark's dns.qry.name for a compressed or multi-question message: not compared
    _compare(path, frozenset({"dns.qry.name"}))


def test_find_outermost_and_innermost_and_constants() -> None:
    frame = decode(_crafted()[8])  # TCP in Ethernet in VXLAN in UDP in IPv4
    assert frame.find("ipv4").src == "172.16.0.1"  # type: ignore[union-attr]
    assert frame.find(IPv4, innermost=True).src == "192.168.0.5"  # type: ignore[union-attr]
    assert frame.find("vxlan").vni == 42  # type: ignore[union-attr]
    assert frame.find("tcp").dport == 22 and frame.find("arp") is None  # type: ignore[union-attr]
    syn = decode(_crafted()[0]).find(Tcp)
    assert syn is not None and syn.flags & TcpFlags.SYN and not syn.flags & TcpFlags.ACK
    assert decode(_crafted()[0]).find(IPv4).proto == IPProto.TCP  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        frame.find("ipv5")


def test_a_cut_frame_keeps_its_layers_and_says_why() -> None:
    whole = _crafted()[0]
    for cut in range(len(whole)):
        frame = decode(whole[:cut])
        assert (frame.error is None) == (cut >= len(whole) - 0 or frame.find(Tcp) is not None)
        if cut >= 34:
            assert frame.find(IPv4) is not None
    assert decode(whole[:40]).error == "cut short after ipv4"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([LINKTYPE_ETHERNET, LINKTYPE_RAW, 113, 276, 0]))
def test_arbitrary_bytes_never_raise(data: bytes, linktype: int) -> None:
    frame = decode(data, linktype)
    Printer(PrintOptions(link=True, hex_ascii=1)).line(frame)
    frame_json(frame)


def test_docs_packet_api_md_is_generated_from_the_code() -> None:
    doc = ROOT / "docs" / "packet-api.md"
    assert doc.read_text() == render(), "run: .venv/bin/python -m vmsniff.dissect.reference"
