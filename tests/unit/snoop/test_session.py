"""snoop's library entry points: endpoints, and serve()'s exit order."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from vmsniff.errors import UsageError
from vmsniff.snoop.loop import Route
from vmsniff.snoop.session import Endpoint, parse_endpoint, serve


@pytest.mark.parametrize(
    ("text", "need_host", "want"),
    [
        ("6653", False, Endpoint("", 6653)),
        ("0", False, Endpoint("", 0)),
        ("10.0.0.1:6633", True, Endpoint("10.0.0.1", 6633)),
        ("[::1]:6653", True, Endpoint("::1", 6653)),
        ("ctl.example:6653", True, Endpoint("ctl.example", 6653)),
    ],
)
def test_endpoints(text: str, need_host: bool, want: Endpoint) -> None:
    assert parse_endpoint(text, "--x", need_host=need_host) == want


@pytest.mark.parametrize(
    ("text", "need_host"), [("6653", True), ("h:0", True), ("h:x", True), ("[::1", False)]
)
def test_bad_endpoints(text: str, need_host: bool) -> None:
    with pytest.raises(UsageError):
        parse_endpoint(text, "--x", need_host=need_host)


class FakeRedirect:
    def __init__(self, order: list[str]) -> None:
        self.order = order

    def restore(self) -> list[str]:
        self.order.append("restore")
        return ["tcp:127.0.0.1:6633"]


def _route() -> Route:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return Route(sock, (socket.AF_INET, ("127.0.0.1", 1)), "up")


def test_the_bridge_is_restored_even_when_the_capture_cannot_be_opened() -> None:
    order: list[str] = []
    route = _route()

    def no_file() -> Any:
        raise UsageError("x.pcap exists; not overwriting it")

    with pytest.raises(UsageError):
        serve([route], no_file, stop=lambda: True, redirect=FakeRedirect(order))
    assert order == ["restore"]
    assert route.listener.fileno() == -1  # closed


def test_restore_comes_before_the_relay_closes_and_is_logged() -> None:
    order: list[str] = []
    route = _route()

    class Sink:
        finished = False

        def write(self, _packets: Any) -> None: ...
        def flush(self) -> None: ...
        def close(self) -> None:
            order.append("sink closed")

    logs: list[str] = []
    stats, _sink = serve(
        [route], Sink, stop=lambda: True, redirect=FakeRedirect(order), log=logs.append
    )
    assert order == ["restore", "sink closed"]
    assert logs[0].startswith("snooping on 127.0.0.1:") and logs[-1].startswith("restored tcp:")
    assert stats.accepted == 0 and route.listener.fileno() == -1
