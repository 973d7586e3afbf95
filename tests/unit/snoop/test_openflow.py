"""--print's framing: OpenFlow headers, JSON-RPC methods, and never an exception."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from vmsniff.snoop.openflow import Message, StreamDecoder, type_name


def of(version: int, msg_type: int, xid: int, body: bytes = b"") -> bytes:
    return struct.pack("!BBHI", version, msg_type, 8 + len(body), xid) + body


def test_type_names_follow_each_version() -> None:
    assert type_name(1, 4) == "VENDOR" and type_name(4, 4) == "EXPERIMENTER"
    assert type_name(1, 16) == "STATS_REQUEST" and type_name(4, 18) == "MULTIPART_REQUEST"
    assert type_name(4, 29) == "METER_MOD" and type_name(6, 35) == "CONTROLLER_STATUS"
    assert type_name(6, 22) == "type 22"  # removed in 1.5
    assert type_name(1, 99) == "type 99"


def test_messages_split_anywhere_are_framed_whole() -> None:
    stream = of(6, 0, 1, b"\x00\x01\x00\x08\x00\x00\x00\x70") + of(4, 14, 0xDEAD, bytes(3000))
    stream += of(1, 2, 5)
    for cut in (1, 3, 7, 9, 100, 3010):
        dec = StreamDecoder()
        msgs = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        assert [(m.version, m.name, m.xid, m.length) for m in msgs] == [
            ("1.5", "HELLO", 1, 16),
            ("1.3", "FLOW_MOD", 0xDEAD, 3008),
            ("1.0", "ECHO_REQUEST", 5, 8),
        ]
        assert dec.end() == []


def test_unknown_and_invalid_are_shown_not_fatal() -> None:
    dec = StreamDecoder()
    (unknown,) = dec.feed(of(4, 77, 3))
    assert (unknown.name, unknown.valid) == ("type 77", False)
    (bad,) = dec.feed(struct.pack("!BBHI", 4, 0, 4, 9) + b"more")
    assert bad.valid is False and "invalid header" in bad.name
    assert dec.feed(of(4, 0, 1)) == []  # the rest is not decoded
    assert "rest of stream not decoded" in bad.text()


def test_unknown_version_is_named() -> None:
    (msg,) = StreamDecoder().feed(b"\x01" + of(4, 0, 1)[1:])  # version 1 is known; use 9
    assert msg.valid
    dec = StreamDecoder()
    dec.mode = "openflow"
    (msg,) = dec.feed(of(9, 0, 1))
    assert msg.name == "unknown version 9" and not msg.valid


def test_ovsdb_json_rpc_methods_and_replies() -> None:
    dec = StreamDecoder()
    text = (
        b'{"id":0,"method":"get_schema","params":["Open_vSwitch"]}'
        b'{"id":"echo","method":"echo","params":[]}{"id":0,"result":{"x":"}{\\"["},"error":null}'
    )
    msgs = dec.feed(text[:20]) + dec.feed(text[20:70]) + dec.feed(text[70:])
    assert [(m.name, m.xid) for m in msgs] == [("get_schema", 0), ("echo", "echo"), ("reply", 0)]
    assert msgs[0].text() == f"JSON-RPC get_schema id=0 len={text.index(b'}') + 1}"


def test_not_openflow_is_said_once() -> None:
    dec = StreamDecoder()
    (msg,) = dec.feed(b"GET / HTTP/1.1\r\n")
    assert msg == Message("unknown", "not OpenFlow or JSON-RPC: not decoded", 16, valid=False)
    assert dec.feed(b"more") == [] and dec.end() == []


@given(st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_bytes_never_raise(chunks: list[bytes]) -> None:
    dec = StreamDecoder()
    for chunk in chunks:
        for m in dec.feed(chunk):
            assert m.text()
    dec.end()
