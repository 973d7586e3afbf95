"""The socket loop on loopback: real sockets both sides, the capture read back by tshark."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.unit.snoop import tshark
from vmsniff.pcap import file_header, record
from vmsniff.snoop.loop import CHUNK, Connection, Loop, Route
from vmsniff.snoop.synth import Segment, describe

LOCAL = "127.0.0.1"


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind((LOCAL, 0))
    sock.listen(128)
    return sock


class Upstream:
    """A server on loopback running ``handler(conn)`` for each connection, in threads."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.sock = listener()
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.errors: list[BaseException] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)
        finally:
            conn.close()


class Capture:
    """The loop's recorder: frames kept in memory, written as pcap for tshark."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.lock = threading.Lock()

    def __call__(self, _conn: Connection, segments: list[Segment]) -> None:
        with self.lock:
            self.segments += segments

    def write(self, path: Path) -> Path:
        with path.open("wb") as f:
            f.write(file_header(65535, 1, nanosecond=True))
            for seg in self.segments:
                f.write(record(seg.ts_ns, seg.frame, nanosecond=True))
        return path


@contextmanager
def relay(upstream_port: int, capture: Capture, **kwargs: object) -> Iterator[tuple[int, Loop]]:
    """A Loop relaying a fresh listener to ``upstream_port``, run in a thread."""
    sock = listener()
    route = Route(sock, (socket.AF_INET, (LOCAL, upstream_port)), f"{LOCAL}:{upstream_port}")
    loop = Loop([route], capture, **kwargs)  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop.is_set,), kwargs={"timeout": 0.05})
    thread.start()
    try:
        yield sock.getsockname()[1], loop
    finally:
        stop.set()
        thread.join(10)
        loop.close()


def recv_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while chunk := sock.recv(CHUNK):
        out += chunk
    return bytes(out)


def echo_reversed(conn: socket.socket) -> None:
    """Read to EOF, then answer with the bytes reversed and close (a half-close user)."""
    conn.sendall(recv_all(conn)[::-1])


def test_many_connections_relayed_byte_exact_and_tshark_agrees(tmp_path: Path) -> None:
    up = Upstream(echo_reversed)
    capture = Capture()
    payloads = [os.urandom(n) for n in (1, 100, 1460, 1461, 70_000, 300_000, 5, 9000)]
    results: dict[int, bytes] = {}

    def client(i: int, port: int) -> None:
        with socket.create_connection((LOCAL, port)) as s:
            s.sendall(payloads[i])
            s.shutdown(socket.SHUT_WR)  # the relay passes the half-close on
            results[i] = recv_all(s)

    with relay(up.port, capture) as (port, loop):
        threads = [threading.Thread(target=client, args=(i, port)) for i in range(len(payloads))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        deadline = time.monotonic() + 5
        while loop.connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not loop.connections
    assert not up.errors
    assert results == {i: p[::-1] for i, p in enumerate(payloads)}
    path = capture.write(tmp_path / "many.pcap")
    assert tshark.problems(path) == []
    assert tshark.streams(path) == len(payloads)
    seen = set()
    for stream in range(len(payloads)):
        (client_node, server_node), sent, answered = tshark.follow(path, stream)
        assert server_node == f"{LOCAL}:{up.port}"
        assert answered == sent[::-1]
        seen.add(sent)
    assert seen == set(payloads)
    assert loop.stats.accepted == loop.stats.closed == len(payloads)


def test_abrupt_close_of_the_controller_reaches_the_switch_as_a_reset(tmp_path: Path) -> None:
    def reset_after_hello(conn: socket.socket) -> None:
        conn.recv(8)
        conn.sendall(b"\x04\x00\x00\x08\x00\x00\x00\x01")
        time.sleep(0.2)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    up = Upstream(reset_after_hello)
    capture = Capture()
    with relay(up.port, capture) as (port, _loop):
        with socket.create_connection((LOCAL, port)) as s:
            s.sendall(b"\x04\x00\x00\x08\x00\x00\x00\x01")
            assert s.recv(8) == b"\x04\x00\x00\x08\x00\x00\x00\x01"
            with pytest.raises(ConnectionResetError):
                while s.recv(100):
                    pass
    last = describe(capture.segments[-1].frame)
    assert last.startswith(f"{up.port} > ") and "[R.]" in last
    path = capture.write(tmp_path / "rst.pcap")
    assert tshark.problems(path, allow=("Connection reset",)) == []


def test_unreachable_upstream_closes_the_switch_cleanly_and_shows_in_the_capture(
    tmp_path: Path,
) -> None:
    dead = listener()
    port_dead = dead.getsockname()[1]
    dead.close()  # nothing listens there now: connection refused
    capture = Capture()
    logs: list[str] = []
    with relay(port_dead, capture, log=logs.append) as (port, loop):
        with socket.create_connection((LOCAL, port)) as s:
            mine = s.getsockname()[1]
            s.sendall(b"\x04\x00\x00\x08\x00\x00\x00\x01")
            assert s.recv(100) == b""  # a FIN, not a reset
    assert [describe(seg.frame).split(" seq")[0] for seg in capture.segments] == [
        f"{mine} > {port_dead} [S]",
        f"{port_dead} > {mine} [R.]",
    ]
    assert "Connection refused" in logs[0] and loop.stats.failed == 1
    assert tshark.problems(capture.write(tmp_path / "x.pcap"), allow=("Connection reset",)) == []


def test_a_slow_controller_slows_the_switch_and_memory_stays_bounded() -> None:
    total = 24 << 20
    release = threading.Event()
    received = []

    def slow(conn: socket.socket) -> None:
        release.wait(10)
        received.append(len(recv_all(conn)))

    up = Upstream(slow)
    capture = Capture()
    sent = [0]

    def sender(port: int) -> None:
        with socket.create_connection((LOCAL, port)) as s:
            block = bytes(CHUNK)
            while sent[0] < total:
                s.sendall(block)
                sent[0] += len(block)

    sock = listener()
    limit = 4 * CHUNK
    route = Route(sock, (socket.AF_INET, (LOCAL, up.port)), "up")
    loop = Loop([route], capture, queue_limit=limit)
    thread = threading.Thread(target=sender, args=(sock.getsockname()[1],))
    thread.start()
    peak = 0
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # the controller reads nothing for a second
            loop.step(0.01)
            peak = max([peak, *(len(q) for c in loop.connections.values() for q in c.queues)])
        stalled = sent[0]
        assert stalled < total // 2  # the switch was held back, not buffered for
        release.set()
        deadline = time.monotonic() + 30
        while thread.is_alive() and time.monotonic() < deadline:
            loop.step(0.01)
            peak = max([peak, *(len(q) for c in loop.connections.values() for q in c.queues)])
        deadline = time.monotonic() + 10
        while loop.connections and time.monotonic() < deadline:
            loop.step(0.01)
    finally:
        thread.join(10)
        loop.close()
    assert peak <= limit + CHUNK
    assert received == [total]


@pytest.mark.parametrize("chunk", [CHUNK, 500], ids=["default", "small-reads"])
def test_tls_on_both_sides_gives_plaintext_and_an_untrusted_switch_is_turned_away(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With reads smaller than a TLS record, decrypted bytes wait inside OpenSSL where the
    kernel cannot signal them: the loop must come back for them (small-reads)."""
    import ssl

    import vmsniff.snoop.loop

    monkeypatch.setattr(vmsniff.snoop.loop, "CHUNK", chunk)

    from tests.unit.snoop.pki import make_pki
    from vmsniff.snoop.session import TlsFiles, client_context, server_context

    good, rogue = make_pki(tmp_path / "good"), make_pki(tmp_path / "rogue", "rogue")
    files = TlsFiles(str(good["cert"]), str(good["key"]), str(good["ca"]))
    payload = os.urandom(18 * 16384)  # whole TLS records: the last one is a full 16 KiB
    up_tls = server_context(files)

    def tls_reverser(conn: socket.socket) -> None:
        with up_tls.wrap_socket(conn, server_side=True) as tls:
            got = bytearray()
            while len(got) < len(payload):
                got += tls.recv(CHUNK)
            tls.sendall(bytes(got[::-1]))
            while tls.recv(CHUNK):  # until the relay closes (the switch did)
                pass

    up = Upstream(tls_reverser)
    capture = Capture()
    logs: list[str] = []
    sock = listener()
    route = Route(sock, (socket.AF_INET, (LOCAL, up.port)), "up", server_context(files),
                  client_context(files))  # fmt: skip
    loop = Loop([route], capture, log=logs.append)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop.is_set,), kwargs={"timeout": 0.05})
    thread.start()
    try:
        switch = client_context(files)
        with socket.create_connection((LOCAL, sock.getsockname()[1]), timeout=10) as raw:
            with switch.wrap_socket(raw) as tls:  # a stalled relay fails the test, not hangs it
                tls.sendall(payload)
                got = bytearray()
                while len(got) < len(payload):
                    got += tls.recv(CHUNK)
        assert bytes(got) == payload[::-1]
        deadline = time.monotonic() + 5
        while loop.connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not loop.connections  # both sides closed: no TLS half-close left hanging
        assert not up.errors
        frames = len(capture.segments)
        untrusted = client_context(TlsFiles(str(rogue["cert"]), str(rogue["key"]),
                                            str(good["ca"])))  # fmt: skip
        with socket.create_connection((LOCAL, sock.getsockname()[1])) as raw:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                with untrusted.wrap_socket(raw) as tls:
                    tls.sendall(b"x")
                    assert tls.recv(10) == b""  # (TLS 1.3 may report the refusal here)
                    raise ConnectionError("closed")
        deadline = time.monotonic() + 5
        while not logs and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(10)
        loop.close()
    assert any("TLS handshake with the switch failed" in m for m in logs), logs
    assert len(capture.segments) == frames + 2  # the turned-away switch: SYN, RST
    path = capture.write(tmp_path / "tls.pcap")
    assert tshark.problems(path, allow=("Connection reset",)) == []
    (_nodes, sent, answered) = tshark.follow(path, 0)
    assert (sent, answered) == (payload, payload[::-1])  # the plaintext
