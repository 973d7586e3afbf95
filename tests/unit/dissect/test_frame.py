"""vmsniff.dissect.frame: lazy, zero-copy, and layers equal to their dataclasses' own."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.unit.dissect.test_dissect import _crafted
from vmsniff.dissect import LAYERS, Ethernet, Layer, Tcp, decode, flow_key
from vmsniff.dissect import frame as frame_module


def _sample(f: dataclasses.Field[Any], i: int) -> object:
    kind = str(f.type)
    if kind.startswith("str"):
        return f"v{i}"
    if kind.startswith("bytes"):
        return bytes([i])
    if kind.startswith("bool"):
        return bool(i % 2)
    if kind.startswith("tuple"):
        return (i, i + 1)
    return i


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.name)
def test_the_fast_constructor_gives_the_dataclass_own_object(cls: type[Layer]) -> None:
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    values = [_sample(f, i) for i, f in enumerate(fields)]
    fast, slow = frame_module._maker(cls)(*values), cls(*values)
    assert type(fast) is cls and fast == slow and hash(fast) == hash(slow)
    assert repr(fast) == repr(slow)
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)  # type: ignore[call-overload]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.offset = 99


def test_decode_reads_nothing_until_asked_and_builds_only_what_is_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    walks: list[object] = []
    built: list[type[Layer]] = []
    walk = frame_module.walk

    def counting_walk(raw: Any, linktype: int) -> Any:
        walks.append(raw)
        return walk(raw, linktype)

    monkeypatch.setattr(frame_module, "walk", counting_walk)

    def counting(kind: type[Layer], build: Any) -> Any:
        return lambda raw, at, ctx: built.append(kind) or build(raw, at, ctx)

    for kind, build in list(frame_module._BUILD.items()):
        monkeypatch.setitem(frame_module._BUILD, kind, counting(kind, build))
    buf = bytearray(_crafted()[1])  # Ethernet, IPv4, TCP with a payload
    frame = decode(buf)
    assert frame.data is buf and not walks  # no copy, no parsing
    tcp = frame.find("tcp")
    assert isinstance(tcp, Tcp) and tcp.sport == 80 and built == [Tcp] and len(walks) == 1
    assert frame.find(Tcp) is tcp and frame.error is None and built == [Tcp]
    assert [x.name for x in frame.layers] == ["ethernet", "ipv4", "tcp"] and len(walks) == 1
    assert frame.layers[2] is tcp and frame.find(Layer) is frame.layers[0]
    assert frame.find(Layer, innermost=True) is tcp
    assert frame.payload(tcp) == b"hello"


def test_a_memoryview_or_bytearray_gives_the_layers_of_bytes() -> None:
    for data in _crafted():
        frame = decode(data)
        for other in (memoryview(data), bytearray(data), memoryview(b"xx" + data)[2:]):
            again = decode(other)
            assert again.layers == frame.layers and again.error == frame.error
            assert again == frame and hash(again) == hash(frame)
            assert flow_key(other) == flow_key(data)


def test_a_frame_is_read_only() -> None:
    frame = decode(_crafted()[0], ts_ns=5)
    with pytest.raises(AttributeError):
        frame.data = b""  # type: ignore[misc]
    with pytest.raises(AttributeError):
        frame.extra = 1  # type: ignore[attr-defined]
    assert frame.ts_ns == 5 and "Frame(" in repr(frame) and isinstance(frame.layers[0], Ethernet)
