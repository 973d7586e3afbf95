"""``vmsniff capture`` as a command: options, refusals, and a whole run over a fake ring."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.unit.capture.test_source import FakeRing
from vmsniff.cli import cli
from vmsniff.cli._errors import run as run_cli
from vmsniff.model import Nic, PlugKind, Server, Target
from vmsniff.pcap.reader import read_records

SERVER = Server(id="11111111-2222-3333-4444-555555555555", name="web-1", host="compute-1")
NIC = Nic(mac="fa:16:3e:00:00:01", tap="tapfake0", ovs_port="tapfake0", bridge="br-int",
          plug=PlugKind.OVS)  # fmt: skip
NIC2 = Nic(mac="fa:16:3e:00:00:02", tap="tapfake1", ovs_port="tapfake1", bridge="br-int",
           plug=PlugKind.OVS)  # fmt: skip


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Resolve answers web-1 (on this host unless the query says 'remote'); records queries."""
    import vmsniff.capture.live
    import vmsniff.resolve

    monkeypatch.setattr(vmsniff.capture.live, "require_packet_sockets", lambda: None)
    calls: list[Any] = []

    def fake_resolve(opts: Any) -> Target:
        calls.append(opts)
        nics = (NIC, NIC2) if opts.nic is None else (NIC,)
        return Target(server=SERVER, nics=nics, local=opts.query != "remote", ovsdb=None)

    monkeypatch.setattr(vmsniff.resolve, "resolve", fake_resolve)
    monkeypatch.setenv("VMSNIFF_HOST", "compute-9")
    return calls


class Done:
    def __init__(self, exit_code: int, out: str, err: str) -> None:
        self.exit_code, self.stdout, self.output = exit_code, out, out + err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    """``vmsniff capture ARGS`` through the CLI's error mapping: exit code and output."""

    def invoke(*args: str) -> Done:
        code = run_cli(cli, ["capture", *args])
        got = capsys.readouterr()
        return Done(code, got.out, got.err)

    return invoke


def test_stdout_twice_and_two_filters_are_usage_errors(asked: list[Any], run: Any) -> None:
    # (without -w the packets are printed, as tcpdump does: not an error any more, issue #16)
    assert run("web-1", "-w", "-", "--print").exit_code == 2
    assert run("web-1", "-w", "x", "-f", "icmp", "udp").exit_code == 2
    assert asked == []


def test_a_bad_filter_fails_before_anything_is_resolved(asked: list[Any], run: Any) -> None:
    done = run("web-1", "-w", "x.pcapng", "tcp", "port")
    assert done.exit_code == 2 and "bad filter" in done.output
    assert asked == []


def test_a_vm_on_another_host_is_refused_with_the_way_out(asked: list[Any], run: Any) -> None:
    done = run("remote", "-w", "x.pcapng")
    assert done.exit_code == 5
    assert "compute-1" in done.output and "compute-9" in done.output
    assert "vmsniff mirror" in done.output


def test_several_nics_need_a_choice_or_all(asked: list[Any], run: Any) -> None:
    # Without --nic, resolve returns both NICs and capture wants exactly one.
    done = run("web-1", "-w", "x.pcapng", "--at", "tap")
    assert done.exit_code == 4
    assert asked[-1].nic is None


@contextmanager
def _fake_rings(monkeypatch: pytest.MonkeyPatch, frames: dict[str, list[Any]]) -> Iterator[None]:
    import vmsniff.capture.live as live
    import vmsniff.capture.netdev as netdev

    real_open = live.open_capture
    rings: list[FakeRing] = []
    retires: list[int] = []
    sizes: list[int] = []

    def factory(device: str, program: list[Any], retire_ms: int, blocks: int) -> FakeRing:
        retires.append(retire_ms)
        sizes.append(blocks)
        ring = FakeRing([frames[device]])
        rings.append(ring)
        return ring

    def open_capture(*args: Any, **kw: Any) -> Any:
        stops = iter([False, False, False, True])
        kw["stop"] = lambda: next(stops, True)
        return real_open(*args, ring_factory=factory, **kw)

    monkeypatch.setattr(live, "open_capture", open_capture)
    monkeypatch.setattr(live, "require_packet_sockets", lambda: None)
    monkeypatch.setattr(netdev, "link_exists", lambda name: name.startswith("tapfake"))
    yield
    assert all(r.closed for r in rings)
    # one ring keeps the 50 ms block timeout; merged rings use 10 ms (their merge holds 40 ms)
    assert set(retires) <= ({50} if len(retires) == 1 else {10})
    # -B (32 MiB by default) is split between the rings
    assert all(n * len(sizes) <= 32 for n in sizes)


