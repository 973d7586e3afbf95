"""Seed inputs: the real captures in ../shared/captures and frames built with vmsniff's own
encoders (and scapy, for what they do not build: IPv6 with extension headers, inner TCP).

The captures are not part of the project (their README: never commit them); found through
``VMSNIFF_CAPTURES``, else ``../shared/captures`` from the project root. Without them the
fuzzer still runs on the built seeds, and says so.
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

from vmsniff.errors import MalformedPacket
from vmsniff.formats.capture import LINKTYPE_ETHERNET, LINKTYPE_RAW
from vmsniff.pcap.pcap import file_header, record
from vmsniff.pcap.pcapng import (
    enhanced_packet_block,
    interface_description_block,
    section_header_block,
)
from vmsniff.pcap.reader import read_records
from vmsniff.wire.erspan import ErspanII, ErspanIII, encode_erspan_ii, encode_erspan_iii
from vmsniff.wire.gre import encode_gre
from vmsniff.wire.ipv4 import encode_ipv4

__all__ = ["built_frames", "capture_files", "capture_frames", "captures_dir"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_CATEGORIES = ("gre", "erspan", "malformed", "mixed")
HV = bytes([10, 250, 0, 1])
RX = bytes([10, 250, 0, 2])
MAC = bytes.fromhex("020000000002020000000001")


def captures_dir() -> Path | None:
    """The captures directory, or None when absent."""
    env = os.environ.get("VMSNIFF_CAPTURES")
    path = Path(env) if env else (PROJECT_ROOT / ".." / "shared" / "captures").resolve()
    return path if path.is_dir() else None


def capture_files(suffix: str) -> list[bytes]:
    """Whole capture files (``.pcap`` or ``.pcapng``) of the seed categories."""
    root = captures_dir()
    if root is None:
        return []
    out = []
    for cat in _CATEGORIES:
        for f in sorted((root / cat).glob(f"*{suffix}")):
            if f.suffix == suffix and not f.is_symlink():
                out.append(f.read_bytes())
    return out


def capture_frames(categories: tuple[str, ...] = _CATEGORIES) -> list[tuple[int, bytes]]:
    """``(linktype, frame)`` of every record of the captures in ``categories``."""
    root = captures_dir()
    if root is None:
        return []
    out = []
    for cat in categories:
        for f in sorted((root / cat).iterdir()):
            if f.suffix not in (".pcap", ".pcapng") or f.is_symlink():
                continue
            try:
                out += [(r.linktype, r.data) for r in read_records([f.read_bytes()])]
            except MalformedPacket:
                pass  # a damaged capture file: its frames are not seeds
    return out


def _eth(payload: bytes, etype: int = 0x0800, vlan: int | None = None) -> bytes:
    tag = b"" if vlan is None else b"\x81\x00" + vlan.to_bytes(2, "big")
    return MAC + tag + etype.to_bytes(2, "big") + payload


def _inner(rng: random.Random) -> bytes:
    icmp = b"\x08\x00\x00\x00" + rng.randbytes(4) + bytes(rng.choice((0, 8, 56, 1400)))
    ip = encode_ipv4(bytes([192, 168, 0, 1]), bytes([192, 168, 0, 2]), 1, icmp)
    return _eth(ip, vlan=rng.choice((None, 100)))


def _ipv6(src: bytes, dst: bytes, nh: int, payload: bytes, ext: bytes = b"") -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(ext) + len(payload), nh, 64, src, dst) + (
        ext + payload
    )


def built_frames(rng: random.Random) -> list[tuple[int, bytes]]:
    """``(linktype, frame)``: GRE and ERSPAN envelopes in every shape decap knows."""
    out: list[tuple[int, bytes]] = []
    for _ in range(8):
        inner = _inner(rng)
        key = rng.choice((None, 0, 4242, 0xFFFFFFFF))
        seq = rng.choice((None, 1, 0xFFFFFFFF))
        g = encode_gre(0x6558, inner, key=key, seq=seq, with_checksum=rng.random() < 0.3)
        out.append((LINKTYPE_RAW, encode_ipv4(HV, RX, 47, g)))
        out.append((LINKTYPE_ETHERNET, _eth(encode_ipv4(HV, RX, 47, g))))
        # ERSPAN I, II, III (with and without the platform subheader, both frame types)
        e1 = encode_gre(0x88BE, inner)
        e2 = encode_gre(0x88BE, encode_erspan_ii(ErspanII(100, 1, 3, 0, 7, 0)) + inner, seq=5)
        plat = rng.random() < 0.5
        h3 = ErspanIII(100, 0, 0, 0, 7, 123, 0, 0, 0, 1, rng.randrange(2), 0,
                       3 if plat else None, 9 if plat else None)  # fmt: skip
        e3 = encode_gre(0x22EB, encode_erspan_iii(h3) + inner, seq=rng.choice((None, 6)))
        for e in (e1, e2, e3):
            out.append((LINKTYPE_ETHERNET, _eth(encode_ipv4(HV, RX, 47, e))))
        # raw IP inner, snaplen-cut outer (claimed total above what we have)
        ip_in = inner[14:]
        out.append((LINKTYPE_RAW, encode_ipv4(HV, RX, 47, encode_gre(0x0800, ip_in))))
        cut = encode_ipv4(HV, RX, 47, g, total_length=20 + len(g) + 500)
        out.append((LINKTYPE_RAW, cut))
        # outer IPv6, with a hop-by-hop header
        src6, dst6 = b"\xfd" + bytes(14) + b"\x01", b"\xfd" + bytes(14) + b"\x02"
        out.append((LINKTYPE_RAW, _ipv6(src6, dst6, 47, g)))
        hbh = bytes([47, 0]) + bytes(6)
        out.append((LINKTYPE_ETHERNET, _eth(_ipv6(src6, dst6, 0, g, hbh), 0x86DD)))
    out += _scapy_frames()
    return out


def _scapy_frames() -> list[tuple[int, bytes]]:
    """A few frames scapy builds better: IPv6 routing/destination headers, GRE with TCP."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting
    from scapy.layers.l2 import GRE, Ether

    ether = Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")  # no ARP lookup, no warning

    inner = bytes(ether / IP(src="192.168.0.1", dst="192.168.0.2") / TCP(dport=22, flags="S"))
    out = []
    for ext in (IPv6ExtHdrRouting(addresses=["fd00::9"]), IPv6ExtHdrDestOpt()):
        pkt = ether / IPv6(src="fd00::1", dst="fd00::2") / ext / GRE(proto=0x6558, key_present=1,
                                                                        key=7)  # fmt: skip
        out.append((LINKTYPE_ETHERNET, bytes(pkt) + inner))
    gre = GRE(proto=0x6558, seqnum_present=1, sequence_number=3)
    pkt4 = IP(src="10.250.0.1", dst="10.250.0.2") / gre
    out.append((LINKTYPE_RAW, bytes(pkt4) + inner))
    return out


