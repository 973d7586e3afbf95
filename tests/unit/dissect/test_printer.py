"""vmsniff.dissect.printer: tcpdump's lines, held to tcpdump's own output.

tcpdump's expected output (the ``.out`` files of its test suite, run without ``-S``) and the
installed tcpdump (``tcpdump -n``, with and without ``-S``) on the real captures and on crafted
conversations: the ends, flags, lengths, and TCP's relative or absolute seq, ack and SACK
blocks must read the same; every capture prints one line per packet.
"""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pytest

from tests.unit.wire.conftest import captures_path, require_captures
from vmsniff.dissect import IPv4, IPv6, read_file
from vmsniff.dissect.printer import Printer, PrintOptions
from vmsniff.formats.capture import LINKTYPE_ETHERNET
from vmsniff.pcap.encoder import Packet
from vmsniff.pcap.pcap import file_header, record
from vmsniff.pcap.reader import read_records
from vmsniff.pipeline.sinks import PrintSink

REAL = [p for p in sorted(captures_path().rglob("*.pcap*")) if p.suffix in (".pcap", ".pcapng")]
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}

_ADDRS = re.compile(r"(IP6? )?(\S+) > (\S+?):")
_TCP_LINE = re.compile(r"\.\d+ > \S+\.\d+: Flags \[")
_TCP_NUMBERS = re.compile(r"(?:, |\[|,)(seq [\d:]+|ack \d+|sack \d+ [{}\d:]+)")


def _numbered_lines(text: str) -> list[str]:
    """tcpdump's ``-#`` output, one entry per packet: the number and the time stamp (if any)
    taken off, the lines of an inner frame (VXLAN, tcpdump's second line) joined to it, the
    hex dump lines (a tab first) left out."""
    packets: list[str] = []
    for line in text.splitlines():
        match = re.match(r"\s*\d+\s+(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ )?(.*)", line)
        if match:
            packets.append(match[1])
        elif packets and not line.startswith("\t"):
            packets[-1] += " " + line.strip()
    return packets


