"""``snoop`` as a library: endpoints, listeners, TLS contexts, and a run into a capture sink.

The CLI parses options and calls these; nothing here knows about click. Errors are
:class:`~vmsniff.errors.VmsniffError` subclasses with a hint: a busy listen port, a bad or
missing certificate, an upstream name that does not resolve.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vmsniff.errors import NotFound, PermissionDenied, UsageError
from vmsniff.formats.capture import LINKTYPE_ETHERNET
from vmsniff.pipeline.core import Packet
from vmsniff.snoop.loop import Connection, Loop, Route, Stats
from vmsniff.snoop.relay import Decoded, side_name
from vmsniff.snoop.synth import DEFAULT_MTU, Segment

__all__ = [
    "Endpoint",
    "TlsFiles",
    "capture_recorder",
    "client_context",
    "message_lines",
    "open_listener",
    "parse_endpoint",
    "resolve",
    "serve",
    "server_context",
]

INTERFACE = "vmsniff-snoop"  #: the pcapng interface name of every synthesized frame


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A host (name or address; ``""`` for every address) and a TCP port."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_endpoint(value: str, option: str, *, need_host: bool) -> Endpoint:
    """``PORT``, ``HOST:PORT``, ``[V6]:PORT``. A listening endpoint (no ``need_host``) may
    give port 0: the system picks one, and ``snoop`` says which."""
    text = value.strip()
    host = ""
    port_text = text
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise UsageError(f"{option} {value!r}: write an IPv6 address as [ADDR]:PORT")
        host, port_text = text[1:close], text[close + 2 :]
    elif ":" in text:
        host, port_text = text.rsplit(":", 1)
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"{option} {value!r}: the port must be a number") from None
    if not (0 if not need_host else 1) <= port < 65536:
        raise UsageError(f"{option} {value!r}: a port is 1-65535")
    if need_host and not host:
        raise UsageError(f"{option} {value!r}: give HOST:PORT")
    return Endpoint(host, port)


def resolve(endpoint: Endpoint, option: str) -> tuple[int, Any]:
    """The first address ``endpoint`` resolves to, as ``(family, sockaddr)``."""
    try:
        infos = socket.getaddrinfo(endpoint.host or None, endpoint.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(
            f"{option} {endpoint}: cannot resolve {endpoint.host!r}: {exc.strerror}",
            hint="give an IP address or a name this host resolves",
        ) from None
    family, _type, _proto, _name, sockaddr = infos[0]
    return family, sockaddr


def open_listener(endpoint: Endpoint, option: str = "--listen") -> socket.socket:
    """A listening socket on ``endpoint``; with no host, on 127.0.0.1 only: the relay hands
    out plaintext and reaches the controller on the caller's behalf, so listening beyond
    loopback must be asked for (``0.0.0.0:PORT``, ``[::]:PORT``)."""
    family, sockaddr = resolve(endpoint if endpoint.host else Endpoint("127.0.0.1", endpoint.port),
                               option)  # fmt: skip
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"{option} {endpoint}: the port is already in use",
                hint="pick another port, or stop what listens there (ss -ltnp)",
            ) from None
        if exc.errno == errno.EACCES:
            raise PermissionDenied(f"{option} {endpoint}: permission denied") from None
        raise UsageError(f"{option} {endpoint}: cannot listen: {exc.strerror}") from None
    return sock


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A certificate, its private key, and the CA certificate(s) that vouch for the peer
    (Open vSwitch's ``--certificate``, ``--private-key``, ``--ca-cert``)."""

    cert: str
    key: str
    ca: str


def _no_follow(path: str, what: str) -> int:
    """Open ``path`` for reading without following a symlink (a file handed to vmsniff is
    read as itself, never as what a link points to)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"{what} {path}: no such file") from None
    except PermissionError:
        raise PermissionDenied(f"{what} {path}: permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(
                f"{what} {path} is a symbolic link; vmsniff does not follow links",
                hint="give the path of the file itself",
            ) from None
        raise UsageError(f"{what} {path}: {exc.strerror}") from None


def _load(context: ssl.SSLContext, files: TlsFiles) -> ssl.SSLContext:
    fds = [
        _no_follow(files.cert, "certificate"),
        _no_follow(files.key, "private key"),
        _no_follow(files.ca, "CA certificate"),
    ]
    cert, key, ca = (f"/proc/self/fd/{fd}" for fd in fds)
    try:
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise UsageError(
                f"certificate {files.cert} / private key {files.key}: {exc.reason or exc}",
                hint="give a PEM certificate and the private key it was made for "
                "(ovs-pki req+sign)",
            ) from None
        try:
            context.load_verify_locations(ca)
        except ssl.SSLError as exc:
            raise UsageError(
                f"CA certificate {files.ca}: {exc.reason or exc}",
                hint="give the PEM CA certificate that signed the peer's certificate",
            ) from None
    finally:
        for fd in fds:
            os.close(fd)
    context.verify_mode = ssl.CERT_REQUIRED  # both ends present certificates, as OVS does
    return context


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """TLS towards the switch (its ``ssl:`` controller target): we act as the controller."""
    return _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), files)


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """TLS towards the controller (its ``pssl:``): we act as the switch. Open vSwitch does
    not check host names, only that the CA signed the peer's certificate; neither do we."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    return _load(context, files)