def built_pcap(frames: list[tuple[int, bytes]], rng: random.Random) -> list[bytes]:
    """pcap files (both timestamp resolutions, both byte orders) of ``frames``."""
    files = []
    for nano in (False, True):
        body = b"".join(record(i * 1_000_003, f, len(f) + rng.choice((0, 0, 7)), nanosecond=nano)
                        for i, (_, f) in enumerate(frames[:6]))  # fmt: skip
        files.append(file_header(262144, LINKTYPE_ETHERNET, nanosecond=nano) + body)
    # big-endian by hand: swap every 32-bit/16-bit header field
    le = files[0]
    magic, vmaj, vmin, zone, sig, snap, lt = struct.unpack_from("<IHHiIII", le)
    be = struct.pack(">IHHiIII", magic, vmaj, vmin, zone, sig, snap, lt)
    pos = 24
    while pos < len(le):
        sec, usec, cap, orig = struct.unpack_from("<IIII", le, pos)
        be += struct.pack(">IIII", sec, usec, cap, orig) + le[pos + 16 : pos + 16 + cap]
        pos += 16 + cap
    files.append(be)
    return files


def built_pcapng(frames: list[tuple[int, bytes]], rng: random.Random) -> list[bytes]:
    """pcapng files: two interfaces (one nanosecond), directions, a comment, a second section."""
    out = []
    for _ in range(3):
        shb = section_header_block(userappl="vmsniff fuzz", comment="seed")
        idb0 = interface_description_block(LINKTYPE_ETHERNET, 262144, name="eth0")
        idb1 = interface_description_block(LINKTYPE_RAW, 65535, name="gre0", tsresol=6)
        epbs = b"".join(
            enhanced_packet_block(i % 2, i * 1_000_000_007, f, len(f) + rng.choice((0, 3)),
                                  flags=rng.choice((None, 1, 2)), tsresol=9 - 3 * (i % 2))
            for i, (_, f) in enumerate(frames[:5])
        )  # fmt: skip
        out.append(shb + idb0 + idb1 + epbs + shb + idb0 + epbs[: len(epbs) // 2 // 4 * 4])
    for e in ("<", ">"):
        out.append(_odd_pcapng(e, [f for _, f in frames[:4]]))
    return out


def _ng_block(e: str, btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return (
        struct.pack(e + "II", btype, 12 + len(body)) + body + struct.pack(e + "I", 12 + len(body))
    )


def _ng_option(e: str, code: int, value: bytes) -> bytes:
    return struct.pack(e + "HH", code, len(value)) + value + bytes(-len(value) % 4)


def _odd_pcapng(e: str, frames: list[bytes]) -> bytes:
    """A section in byte order ``e`` with what vmsniff's encoders never write: binary and
    coarse ``if_tsresol``, ``if_tsoffset``, a snaplen, Simple and obsolete Packet Blocks, a
    block type nobody knows."""
    shb = _ng_block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts0 = _ng_option(e, 9, bytes([0x80 | 20])) + _ng_option(e, 14, struct.pack(e + "q", 7))
    idb0 = _ng_block(e, 1, struct.pack(e + "HHI", 1, 0, 96) + opts0 + bytes(4))
    idb1 = _ng_block(e, 1, struct.pack(e + "HHI", 101, 0, 0) + _ng_option(e, 9, b"\x0c"))
    out = shb + idb0 + idb1
    for i, f in enumerate(frames):
        out += _ng_block(e, 3, struct.pack(e + "I", len(f)) + f)  # SPB: interface 0
        out += _ng_block(e, 2, struct.pack(e + "HHIIII", 1, 0, 0, i, len(f), len(f)) + f)
        out += _ng_block(e, 0x0BAD, b"custom")
    return out