def _tcpdump(path: Path, *flags: str) -> list[str]:
    """The installed tcpdump's lines for ``path`` (``-n -# -t`` and ``flags``)."""
    done = subprocess.run(["tcpdump", "-n", "-#", "-t", *flags, "-r", str(path)],
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return _numbered_lines(done.stdout)


def _facts(line: str) -> dict[str, str]:
    """What both layouts share: the ends, TCP flags, the first length (the outermost: with -e
    the frame's, else the first protocol's vmsniff and tcpdump both print), and TCP's numbers
    (seq, ack, SACK blocks) in order."""
    out = {}
    ends = _ADDRS.search(line)
    if ends:
        out["ends"] = f"{ends[2]} > {ends[3]}"
    flags = re.search(r"Flags \[([^\]]*)\]", line)
    if flags:
        out["flags"] = flags[1]
        out["numbers"] = " ".join(_TCP_NUMBERS.findall(line))
    lengths = re.findall(r"length (\d+)", line)
    if lengths:
        out["length"] = lengths[0]
    return out


def _compare(ours: list[str], theirs: list[str], keys: set[str] | None = None) -> int:
    """Facts compared, asserting each is the same; ``keys``: only these."""
    assert len(ours) == len(theirs)  # one line per packet
    same = 0
    for mine, tcpdump in zip(ours, theirs, strict=True):
        a, b = _facts(mine), _facts(tcpdump)
        for key in a.keys() & b.keys() & (keys or a.keys()):
            assert a[key] == b[key], (key, mine, tcpdump)
            same += 1
    return same


def _print(path: Path, options: PrintOptions) -> list[str]:
    printer = Printer(options)
    return [printer.line(frame) for frame in read_file(str(path))]


# -- tcpdump's own expected output ---------------------------------------------------------------

_TCPDUMP_RUNS = {"dns_udp": "", "of13_ericsson": "", "802.1ad_QinQ": "-e", "vxlan": "-e",
                 "ip6_frag_asan": "", "tcp_rst_data-trunc": "", "pptp": ""}  # fmt: skip


@pytest.mark.parametrize("name", sorted(_TCPDUMP_RUNS))
def test_lines_match_tcpdump_where_the_layouts_coincide(name: str) -> None:
    """tcpdump's test suite's expected output (relative sequence numbers, its default), and
    the installed tcpdump with -S (absolute) on the same capture."""
    base = require_captures()
    entry = next(line.split("\t") for line in (base / "tcpdump-TESTLIST.subset").read_text()
                 .splitlines() if line.split("\t")[1] == name)  # fmt: skip
    path = base / entry[0]
    link = "-e" in _TCPDUMP_RUNS[name]
    frames = list(read_file(str(path)))
    theirs = _numbered_lines((path.parent / f"tcpdump__{entry[2]}").read_text())
    same = _compare(_print(path, PrintOptions(link=link, timestamps=1)), theirs)
    readable = sum(1 for f in frames if f.find(IPv4) or f.find(IPv6) or f.find("arp"))
    assert same >= readable  # at least a fact per readable packet, on average
    absolute = _tcpdump(path, "-S", *_TCPDUMP_RUNS[name].split())
    ours = _print(path, PrintOptions(link=link, timestamps=1, absolute_seq=True))
    assert _compare(ours, absolute) >= readable


# -- every real capture ----------------------------------------------------------------------------


def _packet_count(path: Path) -> int:
    done = subprocess.run(["capinfos", "-T", "-r", "-c", "-M", str(path)],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return int(done.stdout.split("\t")[-1])


@pytest.mark.parametrize("path", REAL or [Path("absent")], ids=lambda p: p.name)
def test_every_real_capture_prints_one_line_per_packet(path: Path) -> None:
    require_captures()
    packets = _packet_count(path)
    assert packets > 0
    plain = _print(path, PrintOptions())
    assert len(plain) == packets and all("\n" not in line for line in plain)
    # with every option that adds to a line: still one line per packet, the dump after it
    loud = _print(path, PrintOptions(link=True, hex_ascii=2, timestamps=4, verbose=2))
    heads = [row for line in loud for row in line.split("\n") if not row.startswith("\t")]
    assert len(heads) == packets
    # the sink receive and capture print with, fed the file's records as packets
    stream = io.StringIO()
    sink = PrintSink(stream, options=PrintOptions(absolute_seq=True))
    records = list(read_records([path.read_bytes()]))
    sink.write([Packet(r.ts_ns or 0, r.data, r.origlen, r.linktype, None, r.flags, False, "f")
                for r in records])  # fmt: skip
    sink.close()
    assert len(stream.getvalue().splitlines()) == packets


@pytest.mark.parametrize("path", REAL or [Path("absent")], ids=lambda p: p.name)
@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "S"])
def test_tcp_numbers_match_tcpdump_on_every_real_capture(path: Path, absolute: bool) -> None:
    """``tcpdump -n`` (relative) and ``tcpdump -n -S``: the same ends, flags, seq, ack and
    SACK blocks on every TCP line."""
    require_captures()
    theirs = _tcpdump(path, *(["-S"] if absolute else []))
    ours = _print(path, PrintOptions(timestamps=1, absolute_seq=absolute))
    assert len(ours) == len(theirs)
    tcp = [(a, b) for a, b in zip(ours, theirs, strict=True) if _TCP_LINE.search(a + b)]
    compared = _compare([a for a, _ in tcp], [b for _, b in tcp], {"ends", "flags", "numbers"})
    assert compared == 3 * len(tcp)


def test_real_captures_hold_tcp_conversations() -> None:
    """The test above compares something: many TCP lines, relative numbers among them."""
    require_captures()
    lines = [line for p in REAL for line in _print(p, PrintOptions(timestamps=1))]
    tcp = [line for line in lines if _TCP_LINE.search(line)]
    assert len(tcp) > 500
    assert sum(1 for line in tcp if re.search(r", ack 1,", line)) > 10


# -- crafted conversations -----------------------------------------------------------------------


