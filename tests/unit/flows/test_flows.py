"""vmsniff flows: conversations, packets and bytes as tshark counts them; Zeek's TCP states."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.unit.wire.conftest import captures_path, require_captures
from vmsniff.dissect import flow_key
from vmsniff.flows.files import table_of_files
from vmsniff.flows.table import FlowTable
from vmsniff.formats.capture import LINKTYPE_ETHERNET
from vmsniff.pcap.pcap import file_header, record

ROOT = Path(__file__).resolve().parents[3]
CAPTURES = captures_path()
A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def _tcp(src: str, dst: str, sport: int, dport: int, flags: str, payload: bytes = b"",
         vlan: int | None = None) -> bytes:  # fmt: skip
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Dot1Q, Ether

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    ip = IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / payload
    return bytes(eth / Dot1Q(vlan=vlan) / ip if vlan is not None else eth / ip)


def _udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"x") -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    return bytes(Ether(**MACS) / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload)


def _icmp(src: str, dst: str, kind: int, ident: int) -> bytes:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether

    return bytes(Ether(**MACS) / IP(src=src, dst=dst) / ICMP(type=kind, id=ident))


def _ipv6_tcp(flags: str, forward: bool) -> bytes:
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    a, b = "fd00::1", "fd00::2"
    src, dst, sport, dport = (a, b, 40000, 443) if forward else (b, a, 443, 40000)
    return bytes(
        Ether(**MACS) / IPv6(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags)
    )


def _vxlan_tcp(flags: str) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    inner = _tcp(C, A, 5555, 80, flags)
    outer = Ether(**MACS) / IP(src="192.168.0.1", dst="192.168.0.2") / UDP(sport=1234, dport=4789)
    return bytes(outer / VXLAN(vni=42) / Ether(inner))


def _pcap(path: Path, frames: list[bytes]) -> Path:
    path.write_bytes(file_header(65535, LINKTYPE_ETHERNET)
                     + b"".join(record(i * 1000, f) for i, f in enumerate(frames)))  # fmt: skip
    return path


def _scenarios() -> list[bytes]:
    frames = []
    # SF: handshake, data both ways, FINs
    frames += [
        _tcp(A, B, 1000, 80, "S"),
        _tcp(B, A, 80, 1000, "SA"),
        _tcp(A, B, 1000, 80, "A"),
        _tcp(A, B, 1000, 80, "PA", b"GET /"),
        _tcp(B, A, 80, 1000, "PA", b"200 OK"),
        _tcp(A, B, 1000, 80, "FA"),
        _tcp(B, A, 80, 1000, "FA"),
        _tcp(A, B, 1000, 80, "A"),
    ]
    frames += [_tcp(A, B, 1001, 81, "S")]  # S0
    frames += [_tcp(A, B, 1002, 82, "S"), _tcp(B, A, 82, 1002, "RA")]  # REJ
    frames += [
        _tcp(A, B, 1003, 83, "S"),
        _tcp(B, A, 83, 1003, "SA"),
        _tcp(A, B, 1003, 83, "A"),
        _tcp(A, B, 1003, 83, "R"),
    ]  # RSTO
    frames += [_tcp(A, B, 1004, 84, "PA", b"mid"), _tcp(B, A, 84, 1004, "A")]  # OTH
    frames += [_tcp(A, B, 1005, 85, "S"), _tcp(B, A, 85, 1005, "SA"), _tcp(A, B, 1005, 85, "A")]
    frames += [_tcp(B, C, 2000, 443, "S", vlan=7), _tcp(C, B, 443, 2000, "SA", vlan=7)]
    frames += [_udp(A, C, 5353, 53), _udp(C, A, 53, 5353), _udp(A, C, 5354, 53)]
    frames += [_icmp(A, B, 8, 77), _icmp(B, A, 0, 77), _icmp(A, B, 8, 78)]
    frames += [_ipv6_tcp("S", True), _ipv6_tcp("SA", False), _ipv6_tcp("A", True)]
    frames += [_vxlan_tcp("S")]
    return frames


def test_tcp_states_and_histories_as_zeek_names_them(tmp_path: Path) -> None:
    table = table_of_files([str(_pcap(tmp_path / "s.pcap", _scenarios()))])
    got = {(f.orig_port, f.resp_port): (f.state, f.history) for f in table.flows() if f.proto == 6}
    assert got[(1000, 80)] == ("SF", "ShADdFf")  # the responder sent no pure ACK: no "a"
    assert got[(1001, 81)] == ("S0", "S")
    assert got[(1002, 82)] == ("REJ", "Sr")
    assert got[(1003, 83)] == ("RSTO", "ShAR")
    assert got[(1004, 84)] == ("OTH", "Da")
    assert got[(1005, 85)] == ("S1", "ShA")
    assert got[(2000, 443)] == ("S1", "Sh")
    assert got[(40000, 443)] == ("S1", "ShA")  # IPv6
    assert got[(5555, 80)][0] == "S0"  # inside VXLAN


def test_the_originator_of_a_flow_first_seen_at_its_syn_ack_is_the_receiver() -> None:
    table = FlowTable()
    synack = flow_key(_tcp(B, A, 80, 1000, "SA"), LINKTYPE_ETHERNET)
    table.add(1, synack)
    (flow,) = table.flows()
    assert (flow.orig_port, flow.resp_port, flow.resp_packets, flow.history) == (1000, 80, 1, "h")


def test_vlan_and_tunnel_key_are_part_of_the_flow(tmp_path: Path) -> None:
    table = table_of_files([str(_pcap(tmp_path / "s.pcap", _scenarios()))])
    by_port = {f.orig_port: f for f in table.flows() if f.proto == 6}
    assert by_port[2000].vlan == 7 and by_port[2000].vni is None
    assert by_port[5555].vni == 42 and by_port[5555].vlan is None


def _tshark_streams(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """tshark's conversations: (tcp|udp, stream) -> frames and bytes of each direction, the
    direction named by the stream's first packet. A frame belongs to its innermost TCP/UDP
    through tunnels, but not to one quoted inside an ICMP error or an OpenFlow message
    (tshark gives those conversations too; they are other flows' packets)."""
    done = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=a",
         "-e", "frame.protocols", "-e", "tcp.stream", "-e", "udp.stream", "-e", "tcp.srcport",
         "-e", "udp.srcport", "-e", "ip.src", "-e", "ipv6.src", "-e", "frame.len"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for line in done.stdout.splitlines():
        protocols, tcp_s, udp_s, tcp_p, udp_p, ip_src, ip6_src, length = line.split("\t")
        values = {"tcp": (tcp_s.split(","), tcp_p.split(",")),
                  "udp": (udp_s.split(","), udp_p.split(","))}  # fmt: skip
        sources = {"ip": ip_src.split(","), "ipv6": ip6_src.split(",")}
        chosen = None
        seen = {"tcp": 0, "udp": 0, "ip": 0, "ipv6": 0}
        last_ip = ""
        for layer in protocols.split(":"):
            if layer.startswith(("icmp", "openflow")):
                break
            if layer in ("vxlan", "geneve", "gre"):
                chosen = None  # what came before was the tunnel's envelope
            if layer in ("ip", "ipv6"):
                last_ip = sources[layer][seen[layer]] if seen[layer] < len(sources[layer]) else ""
            if layer in seen:
                if layer in ("tcp", "udp"):
                    chosen = (layer, seen[layer], last_ip)
                seen[layer] += 1
        if chosen is None:
            continue
        proto, index, src = chosen
        streams, ports = values[proto]
        if index >= len(streams) or not streams[index]:
            continue
        end = (src, ports[index])
        conv = out.setdefault((proto, int(streams[index])),
                              {"first": end, "fwd": [0, 0], "back": [0, 0]})  # fmt: skip
        side = conv["fwd"] if end == conv["first"] else conv["back"]
        side[0] += 1
        side[1] += int(length)
    return out


def _compare_with_tshark(path: Path) -> None:
    table = table_of_files([str(path)])
    ours = defaultdict(list)
    for f in table.flows():
        if f.ip and f.proto in (6, 17):
            counts = sorted([(f.orig_packets, f.orig_bytes), (f.resp_packets, f.resp_bytes)])
            ours["tcp" if f.proto == 6 else "udp"].append(counts)
    theirs = defaultdict(list)
    for (proto, _stream), conv in _tshark_streams(path).items():
        theirs[proto].append(sorted([tuple(conv["fwd"]), tuple(conv["back"])]))
    for proto in ("tcp", "udp"):
        assert sorted(ours[proto]) == sorted(theirs[proto]), proto


def test_conversations_packets_and_bytes_match_tshark_on_crafted_traffic(tmp_path: Path) -> None:
    _compare_with_tshark(_pcap(tmp_path / "s.pcap", _scenarios()))


REAL = sorted(p for p in CAPTURES.rglob("*.pcap*") if not p.name.endswith((".tsv", ".out")))
NOT_COMPARABLE = {
    "zeek__fragmented-1.pcap": "tshark counts a reassembled datagram once, in the frame that "
    "completed it; vmsniff counts every fragment on the wire in the first one's flow",
    "zeek__ipv6-fragmented-dns.pcap": "IPv6 fragments: counted as on the wire (see above)",
    "zeek__erspan.pcap": "its GRE packets are IP-fragmented: tshark reassembles the tunnel and "
    "counts the inner TCP once; vmsniff does not reassemble tunnels and counts the fragments",
    "zeek__vlan-pcp-dei.pcapng": "one conversation's packets come tagged and untagged; vmsniff "
    "keeps VLANs apart (tenant networks reuse addresses), tshark's streams ignore them",
}


@pytest.mark.parametrize("path", REAL or [Path("absent")], ids=lambda p: p.name)
def test_conversations_match_tshark_on_real_captures(path: Path) -> None:
    require_captures()
    if path.name in NOT_COMPARABLE:
        pytest.skip(NOT_COMPARABLE[path.name])
    _compare_with_tshark(path)


def test_cli_json_and_filter(tmp_path: Path) -> None:
    path = _pcap(tmp_path / "s.pcap", _scenarios())
    done = subprocess.run([sys.executable, "-m", "vmsniff", "flows", str(path), "--json",
                           "--sort", "packets", "--top", "1", "tcp", "port", "80", "or", "tcp",
                           "port", "81"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["packets"] == 9  # the SF flow's 8 and the S0 SYN (libpcap: not inside VXLAN)
    assert doc["rows"][0]["conn_state"] == "SF" and doc["rows"][0]["orig_packets"] == 5
    assert len(doc["rows"]) == 1 and doc["flows"] == 2


def test_cli_refuses_a_missing_file_and_a_bad_filter(tmp_path: Path) -> None:
    path = _pcap(tmp_path / "s.pcap", _scenarios())
    for args, code in (([str(tmp_path / "nope.pcap")], 2), ([str(path), "tcp", "portt"], 2)):
        done = subprocess.run([sys.executable, "-m", "vmsniff", "flows", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == code, done.stderr


def _bench_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_flows", ROOT / "bench" / "flows.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("chunk", [1 << 12, 1 << 16, 1 << 23])
def test_the_block_path_gives_the_per_packet_table(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same flows, counts, times, states and histories from both paths: on interleaved
    TCP/UDP flows (the benchmark's traffic) with the crafted scenarios appended (VLAN, IPv6,
    VXLAN, ICMP: the per-packet path inside the block path), cut into chunks of several
    sizes (records cut across chunks)."""
    import vmsniff.flows.fast as fast

    path = tmp_path / "mixed.pcap"
    _bench_module().write_pcap(path, 6000, 300)
    extra = _scenarios()
    data = path.read_bytes() + b"".join(record(10**12 + i, f) for i, f in enumerate(extra))
    path.write_bytes(data)
    monkeypatch.setattr(fast, "CHUNK", chunk)
    slow = sorted(table_of_files([str(path)], block_path=False).flows(), key=repr)
    quick = sorted(table_of_files([str(path)]).flows(), key=repr)
    assert len(quick) == 300 + 13
    assert quick == slow


def test_list_fields_names_every_layer_and_constant() -> None:
    done = subprocess.run([sys.executable, "-m", "vmsniff", "flows", "--list-fields", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    from vmsniff.dissect import LAYERS

    assert list(doc["layers"]) == [cls.name for cls in LAYERS]
    assert {"field": "sport", "type": "int", "doc": "source port"} in doc["layers"]["tcp"]
    assert doc["constants"]["TcpFlags"]["SYN"] == 2
