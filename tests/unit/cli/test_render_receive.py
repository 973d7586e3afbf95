"""``--flows`` drawn live on a terminal (``cli/_render_receive.py``): when it is drawn, how
often, what it shows; and the real command under a pseudo-terminal."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from tests.unit.pipeline.helpers import gre, icmp_frame
from vmsniff.cli._context import Env
from vmsniff.cli._render_receive import LiveFlows, live_line, progress
from vmsniff.dissect.flow import flow_key as observe
from vmsniff.flows.table import FlowTable
from vmsniff.formats.capture import LINKTYPE_ETHERNET, LINKTYPE_RAW
from vmsniff.pcap.pcap import file_header, record
from vmsniff.pipeline.core import Stats

ROOT = Path(__file__).resolve().parents[3]


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _table(flows: int, packets_each: int = 1) -> FlowTable:
    table = FlowTable()
    for n in range(flows):
        for _ in range(packets_each + n):  # flow n: n more packets than flow 0
            frame = icmp_frame(n)
            table.add(0, observe(frame, LINKTYPE_ETHERNET))
    return table


def test_the_live_table_is_redrawn_once_per_interval_and_gone_at_the_end() -> None:
    screen = Terminal()
    console = Console(file=screen, force_terminal=True, width=160, height=30)
    table, clock = _table(2), Clock()
    stats = Stats()
    stats.received = stats.written = 3
    with LiveFlows(console, table, interval=1.0, clock=clock) as live:
        first = screen.getvalue()
        assert "2 flows, 3 packets" in first  # drawn at once, before any tick
        for step in (0.3, 0.6, 0.9):  # drive() ticks every 0.5 s or so; drawn once a second
            clock.now = 100.0 + step
            live.tick(stats)
        assert live.draws == 0
        for _ in range(3):
            table.add(0, observe(icmp_frame(9), LINKTYPE_ETHERNET))
        clock.now = 101.0
        live.tick(stats)
        assert live.draws == 1
        drawn = screen.getvalue()[len(first) :]
        assert "3 flows, 6 packets" in drawn and "3 received" in drawn and "ICMP 3" in drawn
        clock.now = 101.5
        live.tick(stats)
        clock.now = 102.1
        live.tick(stats)
        assert live.draws == 2
    # transient: the cursor shown again, the last frame erased (line by line: up, erase)
    end = screen.getvalue()
    assert "\x1b[?25h" in end and end.endswith("\x1b[1A\x1b[2K" * 8)


def test_the_live_table_shows_the_busiest_flows_that_fit() -> None:
    console = Console(file=Terminal(), force_terminal=True, width=160, height=14)
    table = _table(12)
    text = _text(LiveFlows(console, table).render(None), console)
    assert "12 flows" in text and "(showing 5)" in text  # 14 lines tall: 5 rows
    # the busiest first: flow 11 has the most packets (12), flow 7 the fifth most (8)
    counts = [int(m) for m in re.findall(r"│ ICMP +(?:│[^│]+){4}│ +(\d+) │", text)]
    assert counts == [12, 11, 10, 9, 8]
    top = LiveFlows(console, table, top=2).render(None)
    assert "(showing 2)" in _text(top, console)


def _text(renderable: object, console: Console) -> str:
    with console.capture() as cap:
        console.print(renderable)
    return cap.get()


def test_progress_draws_flows_only_on_a_terminal_without_json_or_lines() -> None:
    table = FlowTable()

    def which(*, tty_out: bool, tty_err: bool, as_json: bool = False, lines: bool = False,
              flows: FlowTable | None = table, verbosity: int = 0) -> str:  # fmt: skip
        env = Env(verbosity=verbosity, stdout=Terminal() if tty_out else io.StringIO(),
                  stderr=Terminal() if tty_err else io.StringIO())  # fmt: skip
        with progress(env, flows, as_json=as_json, lines_on_stdout=lines) as tick:
            if tick is None:
                return "none"
            owner = getattr(tick, "__self__", None)
            return "flows" if isinstance(owner, LiveFlows) else tick.__qualname__.split(".")[0]

    line = live_line.__name__
    assert which(tty_out=True, tty_err=True) == "flows"
    assert which(tty_out=True, tty_err=False) == "flows"
    assert which(tty_out=False, tty_err=True) == line  # stdout a file or pipe: unchanged
    assert which(tty_out=True, tty_err=True, as_json=True) == "none"
    assert which(tty_out=True, tty_err=True, lines=True) == line  # packet lines on stdout
    assert which(tty_out=True, tty_err=True, flows=None) == line  # no --flows
    assert which(tty_out=True, tty_err=True, verbosity=-1) == "none"
    assert which(tty_out=False, tty_err=False) == "none"


# -- the command under a pseudo-terminal ---------------------------------------------------------


def _under_pty(*args: str, env: dict[str, str] | None = None) -> str:
    """``vmsniff ARGS`` with stdout and stderr on a pseudo-terminal; what it wrote there. An
    ``ARGS`` starting with ``vmsniff``'s own is run with ``python -m``; else as given, with
    ``PYTHON`` in it replaced by this interpreter."""
    command = [sys.executable if a == "PYTHON" else a for a in args]
    if "PYTHON" not in args:
        command = [sys.executable, "-m", "vmsniff", *args]
    main, child = pty.openpty()
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=child,
                            stderr=child, env={**(env or os.environ), "COLUMNS": "200",
                                               "LINES": "40"})  # fmt: skip
    os.close(child)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([main], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(main)
        proc.wait(timeout=60)
    assert proc.returncode == 0, out
    return out.decode(errors="replace")


def test_receive_flows_draws_live_on_a_terminal_then_prints_the_table_once(
    tmp_path: Path,
) -> None:
    src = tmp_path / "in.pcap"
    frames = [gre(icmp_frame(n % 2), key=5) for n in range(6)]
    src.write_bytes(file_header(65535, LINKTYPE_RAW)
                    + b"".join(record(i, f) for i, f in enumerate(frames)))  # fmt: skip
    shown = _under_pty("receive", "-r", str(src), "--flows")
    # the live table (drawn at the start, before the file's packets), erased, then the
    # stats and the whole table once
    assert "0 flows, 0 packets" in shown and "\x1b[?25l" in shown
    assert shown.count("2 flows, 6 packets") == 1
    assert shown.index("0 flows") < shown.index("2 flows, 6") and "6 written" in shown
    # off a terminal, as before: no live table
    done = subprocess.run([sys.executable, "-m", "vmsniff", "receive", "-r", str(src), "--flows"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "0 flows" not in done.stdout and "\x1b[" not in done.stdout
    assert done.stdout.count("2 flows, 6 packets") == 1
    shown = _under_pty("receive", "-r", str(src), "--flows", "--json")  # --json: no live table
    assert "0 flows" not in shown and '"packets": 6' in shown