def _conversations() -> list[bytes]:
    """TCP segments that exercise every rule of tcpdump's relative numbers: a handshake, data
    and SACK both ways, a connection whose capture starts mid-way, a new SYN-ACK on the same
    ends, equal ports (the address decides the collating order: 10.0.0.9 and 10.0.0.10 sort
    differently as text and as bytes), a sequence number wrapping past 2**32, IPv6, TCP
    inside VXLAN, a SYN without ACK and a segment with no flag at all."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6 as IP6
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    e = Ether(**MACS)

    Options = list[tuple[str, object]] | None

    def v4(src: str, dst: str, sport: int, dport: int, flags: str, seq: int, ack: int,
           data: bytes = b"", options: Options = None) -> bytes:  # fmt: skip
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, options=options or [])
        return bytes(e / IP(src=src, dst=dst) / tcp / data)

    a, b = "10.0.0.1", "10.0.0.2"
    sack = [("NOP", None), ("NOP", None), ("SAck", (5001 + 100, 5001 + 200))]
    frames = [
        v4(a, b, 40000, 80, "S", 1000, 0),
        v4(b, a, 80, 40000, "SA", 5000, 1001),
        v4(a, b, 40000, 80, "A", 1001, 5001),
        v4(a, b, 40000, 80, "PA", 1001, 5001, b"x" * 50),
        v4(b, a, 80, 40000, "PA", 5001, 1051, b"y" * 300),
        v4(a, b, 40000, 80, "A", 1051, 5001, options=sack),
        v4(b, a, 80, 40000, "A", 5301, 1051, options=[("SAck", (1100, 1200, 1300, 1400))]),
        v4(a, b, 40000, 80, "FA", 1051, 5301),
        v4(b, a, 80, 40000, "FA", 5301, 1052),
        v4(a, b, 40000, 80, "A", 1052, 5302),
        # the same ends again: the SYN-ACK starts new bases
        v4(a, b, 40000, 80, "S", 90000, 0),
        v4(b, a, 80, 40000, "SA", 70000, 90001),
        v4(a, b, 40000, 80, "PA", 90001, 70001, b"z" * 10),
        # caught mid-way: the first ACK is printed absolute and becomes the base
        v4("10.0.0.3", "10.0.0.4", 5555, 22, "PA", 777777, 333333, b"q" * 20),
        v4("10.0.0.4", "10.0.0.3", 22, 5555, "PA", 333333, 777797, b"r" * 30),
        v4("10.0.0.3", "10.0.0.4", 5555, 22, "A", 777797, 333363),
        # equal ports: BGP between 10.0.0.9 and 10.0.0.10
        v4("10.0.0.10", "10.0.0.9", 179, 179, "PA", 4000, 8000, b"o" * 19),
        v4("10.0.0.9", "10.0.0.10", 179, 179, "PA", 8000, 4019, b"k" * 19),
        v4("10.0.0.10", "10.0.0.9", 179, 179, "A", 4019, 8019),
        # wrapping past 2**32
        v4("10.0.0.5", "10.0.0.6", 1111, 2222, "PA", 0xFFFFFFF0, 10, b"w" * 32),
        v4("10.0.0.6", "10.0.0.5", 2222, 1111, "A", 10, 0x10),
        v4("10.0.0.5", "10.0.0.6", 1111, 2222, "PA", 0x10, 10, b"w" * 8),
        # no ACK: absolute, and nothing recorded
        v4("10.0.0.7", "10.0.0.8", 3333, 4444, "", 123, 0),
        v4("10.0.0.7", "10.0.0.8", 3333, 4444, "R", 124, 0),
        # IPv6
        bytes(
            e
            / IP6(src="fd00::1", dst="fd00::2")
            / TCP(sport=50000, dport=443, flags="SA", seq=10, ack=20)
        ),  # fmt: skip
        bytes(
            e
            / IP6(src="fd00::2", dst="fd00::1")
            / TCP(sport=443, dport=50000, flags="PA", seq=20, ack=11)
            / (b"h" * 5)
        ),  # fmt: skip
    ]
    inner = Ether(**MACS) / IP(src="192.168.0.5", dst="192.168.0.6")
    for flags, seq, ack, data in (("A", 600, 900, b""), ("PA", 600, 900, b"v" * 7)):
        frames.append(bytes(e / IP(src="172.16.0.1", dst="172.16.0.2") / UDP(sport=1, dport=4789)
                            / VXLAN(vni=42) / inner / TCP(sport=4000, dport=22, flags=flags,
                                                           seq=seq, ack=ack) / data))  # fmt: skip
    return frames


@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "S"])
def test_tcp_numbers_match_tcpdump_on_crafted_conversations(tmp_path: Path, absolute: bool) -> None:
    frames = _conversations()
    path = tmp_path / "tcp.pcap"
    path.write_bytes(file_header(65535, LINKTYPE_ETHERNET)
                     + b"".join(record(i * 1000, f) for i, f in enumerate(frames)))  # fmt: skip
    theirs = _tcpdump(path, *(["-S"] if absolute else []))
    ours = _print(path, PrintOptions(timestamps=1, absolute_seq=absolute))
    assert _compare(ours, theirs, {"numbers"}) == len(frames)
    assert all(_facts(line)["numbers"] for line in ours if "Flags [none]" not in line)
    if not absolute:  # the rules above were met, not only matched
        assert ours[2].endswith("Flags [.], ack 1, win 8192, length 0")
        assert "sack 1 {101:201}" in ours[5] and "sack 2 {100:200}{300:400}" in ours[6]
        assert ", seq 1:11, ack 1," in ours[12]
        assert ", seq 777777:777797, ack 333333," in ours[13]
        assert ", seq 32:40, ack 1," in ours[21]


def test_absolute_numbers_are_the_header_s() -> None:
    from vmsniff.dissect import Tcp, decode

    frame = decode(_conversations()[4])
    tcp = frame.find(Tcp)
    assert tcp is not None
    line = Printer(PrintOptions(absolute_seq=True, timestamps=1)).line(frame)
    assert f", seq {tcp.seq}:{tcp.seq + 300}, ack {tcp.ack}," in line


def test_each_printer_keeps_its_own_bases() -> None:
    from vmsniff.dissect import decode

    frames = [decode(f) for f in _conversations()[:3]]
    first, second = Printer(PrintOptions(timestamps=1)), Printer(PrintOptions(timestamps=1))
    assert [first.line(f) for f in frames] == [second.line(f) for f in frames]
    # a printer that missed the SYN-ACK counts from the segment it saw first
    late = Printer(PrintOptions(timestamps=1)).line(frames[2])
    assert ", ack 5001," in late


def test_the_oldest_connection_s_bases_are_forgotten_past_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tcpdump keeps every connection's bases for the whole run; a printer for a long live
    run keeps the ``_MAX_CONNECTIONS`` (here 2) recorded last: a forgotten connection starts
    over, its next segment printed absolute."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    from vmsniff.dissect import decode
    from vmsniff.dissect import printer as module

    monkeypatch.setattr(module, "_MAX_CONNECTIONS", 2)

    def seg(port: int, seq: int) -> str:
        frame = (
            Ether(**MACS)
            / IP(src="10.0.0.1", dst="10.0.0.2")
            / TCP(sport=port, dport=80, flags="A", seq=seq, ack=500)
        )
        return printer.line(decode(bytes(frame)))  # fmt: skip

    printer = Printer(PrintOptions(timestamps=1))
    assert "ack 500," in seg(1001, 7) and "ack 500," in seg(1002, 7)
    assert "ack 1," in seg(1001, 7)  # remembered
    assert "ack 500," in seg(1003, 7)  # a third connection: 1001's, recorded first, go
    assert "ack 1," in seg(1002, 7) and "ack 1," in seg(1003, 7)
    assert "ack 500," in seg(1001, 7)  # 1001 starts over (and 1002's go)
    assert "ack 1," in seg(1001, 7) and "ack 500," in seg(1002, 7)