def route(
    listen: Endpoint,
    upstream: Endpoint,
    *,
    accept_tls: ssl.SSLContext | None = None,
    connect_tls: ssl.SSLContext | None = None,
) -> Route:
    """A listening socket on ``listen`` relaying to ``upstream`` (resolved once, now)."""
    target = resolve(upstream, "--upstream")
    listener = open_listener(listen)
    return Route(listener, target, str(upstream), accept_tls, connect_tls)


def capture_recorder(sink: Any, count: int | None, stop: Callable[[], None]) -> Callable[..., None]:
    """A :class:`~.loop.Loop` recorder writing frames to ``sink``; after ``count`` frames it
    writes no more and calls ``stop``."""
    written = 0

    def record(_conn: Connection, segments: list[Segment]) -> None:
        nonlocal written
        if count is not None:
            segments = segments[: max(0, count - written)]
        if not segments:
            return
        sink.write(
            [
                Packet(s.ts_ns, s.frame, len(s.frame), LINKTYPE_ETHERNET, None, 0, False, INTERFACE)
                for s in segments
            ]
        )
        written += len(segments)
        if (count is not None and written >= count) or sink.finished:
            stop()

    return record


def message_lines(conn: Connection, decoded: Decoded, *, as_json: bool) -> list[str]:
    """``--print`` lines for ``decoded``: one per message (text, or JSON objects)."""
    way = f"{side_name(decoded.side)}>{side_name(1 - decoded.side)}"
    if as_json:
        import json

        return [
            json.dumps(
                {
                    "time": decoded.ts_ns / 1e9,
                    "connection": conn.ident,
                    "direction": way,
                    "protocol": m.protocol,
                    "version": m.version,
                    "type": m.name,
                    "xid": m.xid,
                    "length": m.length,
                    "valid": m.valid,
                }
            )
            for m in decoded.messages
        ]
    sec, ns = divmod(decoded.ts_ns, 1_000_000_000)
    stamp = time.strftime("%H:%M:%S", time.localtime(sec)) + f".{ns // 1000:06d}"
    return [f"{stamp} #{conn.ident} {way} {m.text()}" for m in decoded.messages]


def serve(
    routes: list[Route],
    open_sink: Callable[[], Any],
    *,
    stop: Callable[[], bool],
    redirect: Any = None,
    printer: Callable[[Connection, Decoded], None] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    mtu: int = DEFAULT_MTU,
    count: int | None = None,
    duration: float | None = None,
) -> tuple[Stats, Any]:
    """Relay ``routes`` into the sink ``open_sink()`` returns (None: no capture) until
    ``stop()``, ``duration``, ``count`` frames or the sink is finished; returns the counters
    and the sink.

    On the way out, whatever ended the run: the bridge ``redirect`` (``--ovs``) is restored
    first, so that the switches go back to their controllers at once, then the relay and the
    listeners close, then the sink. ``log`` gets one line per listener when serving starts
    (``snooping on ADDR:PORT -> UPSTREAM``) and per failed connection."""
    sink = loop = None
    stopped = [False]

    def stop_now() -> None:
        stopped[0] = True

    try:
        sink = open_sink()
        record = capture_recorder(sink, count, stop_now) if sink is not None else _no_record
        loop = Loop(routes, record, printer=printer, log=log, mtu=mtu)
        for r in routes:
            log(f"snooping on {_listening(r.listener)} -> {r.label}")
        run(loop, lambda: stop() or stopped[0], duration=duration, sink=sink or _NoSink())
    finally:
        try:
            if redirect is not None:
                restored = redirect.restore()
                log(f"restored {', '.join(restored) or 'nothing'}")
        finally:
            if loop is not None:
                loop.close()
            else:
                for r in routes:
                    r.listener.close()
            if sink is not None:
                sink.close()
    return loop.stats, sink


def _no_record(_conn: Connection, _segments: list[Segment]) -> None:
    pass


class _NoSink:
    finished = False

    def flush(self) -> None:
        pass


def _listening(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(loop: Loop, stop: Callable[[], bool], *, duration: float | None, sink: Any) -> None:
    """Serve until ``stop()``, ``duration`` seconds, or the sink is finished (``-G`` ``-W``);
    flush the sink at least once a second so that ``-w -`` readers see frames as they come."""
    deadline = None if duration is None else time.monotonic() + duration
    last_flush = time.monotonic()

    def done() -> bool:
        return stop() or sink.finished or (deadline is not None and time.monotonic() >= deadline)

    def tick() -> None:
        nonlocal last_flush
        now = time.monotonic()
        if now - last_flush >= 1.0:
            sink.flush()
            last_flush = now

    loop.run(done, on_tick=tick)
