"""The one socket loop of ``snoop``: accept, connect, read, write; the relay decides the rest.

A :class:`Loop` owns listening sockets (one :class:`Route` each: where to connect, with what
TLS) and every relayed connection. It is single-threaded on :mod:`selectors`; for each socket
it turns readiness into :mod:`.relay` events and carries out the commands it gets back.

Back-pressure: bytes read from one side wait in that connection's queue for the other side; a
side is read only while the queue towards its peer holds less than ``queue_limit`` bytes, so
a slow reader slows the writer down (its socket buffers fill, TCP closes its window) and
memory stays bounded by about ``2 * (queue_limit + CHUNK)`` (1 MiB) per connection.

TLS (``ssl``): the relay terminates it on both sides. Handshakes run non-blocking; the
conversation starts (and is recorded) once the upstream is connected and every handshake is
done. TLS has no half-close that Open vSwitch uses, so a half-close towards a TLS side
becomes a close (recorded as that side's FIN too, since it can send nothing more).
"""

from __future__ import annotations

import errno
import selectors
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vmsniff.snoop.relay import (
    Abort,
    Close,
    Command,
    Connected,
    ConnectFailed,
    DataReceived,
    Decoded,
    EofReceived,
    Event,
    Record,
    Relay,
    ResetReceived,
    Send,
    ShutdownWrite,
)
from vmsniff.snoop.synth import CLIENT, DEFAULT_MTU, SERVER, Segment

__all__ = ["CHUNK", "QUEUE_LIMIT", "Connection", "Loop", "Route", "Stats"]

CHUNK = 1 << 18  #: bytes read per recv (fewer, larger reads: the relay's cost is per read)
QUEUE_LIMIT = 1 << 18  #: bytes waiting for one side before its peer is no longer read
_LINGER0 = struct.pack("ii", 1, 0)


@dataclass
class Route:
    """A listening socket and where its connections go.

    ``upstream`` is a resolved ``(family, sockaddr)``; ``accept_tls`` wraps accepted
    connections (the switch's ``ssl:`` target), ``connect_tls`` the upstream one (the
    controller's ``pssl:``)."""

    listener: socket.socket
    upstream: tuple[int, Any]
    label: str = ""
    accept_tls: ssl.SSLContext | None = None
    connect_tls: ssl.SSLContext | None = None


@dataclass
class Stats:
    """Counters of a run (``--json``)."""

    accepted: int = 0
    failed: int = 0
    closed: int = 0
    bytes_from_switch: int = 0
    bytes_from_controller: int = 0
    frames: int = 0
    messages: int = 0


@dataclass(eq=False)
class Connection:
    """One relayed connection's sockets, queues and relay."""

    ident: int
    route: Route
    socks: list[Any]
    client: tuple[str, int]
    started: float
    relay: Relay | None = None
    queues: list[bytearray] = field(default_factory=lambda: [bytearray(), bytearray()])
    phase: list[str] = field(default_factory=lambda: ["ready", "connecting"])
    eof: list[bool] = field(default_factory=lambda: [False, False])
    shutdown_after: list[bool] = field(default_factory=lambda: [False, False])
    close_after: list[bool] = field(default_factory=lambda: [False, False])
    closed: list[bool] = field(default_factory=lambda: [False, False])
    masks: list[int] = field(default_factory=lambda: [0, 0])


Recorder = Callable[[Connection, list[Segment]], None]
Printer = Callable[[Connection, Decoded], None]
Logger = Callable[[str], None]


def _peer(sock: socket.socket) -> tuple[str, int]:
    addr = sock.getpeername()
    return (str(addr[0]), int(addr[1]))


