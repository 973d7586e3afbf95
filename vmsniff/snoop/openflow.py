"""Message framing for ``--print``: OpenFlow headers, or JSON-RPC (OVSDB) methods, sans-IO.

Each direction of a relayed connection gets a :class:`StreamDecoder`; :meth:`~StreamDecoder.feed`
takes the bytes as they pass and returns the whole messages they complete. The first bytes
decide what the stream is:

* an OpenFlow version byte (1-6, OpenFlow 1.0-1.5): every message starts with the common header
  ``version, type, length, xid`` (OpenFlow 1.5.1 section 7.1.1, the same in every version);
  only the 8 header bytes are kept, the body is skipped, so memory stays bounded however big
  a message is. A header whose length is under 8 cannot be framed past: it is reported
  (``invalid``) and the rest of the stream is not decoded;
* ``{`` or ``[``: JSON-RPC 1.0 as OVSDB speaks it (RFC 7047 section 4): each object is
  reported by its method, or as the reply to an id;
* anything else: reported once as not decoded.

Nothing here raises on bad input: what cannot be decoded is shown as such.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass

__all__ = ["MAX_JSON", "Message", "StreamDecoder", "VERSIONS", "type_name"]

_HEADER = struct.Struct("!BBHI")
VERSIONS = {1: "1.0", 2: "1.1", 3: "1.2", 4: "1.3", 5: "1.4", 6: "1.5"}
MAX_JSON = 16 << 20  #: a JSON-RPC message longer than this is not decoded (memory bound)

_COMMON = [
    "HELLO", "ERROR", "ECHO_REQUEST", "ECHO_REPLY", "EXPERIMENTER", "FEATURES_REQUEST",
    "FEATURES_REPLY", "GET_CONFIG_REQUEST", "GET_CONFIG_REPLY", "SET_CONFIG", "PACKET_IN",
    "FLOW_REMOVED", "PORT_STATUS", "PACKET_OUT", "FLOW_MOD",
]  # fmt: skip
_V10 = [
    *_COMMON[:4], "VENDOR", *_COMMON[5:], "PORT_MOD", "STATS_REQUEST", "STATS_REPLY",
    "BARRIER_REQUEST", "BARRIER_REPLY", "QUEUE_GET_CONFIG_REQUEST", "QUEUE_GET_CONFIG_REPLY",
]  # fmt: skip
_V11 = [
    *_COMMON, "GROUP_MOD", "PORT_MOD", "TABLE_MOD", "STATS_REQUEST", "STATS_REPLY",
    "BARRIER_REQUEST", "BARRIER_REPLY", "QUEUE_GET_CONFIG_REQUEST", "QUEUE_GET_CONFIG_REPLY",
]  # fmt: skip
_V12 = [*_V11, "ROLE_REQUEST", "ROLE_REPLY"]
_V13 = [
    *_V12[:18], "MULTIPART_REQUEST", "MULTIPART_REPLY", *_V12[20:], "GET_ASYNC_REQUEST",
    "GET_ASYNC_REPLY", "SET_ASYNC", "METER_MOD",
]  # fmt: skip
_V14 = [
    *_V13, "ROLE_STATUS", "TABLE_STATUS", "REQUESTFORWARD", "BUNDLE_CONTROL",
    "BUNDLE_ADD_MESSAGE",
]  # fmt: skip
# OpenFlow 1.5 dropped the queue-config messages (their numbers stay unused).
_V15 = [*_V14[:22], "", "", *_V14[24:], "CONTROLLER_STATUS"]
_TYPES = {1: _V10, 2: _V11, 3: _V12, 4: _V13, 5: _V14, 6: _V15}
_JSON_TOKENS = re.compile(rb'[{}\[\]"\\]')


def type_name(version: int, msg_type: int) -> str:
    """``ECHO_REQUEST`` for a known type of a known version, else ``type 99``."""
    names = _TYPES.get(version, [])
    if msg_type < len(names) and names[msg_type]:
        return names[msg_type]
    return f"type {msg_type}"


@dataclass(frozen=True, slots=True)
class Message:
    """One message (or one thing that could not be decoded) in a stream.

    ``protocol`` is ``openflow``, ``jsonrpc`` or ``unknown``; ``name`` the OpenFlow type or
    the JSON-RPC method (``reply`` for a reply); ``valid`` is False for what was shown as
    undecodable."""

    protocol: str
    name: str
    length: int
    version: str | None = None
    xid: int | str | None = None
    valid: bool = True

    def text(self) -> str:
        """The message as ``--print`` shows it."""
        if self.protocol == "openflow":
            head = f"OF{self.version} " if self.version else "OF "
            xid = f" xid=0x{self.xid:08x}" if isinstance(self.xid, int) else ""
            return f"{head}{self.name}{xid} len={self.length}"
        if self.protocol == "jsonrpc":
            ident = f" id={self.xid}" if self.xid is not None else ""
            return f"JSON-RPC {self.name}{ident} len={self.length}"
        return f"{self.name} ({self.length} bytes)"


class StreamDecoder:
    """The messages of one direction of one connection (see the module docstring)."""

    def __init__(self) -> None:
        self.mode: str | None = None  # openflow, jsonrpc, or off
        self._head = bytearray()
        self._skip = 0  # body bytes of the current OpenFlow message still to pass
        self._json = bytearray()
        self._depth = 0
        self._in_string = False
        self._escape = False

    def feed(self, data: bytes) -> list[Message]:
        """Messages completed by ``data``."""
        if not data or self.mode == "off":
            return []
        if self.mode is None:
            first = data.lstrip()[:1]
            if not first:
                return []
            if first in (b"{", b"["):
                self.mode = "jsonrpc"
            elif data[0] in VERSIONS:
                self.mode = "openflow"
            else:
                self.mode = "off"
                return [Message("unknown", "not OpenFlow or JSON-RPC: not decoded", len(data),
                                valid=False)]  # fmt: skip
        if self.mode == "openflow":
            return self._openflow(memoryview(data))
        return self._jsonrpc(data)

    def end(self) -> list[Message]:
        """At the end of the stream: a message cut short, if any."""
        left = len(self._head) or self._skip or len(self._json)
        if not left or self.mode == "off":
            return []
        name = "OpenFlow message" if self.mode == "openflow" else "JSON-RPC message"
        protocol = self.mode or "unknown"
        self._head.clear()
        self._json.clear()
        self._skip = 0
        return [Message(protocol, f"{name} cut short by the close", left, valid=False)]

    # -- OpenFlow ----------------------------------------------------------------------------

    def _openflow(self, view: memoryview) -> list[Message]:
        out: list[Message] = []
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            need = 8 - len(self._head)
            self._head += view[:need]
            view = view[need:]
            if len(self._head) < 8:
                break
            version, msg_type, length, xid = _HEADER.unpack(self._head)
            self._head.clear()
            if length < 8:
                self.mode = "off"
                out.append(Message("openflow", f"invalid header (length {length}); rest of "
                                   "stream not decoded", length, VERSIONS.get(version), xid,
                                   valid=False))  # fmt: skip
                break
            self._skip = length - 8
            known = version in VERSIONS
            name = type_name(version, msg_type) if known else f"unknown version {version}"
            out.append(Message("openflow", name, length, VERSIONS.get(version), xid,
                               valid=known and not name.startswith("type ")))  # fmt: skip
        return out

    # -- JSON-RPC ----------------------------------------------------------------------------

    def _jsonrpc(self, data: bytes) -> list[Message]:
        out: list[Message] = []
        start = len(self._json)
        self._json += data
        buf = self._json
        pos = 0  # the buffer starts with the message in progress
        for match in _JSON_TOKENS.finditer(buf, start):
            char = match.group()
            if self._escape:
                self._escape = False
                continue
            if self._in_string:
                if char == b"\\":
                    self._escape = True
                elif char == b'"':
                    self._in_string = False
                continue
            if char == b'"':
                self._in_string = True
            elif char in b"{[":
                self._depth += 1
            elif char in b"}]":
                self._depth -= 1
                if self._depth == 0:
                    end = match.end()
                    out.append(_json_message(bytes(buf[pos:end])))
                    pos = end
        del buf[:pos]
        if len(buf) > MAX_JSON:
            self.mode = "off"
            buf.clear()
            out.append(Message("jsonrpc", "message too long: not decoded", MAX_JSON, valid=False))
        return out


def _json_message(raw: bytes) -> Message:
    length = len(raw.strip())
    try:
        obj = json.loads(raw)
    except ValueError:
        return Message("jsonrpc", "invalid JSON", length, valid=False)
    if not isinstance(obj, dict):
        return Message("jsonrpc", "not a JSON-RPC object", length, valid=False)
    ident = obj.get("id")
    ident = ident if isinstance(ident, int | str) else None
    method = obj.get("method")
    if isinstance(method, str):
        return Message("jsonrpc", method, length, xid=ident)
    if "result" in obj or "error" in obj:
        return Message("jsonrpc", "error reply" if obj.get("error") else "reply", length, xid=ident)
    return Message("jsonrpc", "not a JSON-RPC message", length, valid=False)
