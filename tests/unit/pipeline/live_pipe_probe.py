"""Run inside ``unshare -n`` (only ``lo``): ``vmsniff receive -i lo -w - --key 100`` piped into
this process, while GRE packets go over loopback, then compare what came out of the pipe with
what was sent. Prints JSON: the frames expected and the frames read (hex), and receive's stats.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from tests.unit.pipeline.helpers import gre, icmp_frame  # noqa: E402
from vmsniff.pcap.reader import read_records  # noqa: E402


def main() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmsniff", "receive", "-i", "lo", "-w", "-", "--key", "100",
         "--json", "icmp"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    out = bytearray()

    def drain() -> None:  # a reader slower than the writer: small reads, with pauses
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(4096):
            out.extend(chunk)
            time.sleep(0.0005)

    reader = threading.Thread(target=drain)
    reader.start()
    time.sleep(1.5)  # ring open, filter attached
    rng = random.Random(7)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM)
    want = []
    for n in range(3000):
        size = 0 if n < 1500 else rng.choice([0, 500, 1400])  # a long run, then mixed sizes
        inner = icmp_frame(n, size=size)
        key = 100 if n % 13 else 7  # another session: dropped
        if key == 100:
            want.append(inner)
        sock.sendto(gre(inner, key=key), ("lo", 0x0800))
        if n % 200 == 0:
            time.sleep(0.01)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    reader.join()
    got = [r.data for r in read_records([bytes(out)])]
    text = err.decode()
    stats = json.loads(text[text.index("{") :])
    print(json.dumps({"want": [f.hex() for f in want], "got": [f.hex() for f in got],
                      "stats": stats, "rc": proc.returncode}))  # fmt: skip


if __name__ == "__main__":
    main()