class Loop:
    """Relays every connection of ``routes`` until told to stop (see the module docstring)."""

    def __init__(
        self,
        routes: list[Route],
        record: Recorder,
        *,
        printer: Printer | None = None,
        log: Logger | None = None,
        mtu: int = DEFAULT_MTU,
        queue_limit: int = QUEUE_LIMIT,
        connect_timeout: float = 10.0,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.routes = routes
        self.record = record
        self.printer = printer
        self.log = log or (lambda _msg: None)
        self.mtu = mtu
        self.queue_limit = queue_limit
        self.connect_timeout = connect_timeout
        self.clock = clock
        self.stats = Stats()
        self.connections: dict[int, Connection] = {}
        self._sel = selectors.DefaultSelector()
        self._next = 1
        self._next_expiry = 0.0
        self._held: set[tuple[Connection, int]] = set()
        for route in routes:
            route.listener.setblocking(False)
            self._sel.register(route.listener, selectors.EVENT_READ, ("listen", route))

    # -- driving --------------------------------------------------------------------------------

    def run(
        self,
        stop: Callable[[], bool],
        *,
        timeout: float = 0.2,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        """Serve until ``stop()`` is true; ``on_tick`` runs at least every ``timeout`` s."""
        while not stop():
            self.step(timeout)
            if on_tick is not None:
                on_tick()

    def step(self, timeout: float) -> None:
        """One round: wait up to ``timeout`` for readiness, handle it, expire connects."""
        # TLS sockets holding decrypted bytes the kernel no longer signals as readable.
        held, self._held = self._held, set()
        for conn, side in held:
            if conn.ident in self.connections and not conn.closed[side]:
                self._readable(conn, side)
                if conn.ident in self.connections:
                    self._update(conn)
        for key, mask in self._sel.select(0 if self._held else timeout):
            kind, obj = key.data
            if kind == "listen":
                self._accept(obj)
                continue
            conn, side = obj, kind
            if conn.closed[side]:
                continue
            if mask & selectors.EVENT_WRITE:
                self._writable(conn, side)
            if mask & selectors.EVENT_READ and not conn.closed[side]:
                self._readable(conn, side)
            if conn.ident in self.connections:
                self._update(conn)
        now = time.monotonic()
        if now >= self._next_expiry:  # once a second: a walk over every connection
            self._next_expiry = now + 1.0
            for conn in list(self.connections.values()):
                if conn.relay is None and now - conn.started > self.connect_timeout:
                    self._failed(conn, f"no connection within {self.connect_timeout:g} s")

    def close(self) -> None:
        """Close every connection and listener (the capture just stops, as tcpdump's)."""
        for conn in list(self.connections.values()):
            for side in (CLIENT, SERVER):
                self._close(conn, side)
        for route in self.routes:
            self._unregister(route.listener)
            route.listener.close()
        self._sel.close()

    # -- accepting and connecting ----------------------------------------------------------------

    def _accept(self, route: Route) -> None:
        for _ in range(64):  # a burst of reconnects: take several per round
            try:
                sock, _addr = route.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: log, keep serving the others
                self.log(f"accept on {route.label} failed: {exc.strerror}")
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.stats.accepted += 1
            family, sockaddr = route.upstream
            up = socket.socket(family, socket.SOCK_STREAM)
            up.setblocking(False)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self._next, route, [sock, up], _peer(sock), time.monotonic())
            self._next += 1
            self.connections[conn.ident] = conn
            if route.accept_tls is not None:
                conn.socks[CLIENT] = route.accept_tls.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
                conn.phase[CLIENT] = "handshake"
            code = up.connect_ex(sockaddr)
            if code not in (0, errno.EINPROGRESS):
                self._failed(conn, f"connect to {route.label}: {errno.errorcode.get(code, code)}"
                             f" ({_strerror(code)})")  # fmt: skip
                continue
            self._update(conn)

    def _connected(self, conn: Connection) -> None:
        code = conn.socks[SERVER].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._failed(conn, f"connect to {conn.route.label}: {_strerror(code)}")
            return
        if conn.route.connect_tls is not None:
            conn.socks[SERVER] = conn.route.connect_tls.wrap_socket(
                conn.socks[SERVER], do_handshake_on_connect=False
            )
            conn.phase[SERVER] = "handshake"
            self._handshake(conn, SERVER)
        else:
            conn.phase[SERVER] = "ready"
            self._maybe_open(conn)

    def _handshake(self, conn: Connection, side: int) -> None:
        try:
            conn.socks[side].do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except (ssl.SSLError, OSError) as exc:
            who = "switch" if side == CLIENT else "controller"
            self._failed(conn, f"TLS handshake with the {who} failed: {exc}")
            return
        conn.phase[side] = "ready"
        self._maybe_open(conn)

    def _maybe_open(self, conn: Connection) -> None:
        if conn.relay is not None or conn.phase != ["ready", "ready"]:
            return
        server = _peer(conn.socks[SERVER])
        conn.relay = Relay(conn.client, server, mtu=self.mtu, decode=self.printer is not None)
        self._apply(conn, conn.relay.handle(Connected(self.clock())))

    def _failed(self, conn: Connection, reason: str) -> None:
        self.stats.failed += 1
        self.log(f"connection {conn.ident} from {conn.client[0]}:{conn.client[1]}: {reason}")
        family, sockaddr = conn.route.upstream
        relay = conn.relay or Relay(conn.client, (str(sockaddr[0]), int(sockaddr[1])), mtu=self.mtu)
        conn.relay = relay
        self._close(conn, SERVER, abort=True)
        self._apply(conn, relay.handle(ConnectFailed(self.clock(), reason)))
        if conn.relay.closed and not conn.closed[CLIENT]:
            self._close(conn, CLIENT)  # a TLS failure after the open: nothing more to relay

    # -- reading and writing ---------------------------------------------------------------------

    def _readable(self, conn: Connection, side: int) -> None:
        if conn.phase[side] == "handshake":
            self._handshake(conn, side)
            return
        if conn.relay is None:
            return
        sock = conn.socks[side]
        for _ in range(16):  # TLS may hold decrypted bytes the socket no longer signals
            if conn.closed[side] or conn.eof[side] or conn.relay.closed:
                return
            if len(conn.queues[1 - side]) >= self.queue_limit:
                break
            try:
                data = sock.recv(CHUNK)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""
            except OSError:
                self._event(conn, ResetReceived(side, self.clock()))
                return
            if not data:
                conn.eof[side] = True
                self._event(conn, EofReceived(side, self.clock()))
                return
            if side == CLIENT:
                self.stats.bytes_from_switch += len(data)
            else:
                self.stats.bytes_from_controller += len(data)
            self._event(conn, DataReceived(side, data, self.clock()))
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return
        self._hold_if_pending(conn, side)

    def _hold_if_pending(self, conn: Connection, side: int) -> None:
        """Decrypted bytes wait inside ``side``'s TLS object, which the kernel does not signal
        (OpenSSL has already read them): read them next round, once there is room."""
        sock = conn.socks[side]
        if (
            isinstance(sock, ssl.SSLSocket)
            and not conn.closed[side]
            and not conn.eof[side]
            and len(conn.queues[1 - side]) < self.queue_limit
            and sock.pending()
        ):
            self._held.add((conn, side))

    def _writable(self, conn: Connection, side: int) -> None:
        if side == SERVER and conn.phase[SERVER] == "connecting":
            self._connected(conn)
            return
        if conn.phase[side] == "handshake":
            self._handshake(conn, side)
            return
        self._flush(conn, side)

    def _flush(self, conn: Connection, side: int) -> None:
        queue = conn.queues[side]
        sock = conn.socks[side]
        while queue:
            try:
                sent = sock.send(queue[:CHUNK] if isinstance(sock, ssl.SSLSocket) else queue)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError:
                queue.clear()
                self._event(conn, ResetReceived(side, self.clock()))
                return
            del queue[:sent]
        self._hold_if_pending(conn, 1 - side)  # room again for what the peer's TLS holds
        if conn.close_after[side]:
            self._close(conn, side)
        elif conn.shutdown_after[side]:
            conn.shutdown_after[side] = False
            if isinstance(sock, ssl.SSLSocket):
                # No TLS half-close (module docstring): close, and as that side can send
                # nothing more, its end of the conversation is over too (its FIN).
                self._close(conn, side)
                if conn.relay is not None and not conn.relay.closed and not conn.eof[side]:
                    conn.eof[side] = True
                    self._event(conn, EofReceived(side, self.clock()))
            else:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    # -- events and commands ---------------------------------------------------------------------

    def _event(self, conn: Connection, event: Event) -> None:
        assert conn.relay is not None
        self._apply(conn, conn.relay.handle(event))

    def _apply(self, conn: Connection, commands: list[Command]) -> None:
        for cmd in commands:
            if isinstance(cmd, Record):
                self.stats.frames += len(cmd.segments)
                self.record(conn, cmd.segments)
            elif isinstance(cmd, Send):
                if not conn.closed[cmd.side]:  # else the peer is gone: nowhere to send
                    conn.queues[cmd.side] += cmd.data
                    self._flush(conn, cmd.side)
            elif isinstance(cmd, Decoded):
                self.stats.messages += len(cmd.messages)
                if self.printer is not None:
                    self.printer(conn, cmd)
            elif isinstance(cmd, ShutdownWrite):
                conn.shutdown_after[cmd.side] = True
                if not conn.closed[cmd.side]:
                    self._flush(conn, cmd.side)
            elif isinstance(cmd, Close):
                conn.close_after[cmd.side] = True
                if not conn.closed[cmd.side]:
                    self._flush(conn, cmd.side)
            elif isinstance(cmd, Abort):
                self._close(conn, cmd.side, abort=True)
        if conn.ident in self.connections:
            self._update(conn)

    def _update(self, conn: Connection) -> None:
        """Register each open socket for what it waits for now."""
        for side in (CLIENT, SERVER):
            if conn.closed[side]:
                continue
            phase = conn.phase[side]
            if phase == "connecting":
                mask = selectors.EVENT_WRITE
            elif phase == "handshake":
                mask = selectors.EVENT_READ | selectors.EVENT_WRITE
            elif conn.relay is None or conn.relay.closed and not conn.queues[side]:
                mask = 0
            else:
                mask = selectors.EVENT_WRITE if conn.queues[side] else 0
                if not conn.eof[side] and len(conn.queues[1 - side]) < self.queue_limit:
                    mask |= selectors.EVENT_READ
            if mask == conn.masks[side]:
                continue
            sock = conn.socks[side]
            if conn.masks[side] == 0:
                self._sel.register(sock, mask, (side, conn))
            elif mask == 0:
                self._sel.unregister(sock)
            else:
                self._sel.modify(sock, mask, (side, conn))
            conn.masks[side] = mask
        if all(conn.closed) and self.connections.pop(conn.ident, None) is not None:
            self.stats.closed += 1

    def _close(self, conn: Connection, side: int, *, abort: bool = False) -> None:
        if conn.closed[side]:
            return
        conn.closed[side] = True
        sock = conn.socks[side]
        if conn.masks[side]:
            self._unregister(sock)
            conn.masks[side] = 0
        try:
            if abort:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
            elif conn.phase[side] == "ready":
                _drain(sock)
        except OSError:
            pass
        sock.close()
        if all(conn.closed) and self.connections.pop(conn.ident, None) is not None:
            self.stats.closed += 1

    def _unregister(self, sock: Any) -> None:
        try:
            self._sel.unregister(sock)
        except (KeyError, ValueError):
            pass


def _drain(sock: Any) -> None:
    """Send our FIN and read what the peer already sent, so that closing is a FIN, not the
    RST Linux sends when a socket is closed with unread data (a clean close)."""
    if not isinstance(sock, ssl.SSLSocket):
        sock.shutdown(socket.SHUT_WR)
    for _ in range(64):
        try:
            if not sock.recv(CHUNK):
                return
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            return


def _strerror(code: int) -> str:
    import os

    return os.strerror(code)
