"""Run the stand-in until SIGTERM or SIGINT.

``python -m vmsniff.lab.cloud --inventory FILE [--host ADDRESS] [--port 0] [--port-file FILE]
[--pidfile FILE] [--log FILE]``

The port file and the pidfile are written (atomically) only once the socket is bound, so a
starter can poll for the port file and then connect; both are removed on a clean exit.
Exit status: 0 after a signal, 2 for a bad option or inventory.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from vmsniff.lab.cloud.inventory import InventoryError, load_inventory
from vmsniff.lab.cloud.server import StandInServer

__all__ = ["main"]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, bind, write the port and pid files, serve until a signal."""
    parser = argparse.ArgumentParser(
        prog="python -m vmsniff.lab.cloud",
        description="Local stand-in for the Keystone v3, Nova and Neutron APIs.",
    )
    parser.add_argument("--inventory", required=True, type=Path, help="inventory JSON file")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind: loopback or a lab address"
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here")
    parser.add_argument("--pidfile", type=Path, help="write the process id here")
    parser.add_argument("--log", type=Path, help="append one line per request here")
    args = parser.parse_args(argv)

    try:
        inventory = load_inventory(args.inventory)
        server = StandInServer(inventory, args.host, args.port, args.log)
    except (InventoryError, ValueError, OSError) as exc:
        print(f"vmsniff.lab.cloud: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    worker.start()
    written = []
    try:
        if args.pidfile:
            _write_atomic(args.pidfile, f"{os.getpid()}\n")
            written.append(args.pidfile)
        if args.port_file:
            _write_atomic(args.port_file, f"{server.port}\n")
            written.append(args.port_file)
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
        worker.join()
        server.server_close()
        for path in written:
            path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
