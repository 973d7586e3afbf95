"""vmsniff.frames: a run's packets as dissected frames (the lab test drives a live capture:
tests/functional/test_frames.py)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from tests.unit.pipeline.helpers import gre, icmp_frame
from vmsniff.dissect import read_file
from vmsniff.dissect.printer import frame_json
from vmsniff.errors import FileError, UsageError
from vmsniff.formats.capture import LINKTYPE_RAW
from vmsniff.frames import FrameSink, receive_frames
from vmsniff.pcap.pcap import file_header, record
from vmsniff.pipeline.core import Packet
from vmsniff.pipeline.sinks import OutputOptions, open_sink
from vmsniff.receive import ReceiveOptions, open_receive


def _gre_pcap(path: Path, count: int) -> Path:
    frames = [gre(icmp_frame(n % 65536), key=5 + n % 2) for n in range(count)]
    path.write_bytes(file_header(65535, LINKTYPE_RAW)
                     + b"".join(record(i * 1000, f) for i, f in enumerate(frames)))  # fmt: skip
    return path


def test_receive_frames_are_the_frames_the_run_writes(tmp_path: Path) -> None:
    src, out = _gre_pcap(tmp_path / "in.pcap", 50), tmp_path / "out.pcapng"
    opts = ReceiveOptions(OutputOptions(write=str(out), fmt="pcapng"), read_file=str(src),
                          expression="icmp[4:2] % 5 != 0")  # fmt: skip
    got = list(receive_frames(opts))
    written = list(read_file(str(out)))
    assert len(got) == len(written) == 40  # the filter ran first: 10 of 50 left out
    assert [frame_json(f) for f in got] == [frame_json(f) for f in written]
    assert {f.interface for f in got} == {"gre-key-5", "gre-key-6"}
    assert got[0].find("icmp").ident == 1  # type: ignore[union-attr]
    # frames only: no file, no printing
    only = list(receive_frames(ReceiveOptions(OutputOptions(), read_file=str(src)), count=7))
    assert [f.find("icmp").ident for f in only] == list(range(7))  # type: ignore[union-attr]


def test_count_and_an_early_break_end_the_run(tmp_path: Path) -> None:
    src = _gre_pcap(tmp_path / "in.pcap", 20_000)
    opts = ReceiveOptions(OutputOptions(), read_file=str(src))
    assert len(list(receive_frames(opts, count=3))) == 3
    sink = FrameSink(maxsize=10)
    with open_receive(ReceiveOptions(OutputOptions(sinks=(sink,)), read_file=str(src))) as rx:
        for n, _ in enumerate(sink.frames(partial(rx.run)), 1):
            if n == 5:
                break
        # the reader left: the run ended at its next batch, far from the file's end
        assert sink.finished and sink.stats is not None
        assert 5 <= sink.stats.written < 20_000
    sink = FrameSink()
    with open_receive(ReceiveOptions(OutputOptions(sinks=(sink,)), read_file=str(src))) as rx:
        assert sum(1 for _ in sink.frames(rx.run)) == 20_000
        assert sink.stats is not None and sink.stats.written == 20_000


def test_an_error_of_the_run_is_raised_to_the_reader_after_its_frames() -> None:
    sink = FrameSink()
    pkt = Packet(0, icmp_frame(1), 98, 1, None, 0, False)

    def run() -> object:
        sink.write([pkt, pkt])
        raise FileError("disk full")

    got = []
    with pytest.raises(FileError, match="disk full"):
        for frame in sink.frames(run):  # type: ignore[arg-type]
            got.append(frame)
    assert len(got) == 2 and got[0].find("icmp").ident == 1  # type: ignore[union-attr]


def test_no_output_at_all_is_refused_when_the_sink_opens() -> None:
    OutputOptions()  # a library adds its own sinks later
    with pytest.raises(UsageError, match="nothing to do"):
        open_sink(None, "pcap", 65535, application="test")
