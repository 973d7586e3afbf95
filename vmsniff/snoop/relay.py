"""The relay of one connection, sans-IO: events from the two sockets in, commands out.

As in mitmproxy's proxy layers, this object never touches a socket: :mod:`.loop` reads and
writes, tells :meth:`Relay.handle` what happened (:class:`Connected`, :class:`DataReceived`,
:class:`EofReceived`, ...), and carries out the commands it gets back (:class:`Send`,
:class:`ShutdownWrite`, :class:`Abort`, :class:`Close`), writing :class:`Record` frames to the
capture and :class:`Decoded` messages to ``--print``. Forwarding is byte for byte; a half-close
is passed on as a half-close (``shutdown(SHUT_WR)``), an abrupt close as an abrupt close (RST,
by ``SO_LINGER`` 0), so that each end sees what the other did.

Sides are :data:`~.synth.CLIENT` (the switch, which connected to us) and
:data:`~.synth.SERVER` (the controller we connected to on its behalf).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vmsniff.snoop.openflow import Message, StreamDecoder
from vmsniff.snoop.synth import CLIENT, DEFAULT_MTU, SERVER, Segment, State, TcpSynth

__all__ = [
    "Abort",
    "Close",
    "Command",
    "ConnectFailed",
    "Connected",
    "Decoded",
    "DataReceived",
    "EofReceived",
    "Event",
    "Record",
    "Relay",
    "ResetReceived",
    "Send",
    "ShutdownWrite",
    "side_name",
]


def side_name(side: int) -> str:
    return "switch" if side == CLIENT else "controller"


# -- events (what happened on a socket) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """The upstream connection (and its TLS handshakes, if any) is up."""

    ts_ns: int


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """The upstream could not be reached (refused, timed out, TLS failed)."""

    ts_ns: int
    reason: str


@dataclass(frozen=True, slots=True)
class DataReceived:
    """``side`` sent ``data``."""

    side: int
    data: bytes
    ts_ns: int

    def __repr__(self) -> str:
        return f"DataReceived({side_name(self.side)}, {len(self.data)} B)"


@dataclass(frozen=True, slots=True)
class EofReceived:
    """``side`` closed its sending direction (FIN)."""

    side: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class ResetReceived:
    """``side``'s connection was reset (or failed): an abrupt close."""

    side: int
    ts_ns: int


Event = Connected | ConnectFailed | DataReceived | EofReceived | ResetReceived


# -- commands (what the loop must do) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` to ``side``'s socket (in order, all of it)."""

    side: int
    data: bytes

    def __repr__(self) -> str:
        return f"Send({side_name(self.side)}, {len(self.data)} B)"


@dataclass(frozen=True, slots=True)
class ShutdownWrite:
    """Half-close ``side``'s socket once everything queued for it is written."""

    side: int


@dataclass(frozen=True, slots=True)
class Abort:
    """Reset ``side``'s socket now (``SO_LINGER`` 0, then close): the peer sees a RST."""

    side: int


@dataclass(frozen=True, slots=True)
class Close:
    """Close ``side``'s socket once everything queued for it is written."""

    side: int


@dataclass(frozen=True, slots=True)
class Record:
    """Frames for the capture."""

    segments: list[Segment]

    def __repr__(self) -> str:
        return f"Record({len(self.segments)} frames)"


@dataclass(frozen=True, slots=True)
class Decoded:
    """Whole messages ``side`` sent (``--print``)."""

    side: int
    ts_ns: int
    messages: list[Message]


Command = Send | ShutdownWrite | Abort | Close | Record | Decoded


class Relay:
    """One relayed connection: its synthesized TCP conversation, its decoders, its ends.

    ``decode`` adds :class:`Decoded` commands for ``--print``; without it no message is
    parsed (the decoders cost time on bulk transfers)."""

    def __init__(
        self,
        client: tuple[str, int],
        server: tuple[str, int],
        *,
        mtu: int = DEFAULT_MTU,
        decode: bool = False,
        isn: tuple[int, int] | None = None,
    ) -> None:
        self.synth = TcpSynth(client, server, mtu=mtu, isn=isn)
        self.decoders = (StreamDecoder(), StreamDecoder()) if decode else None
        self.eof = [False, False]
        self.closed = False
        self.failure: str | None = None

    def handle(self, event: Event) -> list[Command]:
        """The commands that carry out ``event``; events after the end are ignored."""
        if self.closed:
            return []
        handler: Callable[..., list[Command]] = getattr(self, "_" + type(event).__name__)
        return handler(event)

    # -- one method per event ------------------------------------------------------------------

    def _Connected(self, event: Connected) -> list[Command]:
        return [Record(self.synth.open(event.ts_ns))]

    def _ConnectFailed(self, event: ConnectFailed) -> list[Command]:
        # The switch reached us, so its socket is up: close it cleanly (a FIN, as a refusing
        # controller's absence looks to it once connected), and record what the switch would
        # have seen connecting directly: its SYN answered by a RST.
        self.closed = True
        self.failure = event.reason
        return [Record(self.synth.refused(event.ts_ns)), Close(CLIENT)]

    def _DataReceived(self, event: DataReceived) -> list[Command]:
        side = event.side
        out: list[Command] = [
            Record(self.synth.data(side, event.data, event.ts_ns)),
            Send(1 - side, event.data),
        ]
        if self.decoders is not None:
            messages = self.decoders[side].feed(event.data)
            if messages:
                out.append(Decoded(side, event.ts_ns, messages))
        return out

    def _EofReceived(self, event: EofReceived) -> list[Command]:
        side = event.side
        self.eof[side] = True
        out: list[Command] = [Record(self.synth.fin(side, event.ts_ns))]
        if self.decoders is not None:
            rest = self.decoders[side].end()
            if rest:
                out.append(Decoded(side, event.ts_ns, rest))
        out.append(ShutdownWrite(1 - side))
        if all(self.eof):
            self.closed = True
            out += [Close(CLIENT), Close(SERVER)]
        return out

    def _ResetReceived(self, event: ResetReceived) -> list[Command]:
        self.closed = True
        side = event.side
        out: list[Command] = []
        if self.synth.state in (State.ESTABLISHED, State.CLIENT_DONE, State.SERVER_DONE):
            out.append(Record(self.synth.reset(side, event.ts_ns)))
        return [*out, Abort(1 - side), Close(side)]
