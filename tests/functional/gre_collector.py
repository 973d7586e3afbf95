"""Run inside the receiver namespace: collect GRE packets until stdin closes.

Prints "ready", then on EOF one JSON line: a list of [key, inner_frame_hex, outer_ip_len].
Deliberately independent of vmsniff's own decoders (the tests check vmsniff against it).
"""

import json
import select
import socket
import struct
import sys

sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
print("ready", flush=True)
got = []
while True:
    ready, _, _ = select.select([sock, sys.stdin], [], [], 0.2)
    if sock in ready:
        data = sock.recv(65535)
        ihl = (data[0] & 0x0F) * 4
        flags, proto = struct.unpack_from("!HH", data, ihl)
        off = ihl + 4
        if flags & 0x8000:
            off += 4
        key = None
        if flags & 0x2000:
            (key,) = struct.unpack_from("!I", data, off)
            off += 4
        if flags & 0x1000:
            off += 4
        got.append([key, data[off:].hex(), len(data)])
    if sys.stdin in ready and not sys.stdin.readline():
        break
print(json.dumps(got), flush=True)
