"""The pure relay: each conversation written as events in and the commands expected out."""

from __future__ import annotations

from vmsniff.snoop.relay import (
    Abort,
    Close,
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
from vmsniff.snoop.synth import CLIENT, SERVER, State, describe

SWITCH = ("192.0.2.1", 40000)
CONTROLLER = ("192.0.2.2", 6653)
HELLO = bytes.fromhex("0600000800000001")
ECHO = bytes.fromhex("0602000800000002")


def kinds(commands: list) -> list[str]:  # type: ignore[type-arg]
    return [repr(c) for c in commands]


def play(relay: Relay, script: list[tuple[Event, list[str]]]) -> None:
    """Feed each event; the commands must read as expected (reprs)."""
    for event, expected in script:
        assert kinds(relay.handle(event)) == expected, event


def test_open_forward_both_ways_and_close_in_order() -> None:
    relay = Relay(SWITCH, CONTROLLER, isn=(0, 0))
    play(
        relay,
        [
            (Connected(1), ["Record(3 frames)"]),
            (DataReceived(CLIENT, HELLO, 2), ["Record(1 frames)", "Send(controller, 8 B)"]),
            (DataReceived(SERVER, HELLO, 3), ["Record(1 frames)", "Send(switch, 8 B)"]),
            # half-close: passed on as a half-close, the other way still flows
            (EofReceived(CLIENT, 4), ["Record(2 frames)", "ShutdownWrite(side=1)"]),
            (DataReceived(SERVER, ECHO, 5), ["Record(1 frames)", "Send(switch, 8 B)"]),
            (
                EofReceived(SERVER, 6),
                ["Record(2 frames)", "ShutdownWrite(side=0)", "Close(side=0)", "Close(side=1)"],
            ),
            (DataReceived(SERVER, ECHO, 7), []),  # after the end: nothing
        ],
    )
    assert relay.synth.state is State.CLOSED


def test_forwarded_bytes_are_the_received_bytes() -> None:
    relay = Relay(SWITCH, CONTROLLER, mtu=1500)
    relay.handle(Connected(1))
    data = bytes(range(256)) * 100
    out = relay.handle(DataReceived(CLIENT, data, 2))
    sends = [c for c in out if isinstance(c, Send)]
    assert sends == [Send(SERVER, data)]
    record = next(c for c in out if isinstance(c, Record))
    assert sum(1 for s in record.segments if s.side == CLIENT) == -(-len(data) // 1460)


def test_reset_is_recorded_from_its_side_and_passed_on_as_a_reset() -> None:
    relay = Relay(SWITCH, CONTROLLER)
    relay.handle(Connected(1))
    out = relay.handle(ResetReceived(SERVER, 2))
    assert out[1:] == [Abort(CLIENT), Close(SERVER)]
    assert isinstance(out[0], Record)
    assert describe(out[0].segments[0].frame).startswith("6653 > 40000 [R.]")
    assert relay.closed


def test_upstream_failure_closes_the_switch_and_records_a_refused_connect() -> None:
    relay = Relay(SWITCH, CONTROLLER)
    out = relay.handle(ConnectFailed(1, "connection refused"))
    assert kinds(out) == ["Record(2 frames)", "Close(side=0)"]
    assert isinstance(out[0], Record)
    assert [describe(s.frame).split(" seq")[0] for s in out[0].segments] == [
        "40000 > 6653 [S]",
        "6653 > 40000 [R.]",
    ]
    assert relay.failure == "connection refused"


def test_decoding_yields_messages_only_when_asked() -> None:
    relay = Relay(SWITCH, CONTROLLER, decode=True)
    relay.handle(Connected(1))
    out = relay.handle(DataReceived(CLIENT, HELLO + ECHO[:5], 2))
    decoded = [c for c in out if isinstance(c, Decoded)]
    assert [m.name for m in decoded[0].messages] == ["HELLO"]
    out = relay.handle(DataReceived(CLIENT, ECHO[5:], 3))
    assert [m.name for c in out if isinstance(c, Decoded) for m in c.messages] == ["ECHO_REQUEST"]
    plain = Relay(SWITCH, CONTROLLER)
    plain.handle(Connected(1))
    assert not [c for c in plain.handle(DataReceived(CLIENT, HELLO, 2)) if isinstance(c, Decoded)]


def test_a_message_cut_short_by_the_close_is_reported() -> None:
    relay = Relay(SWITCH, CONTROLLER, decode=True)
    relay.handle(Connected(1))
    relay.handle(DataReceived(CLIENT, ECHO[:3], 2))
    out = relay.handle(EofReceived(CLIENT, 3))
    (decoded,) = [c for c in out if isinstance(c, Decoded)]
    assert decoded.messages[0].valid is False
    assert "cut short" in decoded.messages[0].name
    assert ShutdownWrite(SERVER) in out
