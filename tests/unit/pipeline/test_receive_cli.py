"""``vmsniff receive -r``: real captures through the whole command, checked with tshark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.pipeline.helpers import gre, icmp_frame, tshark_fields
from tests.unit.wire.conftest import _load_expected, capture_names, require_captures
from vmsniff.formats.capture import LINKTYPE_RAW
from vmsniff.pcap.pcap import file_header, record
from vmsniff.pcap.reader import read_records

ROOT = Path(__file__).resolve().parents[3]


def receive(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "vmsniff", "receive", *args],
        cwd=ROOT, input=stdin, capture_output=True, timeout=120,
    )  # fmt: skip


def _stats(done: subprocess.CompletedProcess[bytes]) -> dict[str, int]:
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.captures
@pytest.mark.parametrize("name", capture_names("gre") + capture_names("erspan"))
def test_captures_inner_frames_match_tsharks_view(name: str, tmp_path: Path) -> None:
    base = require_captures()
    out = tmp_path / "inner.pcapng"
    stats = _stats(receive("-r", str(base / name), "-w", str(out), "--format", "pcapng", "--json"))
    expected = _load_expected(base / f"{name}.expected.tsv")
    assert stats["received"] == len(expected)
    # tshark lists layers outer first: the inner Ethernet source is the second eth.src of a
    # frame with an Ethernet outer link, the first of a raw-IP outer capture.
    inner_macs = [row["eth.src"][-1] for row in expected if row["gre.proto"] and row["eth.src"][1:]]
    rows = tshark_fields(out, "eth.src", "frame.len")
    assert len(rows) == stats["written"]
    if name.endswith(("zeek__erspan.pcap", "erspan-type-ii-2.pcap", "zeek__erspanI.pcap")):
        assert [r[0] for r in rows] == inner_macs
    counted = stats["malformed"] + stats["not_tunnelled"] + stats["fragments_held"]
    assert stats["written"] + counted == stats["received"]


@pytest.mark.captures
@pytest.mark.parametrize("name", capture_names("malformed"))
def test_malformed_captures_are_counted_never_fatal(name: str, tmp_path: Path) -> None:
    base = require_captures()
    stats = _stats(receive("-r", str(base / name), "-w", str(tmp_path / "o.pcap"), "--json"))
    assert stats["written"] == 0
    assert stats["malformed"] + stats["not_tunnelled"] == stats["received"]


def _gre_pcap(path: Path, frames: list[bytes]) -> None:
    path.write_bytes(
        file_header(65535, LINKTYPE_RAW) + b"".join(record(i, f) for i, f in enumerate(frames))
    )


def test_filter_keys_direction_and_stdout(tmp_path: Path) -> None:
    src = tmp_path / "in.pcap"
    inner = [icmp_frame(n, vlan=1) for n in range(6)]
    _gre_pcap(src, [gre(f, key=100 + n % 3) for n, f in enumerate(inner)])
    done = receive("-r", str(src), "-w", "-", "--key", "100", "--direction", "both",
                   "--strip-vlan", "1", "icmp")  # fmt: skip
    assert done.returncode == 0, done.stderr
    recs = list(read_records([done.stdout]))
    assert [r.data for r in recs] == [icmp_frame(n) for n in range(6) if n % 3 != 2]
    assert b"4 written" in done.stderr and b"2 filtered out" in done.stderr
    assert [r.interface for r in recs] == [0, 1, 0, 1]  # pcapng by default with --direction


def test_bad_filter_fails_before_capture(tmp_path: Path) -> None:
    src = tmp_path / "in.pcap"
    _gre_pcap(src, [gre(icmp_frame(0))])
    done = receive("-r", str(src), "-w", str(tmp_path / "o.pcap"), "-f", "icmp and and")
    assert done.returncode == 2 and b"syntax error" in done.stderr
    assert not (tmp_path / "o.pcap").exists()


def test_existing_file_is_kept(tmp_path: Path) -> None:
    src = tmp_path / "in.pcap"
    _gre_pcap(src, [gre(icmp_frame(0))])
    (tmp_path / "o.pcap").write_bytes(b"keep")
    done = receive("-r", "-", "-w", str(tmp_path / "o.pcap"), stdin=src.read_bytes())
    assert done.returncode == 2 and b"--force" in done.stderr
    assert (tmp_path / "o.pcap").read_bytes() == b"keep"


def test_print_and_count(tmp_path: Path) -> None:
    src = tmp_path / "in.pcap"
    _gre_pcap(src, [gre(icmp_frame(n), key=5) for n in range(10)])
    done = receive("-r", str(src), "--print", "-c", "3")
    assert done.returncode == 0
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 3
    assert all(" gre-key-5 IP 192.168.0.1 > 192.168.0.2: ICMP echo request" in x for x in lines)
    done = receive("-r", str(src), "-c", "1", "-tt", "-e", "-X")  # tcpdump's flags
    out = done.stdout.decode().splitlines()
    assert done.returncode == 0 and out[0].startswith("0.000000 gre-key-5 ")
    assert "ethertype IPv4 (0x0800)" in out[0] and out[1].startswith("\t0x0000:  4500")


def test_damaged_file_warns_and_keeps_what_came_before(tmp_path: Path) -> None:
    src = tmp_path / "in.pcap"
    _gre_pcap(src, [gre(icmp_frame(n)) for n in range(3)])
    src.write_bytes(src.read_bytes()[:-10])
    done = receive("-r", str(src), "-w", str(tmp_path / "o.pcap"))
    assert done.returncode == 0 and b"warning" in done.stderr
    assert len(list(read_records([(tmp_path / "o.pcap").read_bytes()]))) == 2


def test_flows_table_at_the_end(tmp_path: Path) -> None:
    """--flows: the packets counted into flows, as a table after the run (no packet lines
    without --print), or in the --json document."""
    import json

    src = tmp_path / "in.pcap"
    _gre_pcap(src, [gre(icmp_frame(n % 2), key=5) for n in range(6)])
    done = receive("-r", str(src), "--flows", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["written"] == 6 and doc["flows"]["packets"] == 6
    assert {r["icmp_id"] for r in doc["flows"]["rows"]} == {0, 1}
    done = receive("-r", str(src), "--flows")
    text = done.stdout.decode()
    assert done.returncode == 0 and "2 flows, 6 packets" in text and "ICMP echo" not in text


def test_dash_d_lists_what_can_be_captured() -> None:
    """tcpdump's -D: receive lists the interfaces, capture the VMs' NICs libvirt runs here
    (libvirt's built-in test driver has one domain, "test", with one interface)."""
    import json
    import subprocess
    import sys

    done = receive("-D", "--json")
    assert done.returncode == 0 and "lo" in [
        i["name"] for i in json.loads(done.stdout)["interfaces"]
    ]
    argv = [sys.executable, "-m", "vmsniff", "capture", "-D", "--libvirt", "test:///default"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1.test/eth0 (") and "[running]" in done.stdout


def test_tcp_numbers_relative_by_default_absolute_with_dash_s(tmp_path: Path) -> None:
    """Printed as tcpdump prints the decapsulated frames: relative seq/ack by default, the
    header's with -S (tcpdump's flag)."""
    from tests.unit.dissect.test_printer import _conversations, _facts, _tcpdump

    src, out = tmp_path / "in.pcap", tmp_path / "out.pcap"
    frames = _conversations()
    _gre_pcap(src, [gre(f, key=5) for f in frames])
    assert receive("-r", str(src), "-w", str(out)).returncode == 0
    for flag in ([], ["-S"], ["--absolute-tcp-sequence-numbers"]):
        done = receive("-r", str(src), "-t", *flag)
        assert done.returncode == 0, done.stderr
        ours = [_facts(x) for x in done.stdout.decode().splitlines()]
        theirs = [_facts(x) for x in _tcpdump(out, *flag[:1] and ["-S"])]
        assert [x["numbers"] for x in ours] == [x["numbers"] for x in theirs]
        assert len(ours) == len(frames)
    relative = receive("-r", str(src), "-t").stdout.decode().splitlines()
    absolute = receive("-r", str(src), "-t", "-S").stdout.decode().splitlines()
    assert "ack 1," in relative[2] and "ack 5001," in absolute[2]
