"""Crafting helpers for pipeline tests: GRE/ERSPAN envelopes from vmsniff.wire's encoders."""

from __future__ import annotations

import subprocess
from pathlib import Path

from vmsniff.wire.erspan import ErspanII, ErspanIII, encode_erspan_ii, encode_erspan_iii
from vmsniff.wire.gre import encode_gre
from vmsniff.wire.ipv4 import encode_ipv4

HV = bytes([10, 250, 0, 1])
RX = bytes([10, 250, 0, 2])


def eth(payload: bytes = b"", *, vlan: int | None = None, etype: int = 0x0800) -> bytes:
    head = bytes.fromhex("020000000002") + bytes.fromhex("020000000001")
    if vlan is not None:
        head += b"\x81\x00" + vlan.to_bytes(2, "big")
    return head + etype.to_bytes(2, "big") + payload


def icmp_frame(n: int, *, vlan: int | None = None, size: int = 0) -> bytes:
    """An Ethernet/IPv4/ICMP echo numbered ``n`` (in the id field), padded by ``size``."""
    icmp = b"\x08\x00\x00\x00" + n.to_bytes(2, "big") + b"\x00\x01" + bytes(size)
    ip = encode_ipv4(bytes([192, 168, 0, 1]), bytes([192, 168, 0, 2]), 1, icmp, ident=n)
    return eth(ip, vlan=vlan)


def gre(
    inner: bytes,
    *,
    key: int | None = None,
    seq: int | None = None,
    proto: int = 0x6558,
    src: bytes = HV,
    checksum: bool = False,
    total_length: int | None = None,
) -> bytes:
    """An outer IPv4 packet carrying GRE around ``inner``."""
    payload = encode_gre(proto, inner, key=key, seq=seq, with_checksum=checksum)
    return encode_ipv4(src, RX, 47, payload, total_length=total_length)


def erspan2(inner: bytes, session: int, *, seq: int = 1) -> bytes:
    head = encode_erspan_ii(ErspanII(vlan=0, cos=0, en=0, t=0, session_id=session, index=0))
    return encode_ipv4(HV, RX, 47, encode_gre(0x88BE, head + inner, seq=seq))


def erspan3(inner: bytes, session: int, *, d: int) -> bytes:
    h = ErspanIII(
        vlan=0, cos=0, bso=0, t=0, session_id=session, timestamp=0, sgt=0, p=0, ft=0,
        hw_id=0, d=d, gra=0,
    )  # fmt: skip
    return encode_ipv4(HV, RX, 47, encode_gre(0x22EB, encode_erspan_iii(h) + inner))


def tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    """tshark's view of a file: one list of field values per frame; fails on any warning."""
    args = ["tshark", "-n", "-r", str(path), "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    err = "\n".join(
        line for line in done.stderr.splitlines() if "Running as user" not in line and line
    )
    assert not err, err
    return [line.split("\t") for line in done.stdout.splitlines()]
