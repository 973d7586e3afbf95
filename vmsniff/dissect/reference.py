"""docs/packet-api.md, generated from the layer classes and the enums (``python -m
vmsniff.dissect.reference`` writes it; a unit test fails when the committed page is stale)."""

from __future__ import annotations

import dataclasses
import sys
from enum import Enum
from pathlib import Path

from vmsniff.dissect.constants import ArpOp, EtherType, Icmp6Type, IcmpType, IPProto, TcpFlags
from vmsniff.dissect.layers import LAYERS

__all__ = ["fields_document", "render"]

_HEAD = """# The packet API (`vmsniff.dissect`)

Generated from the code by `python -m vmsniff.dissect.reference`; do not edit.

```python
from vmsniff.dissect import read_file, decode, TcpFlags

for frame in read_file("vm.pcapng"):  # any pcap/pcapng, any link type vmsniff reads
    tcp = frame.find("tcp")  # the outermost TCP layer, or None
    inner = frame.find("ipv4", innermost=True)  # inside GRE/ERSPAN/VXLAN/Geneve
    if tcp and tcp.flags & TcpFlags.SYN:
        print(frame.ts_ns, frame.interface, frame.direction, tcp.sport, tcp.dport)
```

## Frame

| field | meaning |
|---|---|
| `data` | the frame's bytes as captured |
| `linktype` | its pcap link type |
| `layers` | the layers, outermost first |
| `error` | why dissection stopped early (a header cut short...), else None; never raised |
| `ts_ns` | capture time, nanoseconds since the epoch |
| `length` / `wire_length` | length on the wire (`wire_length` falls back to the captured length) |
| `interface` | the pcapng interface name (vmsniff names one per NIC) |
| `direction` | `Direction.FROM_VM` / `TO_VM` when marked (pcapng `epb_flags`) |
| `find(name, innermost=False)` | the layer by name (`"tcp"`) or class (`Tcp`), or None |
| `payload(layer)` | the bytes after that layer's header, up to the next layer |

`decode(data, linktype=1, *, ts_ns, length, interface, direction)` dissects one frame;
`read_file(path)` yields every frame of a file; `vmsniff.dissect.printer.Printer` formats
frames as tcpdump's lines or JSON Lines.

## A live receive or capture

`vmsniff.frames` gives the same frames from a run as it goes: `capture_frames()` on the VM's
host, `receive_frames()` on a mirror's receiver (or over `read_file`). Each is a frame the run
would write, after its filter, with its time, interface and direction. An `OutputOptions`
with `write=` writes the file at the same time; leaving the loop ends the run (and removes
`--at ovs` rows).

```python
from vmsniff.capture import CaptureOptions
from vmsniff.capture.session import plan_capture
from vmsniff.frames import capture_frames, receive_frames
from vmsniff.pipeline.sinks import OutputOptions
from vmsniff.receive import ReceiveOptions
from vmsniff.resolve import ResolveOptions

opts = CaptureOptions(filter="tcp")
planned = plan_capture(ResolveOptions(query="web-1"), opts, all_nics=False)
for frame in capture_frames(planned, opts, duration=60):
    tcp = frame.find("tcp")
    print(frame.direction, tcp.sport, tcp.dport, tcp.flags)

rx = ReceiveOptions(OutputOptions(write="web-1.pcap"), keys=(100, 101), expression="udp")
for frame in receive_frames(rx, count=10):
    print(frame.interface, frame.find("udp"))
```

Underneath, `FrameSink` is a sink that dissects what the run gives it: put it in
`OutputOptions(sinks=(sink,))` of `vmsniff.receive.open_receive()` or
`vmsniff.capture.session.open_capture_run()` and iterate `sink.frames(run.run)`. The run goes
on in a thread; frames wait in a bounded queue, so a reader slower than the traffic makes the
kernel drop packets (counted in the run's stats, `sink.stats`), as a slow tcpdump does.

## Layers
"""


def _layers() -> str:
    out = []
    for cls in LAYERS:
        out.append(f"\n### `{cls.name}`: `{cls.__name__}`\n\n{(cls.__doc__ or '').strip()}\n")
        out.append("| field | type | meaning |\n|---|---|---|")
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            kind = str(f.type).replace("|", "\\|")
            out.append(f"| `{f.name}` | `{kind}` | {f.metadata.get('doc', '')} |")
        out.append("")
    return "\n".join(out)


def _constants() -> str:
    out = ["\n## Constants\n"]
    enums: list[type[Enum]] = [EtherType, IPProto, IcmpType, Icmp6Type, ArpOp, TcpFlags]
    for enum in enums:
        out.append(f"### `{enum.__name__}`\n\n{(enum.__doc__ or '').strip()}\n")
        out.append("| name | value |\n|---|---|")
        for member in enum:
            value = member.value
            out.append(f"| `{member.name}` | {value} (0x{value:x}) |")
        out.append("")
    return "\n".join(out)


def fields_document() -> dict[str, object]:
    """Every layer's fields (name, type, meaning) and every constant, as data."""
    layers = {
        cls.name: [{"field": f.name, "type": str(f.type), "doc": f.metadata.get("doc", "")}
                   for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        for cls in LAYERS
    }  # fmt: skip
    enums: list[type[Enum]] = [EtherType, IPProto, IcmpType, Icmp6Type, ArpOp, TcpFlags]
    constants = {e.__name__: {m.name: m.value for m in e} for e in enums}
    return {"layers": layers, "constants": constants}


def render() -> str:
    """The whole page."""
    return _HEAD + _layers() + _constants()


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[2] / "docs" / "packet-api.md"
    target.write_text(render())
    sys.stdout.write(f"wrote {target}\n")
