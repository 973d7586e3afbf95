"""The I/O shell: a ``ThreadingHTTPServer`` on the loopback that feeds :func:`routes.dispatch`.

It speaks HTTP/1.1 with keep-alive (requests' connection pool reuses connections), logs one
line per request to a file if asked (never to stderr), and binds to IPv4 loopback or to an
address of the lab's own block (10.250.0.0/16, the lab's management veth) only: the
stand-in hands out admin tokens to anyone who knows a password from the inventory, so it
must never listen on a network the machine shares with others.
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from vmsniff.lab.cloud._context import Context
from vmsniff.lab.cloud._http import Request
from vmsniff.lab.cloud.inventory import Inventory
from vmsniff.lab.cloud.routes import RequestCounter, dispatch
from vmsniff.lab.topology import LAB_BLOCK

__all__ = ["StandInServer", "check_bind_address", "start_in_thread"]

#: Where the stand-in may listen besides loopback: the lab's own block (topology.LAB_BLOCK).
_LAB_BLOCK = ipaddress.ip_network(LAB_BLOCK)


def check_bind_address(host: str) -> str:
    """Return ``host`` if it is IPv4 loopback or inside the lab's block; else ``ValueError``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{host!r} is not an IP address; the stand-in binds to 127.0.0.1 or a lab address"
        ) from None
    if address.version != 4 or not (address.is_loopback or address in _LAB_BLOCK):
        raise ValueError(
            f"refusing to bind to {host}: the stand-in serves on 127.0.0.0/8 or {LAB_BLOCK} only"
        )
    return host


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandInServer

    def _serve(self) -> None:
        started = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response = dispatch(request, self.server.context, self.server.counter)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)
        self.server.log_request_line(
            f"{self.command} {self.path} {response.status} {len(response.body)}"
            f" {1000 * (time.monotonic() - started):.1f}ms"
        )

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's per-request lines on stderr (the shell logs to a file)."""


class StandInServer(ThreadingHTTPServer):
    """The HTTP server plus the stand-in's state: context, request counter, log file."""

    daemon_threads = True

    def __init__(
        self,
        inventory: Inventory,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: str | Path | None = None,
        secret: bytes | None = None,
    ) -> None:
        check_bind_address(host)
        self.context = Context(inventory, secret or secrets.token_bytes(32))
        self.counter = RequestCounter()
        self._log: IO[str] | None = (
            open(log_path, "a", encoding="utf-8", buffering=1) if log_path else None
        )
        self._log_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        """The bound TCP port (useful after binding port 0)."""
        return int(self.server_address[1])

    def log_request_line(self, line: str) -> None:
        """Append one line to the request log, if there is one."""
        if self._log is not None:
            with self._log_lock:
                self._log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")

    def server_close(self) -> None:
        """Close the socket and the log file."""
        super().server_close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Stop ``serve_forever`` (from another thread) and release the socket."""
        self.shutdown()
        self.server_close()


def start_in_thread(
    inventory: Inventory,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_path: str | Path | None = None,
) -> tuple[StandInServer, int]:
    """Serve ``inventory`` from a daemon thread; return the server and its port.

    Call ``server.stop()`` when done.
    """
    server = StandInServer(inventory, host, port, log_path)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.name = f"vmsniff-cloud-{server.port}"
    thread.start()
    return server, server.port
