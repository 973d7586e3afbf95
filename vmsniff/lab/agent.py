"""The lab's traffic agent, run inside a VM namespace (``ip netns exec NS python -m ...``).

``serve`` echoes UDP datagrams and TCP bytes back until stdin closes; ``send`` makes a
known, countable amount of traffic toward a peer and prints one JSON line of what it sent
and what came back. ``send --source ADDRESS`` binds every socket to that address (one NIC
of a VM with several). ICMP echo goes through a raw socket (the lab runs as root), so full
1500-byte IP packets can be sent with the don't-fragment bit set.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from typing import Any

UDP_PORT = 7001
TCP_PORT = 7002
ICMP_ECHO, ICMP_ECHO_REPLY = 8, 0
IP_PMTUDISC_DO = 2


def _checksum(data: bytes) -> int:
    # RFC 1071 one's-complement sum.
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def _icmp(
    peer: str, source: str, count: int, payload: int, ident: int, timeout: float
) -> dict[str, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_MTU_DISCOVER", 10), IP_PMTUDISC_DO)
    sock.bind((source, 0))
    replies = 0
    with sock:
        for seq in range(1, count + 1):
            body = bytes((seq + i) & 0xFF for i in range(payload))
            header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
            packet = header + body
            packet = packet[:2] + struct.pack("!H", _checksum(packet)) + packet[4:]
            sock.sendto(packet, (peer, 0))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                data = sock.recv(65535)
                ihl = (data[0] & 0x0F) * 4
                rtype, _, _, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
                if rtype == ICMP_ECHO_REPLY and rid == ident and rseq == seq:
                    replies += 1
                    break
    return {"sent": count, "replies": replies, "ip_bytes": 20 + 8 + payload}


def _udp(peer: str, source: str, count: int, size: int, timeout: float) -> dict[str, int]:
    replies = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout)
        for i in range(count):
            sock.sendto(i.to_bytes(4, "big") + b"u" * (size - 4), (peer, UDP_PORT))
            try:
                data, _ = sock.recvfrom(65535)
                replies += data[:4] == i.to_bytes(4, "big")
            except TimeoutError:
                pass
    return {"sent": count, "replies": replies, "ip_bytes": 20 + 8 + size}


def _tcp(peer: str, source: str, count: int, size: int, timeout: float) -> dict[str, int]:
    echoed = 0
    with socket.create_connection(
        (peer, TCP_PORT), timeout=timeout, source_address=(source, 0)
    ) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            sock.sendall(b"t" * size)
            got = 0
            while got < size:
                chunk = sock.recv(size - got)
                if not chunk:
                    break
                got += len(chunk)
            echoed += got == size
    return {"sent": count, "replies": echoed, "bytes": count * size}


def send(args: argparse.Namespace) -> dict[str, Any]:
    """Send the traffic mix to ``args.peer``; return what was sent and answered."""
    ident = os.getpid() & 0xFFFF
    peer, src = args.peer, args.source
    return {
        "icmp": _icmp(peer, src, args.count, 56, ident, args.timeout),
        "udp": _udp(peer, src, args.count, 100, args.timeout),
        "tcp": _tcp(peer, src, args.count, 200, args.timeout),
        # 1472 bytes of ICMP payload + 8 + 20 = a full 1500-byte IP packet.
        "icmp_full": _icmp(peer, src, args.count, 1472, ident ^ 0x5A5A, args.timeout),
    }


def serve(args: argparse.Namespace) -> None:
    """Echo UDP and TCP until stdin is closed (the parent controls the lifetime)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((args.bind, UDP_PORT))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((args.bind, TCP_PORT))
    tcp.listen(8)

    def _echo_udp() -> None:
        while True:
            try:
                data, addr = udp.recvfrom(65535)
            except OSError:
                return
            udp.sendto(data, addr)

    def _echo_tcp() -> None:
        while True:
            try:
                conn, _ = tcp.accept()
            except OSError:
                return
            with conn:
                while chunk := conn.recv(65536):
                    conn.sendall(chunk)

    for target in (_echo_udp, _echo_tcp):
        threading.Thread(target=target, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin


def main() -> None:
    parser = argparse.ArgumentParser(prog="vmsniff.lab.agent")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_send = sub.add_parser("send")
    p_send.add_argument("peer")
    p_send.add_argument("--source", default="0.0.0.0", help="address to send from")
    p_send.add_argument("--count", type=int, default=5)
    p_send.add_argument("--timeout", type=float, default=1.0)
    p_serve = sub.add_parser("serve")
    p_serve.add_argument("--bind", default="0.0.0.0")
    args = parser.parse_args()
    if args.cmd == "send":
        print(json.dumps(send(args)), flush=True)
    else:
        serve(args)


if __name__ == "__main__":
    main()
