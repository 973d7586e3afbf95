"""libpcap filters on inner frames: compile errors are UsageErrors, verdicts equal tcpdump's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vmsniff.errors import UsageError
from vmsniff.filter import InnerFilter, bpf_instructions
from vmsniff.formats.capture import LINKTYPE_ETHERNET, LINKTYPE_RAW
from vmsniff.pcap.pcap import file_header, record
from vmsniff.pcap.reader import read_records


def test_bad_filter_is_a_usage_error_with_libpcap_message() -> None:
    with pytest.raises(UsageError, match="syntax error"):
        InnerFilter("icmp and and")


def test_ethernet_only_filter_never_matches_raw_ip() -> None:
    flt = InnerFilter("ether host 02:00:00:00:00:01")
    assert flt.raw_error and "ethernet addresses" in flt.raw_error
    assert not flt.match(LINKTYPE_RAW, bytes.fromhex("4500001c") + bytes(24))


def test_bpf_instructions_are_tuples() -> None:
    prog = bpf_instructions("ip proto 47", LINKTYPE_RAW)
    assert prog[-1] == (6, 0, 0, 0) and all(len(i) == 4 for i in prog)


def _frames() -> list[bytes]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP, Dot1Q, Ether

    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    pkts = [
        e / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(),
        e / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=1234, dport=80, flags="S"),
        e / IP(src="10.0.0.3", dst="10.0.0.1") / UDP(sport=5353, dport=53),
        e / ARP(psrc="10.0.0.1", pdst="10.0.0.9"),
        e / Dot1Q(vlan=1) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(),
        e / IPv6(src="fd00::1", dst="fd00::2") / TCP(dport=443),
        Ether(src="02:00:00:00:00:09", dst="ff:ff:ff:ff:ff:ff") / IP(dst="10.0.0.255") / UDP(),
        e
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / TCP(sport=80, dport=40000, flags="A")
        / (b"x" * 300),
    ]
    return [bytes(p) for p in pkts]


FILTERS = [
    "icmp",
    "tcp port 80",
    "udp",
    "arp",
    "vlan 1 and icmp",
    "ip6",
    "host 10.0.0.3",
    "ether src 02:00:00:00:00:09",
    "greater 200",
    "tcp[tcpflags] & tcp-syn != 0",
    "not ip",
]


@pytest.mark.parametrize("expression", FILTERS)
def test_verdicts_equal_tcpdumps(expression: str, tmp_path: Path) -> None:
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    frames = _frames()
    src = tmp_path / "in.pcap"
    src.write_bytes(
        file_header(65535, LINKTYPE_ETHERNET)
        + b"".join(record(i * 1000, f) for i, f in enumerate(frames))
    )
    out = tmp_path / "out.pcap"
    done = subprocess.run(
        ["tcpdump", "-r", str(src), "-w", str(out), expression],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    kept = [r.data for r in read_records([out.read_bytes()])]
    flt = InnerFilter(expression)
    ours = [f for f in frames if flt.match(LINKTYPE_ETHERNET, f)]
    assert ours == kept
