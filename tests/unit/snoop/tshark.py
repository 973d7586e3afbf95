"""tshark's view of a snoop capture: expert findings, checksum status, reassembled streams.

Shared by the unit tests (frames from the synthesis alone) and the functional ones (captures the
relay wrote while a real ovs-vswitchd talked to a real controller).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

#: Wireshark's expert severities (epan/proto.h): chat 0x200000, note, warn, error above it.
CHAT = 0x200000
#: Notes every orderly close earns (tcp.connection.fin_active / fin_passive): not problems.
FIN_NOTES = ("This frame initiates the connection closing", "This frame undergoes the connection")
_CHECK = ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]


def _tshark(*args: str) -> str:
    done = subprocess.run(["tshark", "-n", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def fields(
    path: Path, *names: str, display: str | None = None, decode: str | None = None
) -> list[list[str]]:
    """One list of field values per frame (checksums verified); ``decode`` is a decode-as
    rule (``tcp.port==6653,tls``)."""
    args = ["-r", str(path), *_CHECK, "-T", "fields"]
    if decode:
        args += ["-d", decode]
    if display:
        args += ["-Y", display]
    for name in names:
        args += ["-e", name]
    return [line.split("\t") for line in _tshark(*args).splitlines()]


def problems(path: Path, *, allow: tuple[str, ...] = ()) -> list[str]:
    """Every finding above "chat" (expert notes, warnings, errors, malformed packets) and
    every checksum tshark does not call good; messages starting with one of ``allow`` (for
    example the RST of an abrupt close, which Wireshark files as a warning) are left out."""
    rows = fields(
        path,
        "frame.number",
        "_ws.expert.severity",
        "_ws.expert.message",
        "ip.checksum.status",
        "tcp.checksum.status",
        "_ws.malformed",
    )
    allow = FIN_NOTES + allow
    found = []
    for number, severities, messages, ip_ok, tcp_ok, malformed in rows:
        for sev, msg in zip(severities.split(","), messages.split(","), strict=False):
            if sev and int(sev) > CHAT and not msg.startswith(allow):
                found.append(f"frame {number}: {msg}")
        if ip_ok not in ("", "1") or tcp_ok != "1":
            found.append(f"frame {number}: checksum status ip={ip_ok} tcp={tcp_ok}")
        if malformed:
            found.append(f"frame {number}: malformed")
    return found


def streams(path: Path) -> int:
    """How many TCP conversations tshark sees."""
    ids = {row[0] for row in fields(path, "tcp.stream") if row[0]}
    return len(ids)


def follow(path: Path, stream: int) -> tuple[tuple[str, str], bytes, bytes]:
    """tshark's reassembly of one TCP stream: (client node, server node), the bytes the
    client sent, the bytes the server sent ("Follow TCP Stream", raw)."""
    out = _tshark("-r", str(path), "-q", "-z", f"follow,tcp,raw,{stream}")
    nodes: list[str] = []
    sent = {0: bytearray(), 1: bytearray()}
    body = False
    for line in out.splitlines():
        if line.startswith("Node "):
            nodes.append(line.split(": ", 1)[1])
            continue
        if line.startswith("====") and nodes:
            break
        if len(nodes) == 2 and line.strip():
            body = True
        if body:
            side = 1 if line.startswith("\t") else 0
            sent[side] += bytes.fromhex(line.strip())
    assert len(nodes) == 2, out[:2000]
    return (nodes[0], nodes[1]), bytes(sent[0]), bytes(sent[1])