def test_nic_all_writes_one_pcapng_with_each_nics_frames(
    asked: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run: Any
) -> None:
    out = tmp_path / "vm.pcapng"
    frames = {
        "tapfake0": [(1_000, bytes(60), 3, 60), (3_000, b"\x01" * 60, 4, 1514)],
        "tapfake1": [(2_000, b"\x02" * 60, 4, 60)],
    }
    with _fake_rings(monkeypatch, frames):
        done = run("web-1", "--nic", "all", "-w", str(out), "--json")
    assert done.exit_code == 0, done.output
    stats = json.loads(done.stdout)
    assert (stats["received"], stats["written"], stats["kernel_dropped"]) == (3, 3, 0)
    assert [n["interface"] for n in stats["nics"]] == ["tapfake0", "tapfake1"]
    assert stats["files"] == [str(out)] and stats["sessions"] == []
    assert asked[-1].nic is None
    records = list(read_records([out.read_bytes()]))
    assert [(r.ts_ns, r.data[:1], r.origlen) for r in records] == [
        (1_000, b"\x00", 60), (2_000, b"\x02", 60), (3_000, b"\x01", 1514),
    ]  # fmt: skip
    assert (out.stat().st_mode & 0o777) == 0o600


def test_unwritable_output_is_refused_after_closing_everything(
    asked: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run: Any
) -> None:
    with _fake_rings(monkeypatch, {"tapfake0": []}):
        done = run("web-1", "--nic", NIC.mac, "-w", str(tmp_path / "no" / "such" / "x.pcapng"))
    assert done.exit_code == 3 and "no such directory" in done.output


def test_help_offers_all_for_nic(run: Any) -> None:
    done = run("--help")
    assert "MAC|PORT|NET|all" in done.output and "--at [tap|ovs]" in done.output


def test_json_with_print_keeps_stdout_one_document(
    asked: list[Any], monkeypatch: pytest.MonkeyPatch, run: Any
) -> None:
    frames = {"tapfake0": [(1_000, bytes(60), 3, 60), (2_000, bytes(60), 4, 60)]}
    with _fake_rings(monkeypatch, frames):
        done = run("web-1", "--nic", NIC.mac, "--print", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["written"] == 2  # all of stdout is the document
    assert done.output.count('"name":"ethernet"') == 2  # JSON Lines went to stderr


def test_closed_pipe_is_a_quiet_exit_0(
    asked: list[Any], monkeypatch: pytest.MonkeyPatch, run: Any
) -> None:
    """`vmsniff capture VM -w - | head -c 10`: stdout is a pipe whose reader is gone."""
    import os

    frames = {"tapfake0": [(1_000, bytes(60), 3, 60)]}
    read, write = os.pipe()
    os.close(read)
    saved = os.dup(1)
    os.dup2(write, 1)
    try:
        with _fake_rings(monkeypatch, frames):  # (and the rings were closed)
            done = run("web-1", "--nic", NIC.mac, "-w", "-")
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(write)
    assert done.exit_code == 0 and done.output == ""


def test_a_link_as_output_is_refused_even_with_force(
    asked: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run: Any
) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"tenant data")
    target.chmod(0o644)
    (tmp_path / "link.pcapng").symlink_to(target)
    with _fake_rings(monkeypatch, {"tapfake0": [(1_000, bytes(60), 3, 60)]}):
        done = run("web-1", "--nic", NIC.mac, "-w", str(tmp_path / "link.pcapng"), "--force")
    assert done.exit_code == 2 and "symbolic link" in done.output
    assert target.read_bytes() == b"tenant data" and (target.stat().st_mode & 0o777) == 0o644
