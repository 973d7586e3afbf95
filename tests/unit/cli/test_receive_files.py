"""``vmsniff receive``'s files under hostile conditions (issue #13): links, devices, FIFOs,
--force, read-only and full file systems, a closed pipe, unprivileged users, bad inputs.

Everything goes through the real command in a subprocess (or, for an unprivileged user, the
CLI's entry function in a forked child that dropped to nobody: this machine's interpreter lives
under /root, which nobody cannot read). Full and read-only file systems are real tmpfs mounts
in a private mount namespace (``unshare -m``); what lands on them is read back with tshark.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.unit.pipeline.helpers import gre, icmp_frame, tshark_fields
from vmsniff.formats.capture import LINKTYPE_RAW
from vmsniff.pcap.pcap import file_header, record

ROOT = Path(__file__).resolve().parents[3]
VMSNIFF = [sys.executable, "-m", "vmsniff"]


def receive(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*VMSNIFF, "receive", *args], cwd=ROOT, input=stdin, capture_output=True, timeout=120
    )


def gre_pcap(path: Path, count: int = 3, size: int = 0) -> Path:
    frames = (gre(icmp_frame(n % 65536, size=size), key=7) for n in range(count))
    path.write_bytes(
        file_header(65535, LINKTYPE_RAW) + b"".join(record(i, f) for i, f in enumerate(frames))
    )
    return path


def in_private_mount(
    mountpoint: Path, options: str, command: str
) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` (a shell line) with a fresh tmpfs on ``mountpoint`` (``options`` such as
    ``ro`` or ``size=64k``) that only this command sees; gone when it ends."""
    require_root()
    mountpoint.mkdir()
    script = f"mount -t tmpfs -o {options} vmsniff-test {shlex.quote(str(mountpoint))} && {command}"
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        cwd=ROOT, capture_output=True, timeout=120,
    )  # fmt: skip


# -- item 1: --force, links, devices -----------------------------------------------------------


def test_device_is_written_without_force_and_keeps_its_mode(tmp_path: Path) -> None:
    """``-w /dev/null --force`` made /dev/null 0600 for the whole system. A private twin of
    /dev/null (char 1:3) stands in for it, so that a regression cannot break the machine."""
    require_root()
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    null.chmod(0o666)
    src = gre_pcap(tmp_path / "in.pcap")
    for extra in ([], ["--force"]):
        done = receive("-r", str(src), "-w", str(null), *extra)
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE(null.stat().st_mode) == 0o666
        assert stat.S_ISCHR(null.stat().st_mode)


def test_forced_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"tenant data")
    target.chmod(0o644)
    (tmp_path / "link.pcap").symlink_to(target)
    src = gre_pcap(tmp_path / "in.pcap")
    done = receive("-r", str(src), "-w", str(tmp_path / "link.pcap"), "--force")
    assert done.returncode == 2
    assert b"symbolic link" in done.stderr and b"Traceback" not in done.stderr
    assert target.read_bytes() == b"tenant data"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_forced_existing_file_is_truncated_in_place_keeping_owner_and_mode(
    tmp_path: Path,
) -> None:
    require_root()
    out = tmp_path / "o.pcap"
    out.write_bytes(b"old")
    os.chown(out, 65534, 65534)
    out.chmod(0o644)
    src = gre_pcap(tmp_path / "in.pcap")
    done = receive("-r", str(src), "-w", str(out), "--force")
    assert done.returncode == 0, done.stderr
    st = out.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (65534, 0o644)
    assert len(tshark_fields(out, "frame.len")) == 3


def test_existing_file_refusal_says_how_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "o.pcap"
    out.write_bytes(b"keep")
    done = receive("-r", str(gre_pcap(tmp_path / "in.pcap")), "-w", str(out))
    assert done.returncode == 2
    assert b"exists; not overwriting it" in done.stderr and b"--force" in done.stderr
    assert out.read_bytes() == b"keep"


def test_rotation_files_are_0600_and_never_follow_links(tmp_path: Path) -> None:
    """-C writes FILE, FILE1, ...: the second name is a planted link, refused mid-run."""
    target = tmp_path / "precious"
    target.write_bytes(b"tenant data")
    (tmp_path / "o.pcap1").symlink_to(target)
    src = gre_pcap(tmp_path / "in.pcap", count=40, size=1000)
    done = receive("-r", str(src), "-w", str(tmp_path / "o.pcap"), "-C", "0.01", "--force")
    assert done.returncode == 2 and b"symbolic link" in done.stderr
    assert target.read_bytes() == b"tenant data"
    assert stat.S_IMODE((tmp_path / "o.pcap").stat().st_mode) == 0o600


# -- item 3: read-only file system, a directory, permission denied -------------------------------


def test_read_only_file_system_is_an_io_error(tmp_path: Path) -> None:
    src = gre_pcap(tmp_path / "in.pcap")
    ro = tmp_path / "ro"
    line = shlex.join([*VMSNIFF, "receive", "-r", str(src), "-w", str(ro / "o.pcap")])
    done = in_private_mount(ro, "ro,size=64k", line)
    assert done.returncode == 11, done.stderr
    assert b"Read-only file system" in done.stderr and str(ro / "o.pcap").encode() in done.stderr
    assert b"internal error" not in done.stderr


def test_directory_is_a_usage_error(tmp_path: Path) -> None:
    done = receive("-r", str(gre_pcap(tmp_path / "in.pcap")), "-w", str(tmp_path), "--force")
    assert done.returncode == 2 and b"is a directory" in done.stderr


def _as_nobody(args: list[str]) -> tuple[int, str]:
    """The CLI's entry function in a forked child that became nobody (65534), stderr caught."""
    import vmsniff.cli.receive  # noqa: F401 - imported while root can still read it
    import vmsniff.pipeline.run  # noqa: F401
    import vmsniff.pipeline.sources  # noqa: F401
    from vmsniff.cli import cli
    from vmsniff.cli._errors import run

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 99
        try:
            os.close(read)
            os.dup2(write, 2)
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = run(cli, args)
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write)
    with open(read, "rb") as fh:
        err = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory under /tmp that nobody may enter but not write (pytest's tmp_path lies
    under a 0700 directory of root's)."""
    path = Path(tempfile.mkdtemp(prefix="vmsniff-test-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_permission_denied_is_exit_7_naming_the_path(public_dir: Path) -> None:
    require_root()
    src = gre_pcap(public_dir / "in.pcap")
    src.chmod(0o644)
    code, err = _as_nobody(["receive", "-r", str(src), "-w", str(public_dir / "o.pcap")])
    assert code == 7, err
    assert f"{public_dir / 'o.pcap'}: permission denied" in err
    assert not (public_dir / "o.pcap").exists()
    src.chmod(0o600)  # and an input nobody may not read
    code, err = _as_nobody(["receive", "-r", str(src), "-w", "/dev/null"])
    assert code == 7 and f"{src}: permission denied" in err, err


# -- item 2: a full disk --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "extra"),
    [
        ("pcap", []),  # packet by packet
        ("pcapng", ["--key", "7", "--direction", "from-vm"]),
        ("pcap", ["-U"]),  # a write per packet
        ("pcap", ["-w", "{key}"]),  # one file per session
    ],
)
def test_full_disk_keeps_whole_records_prints_stats_and_exits_11(
    tmp_path: Path, fmt: str, extra: list[str]
) -> None:
    """A 64 KiB tmpfs fills up part way through: the file ends on its last whole record
    (tshark and tcpdump read it without a complaint), stats are printed, exit 11."""
    src = gre_pcap(tmp_path / "in.pcap", count=200, size=997)  # ~200 KiB of records
    full = tmp_path / "full"
    name = "o-{key}.cap" if "{key}" in extra else "o.cap"
    extra = [x for x in extra if x not in ("-w", "{key}")]
    out = full / name.replace("{key}", "7")
    line = shlex.join(
        [*VMSNIFF, "receive", "-r", str(src), "-w", str(full / name), "--format", fmt, *extra]
    )
    copy = tmp_path / "copy.cap"
    done = in_private_mount(
        full, "size=64k", f"{line}; rc=$?; cp {shlex.quote(str(out))} {copy}; exit $rc"
    )
    err = done.stderr.decode()
    assert done.returncode == 11, err
    assert "No space left on device" in err and "Traceback" not in err
    assert "200 received" in err  # the stats line came before the error
    rows = tshark_fields(copy, "frame.len")  # fails on any warning, e.g. a cut record
    assert 0 < len(rows) < 200 and {r[0] for r in rows} == {str(14 + 20 + 8 + 997)}
    tcpdump = subprocess.run(["tcpdump", "-nr", str(copy)], capture_output=True, timeout=60)
    assert tcpdump.returncode == 0 and b"truncated" not in tcpdump.stderr
    assert len(tcpdump.stdout.splitlines()) == len(rows)


def test_full_disk_with_json_keeps_stdout_one_document(tmp_path: Path) -> None:
    src = gre_pcap(tmp_path / "in.pcap", count=200, size=997)
    full = tmp_path / "full"
    line = shlex.join([*VMSNIFF, "receive", "-r", str(src), "-w", str(full / "o"), "--json"])
    done = in_private_mount(full, "size=64k", line)
    assert done.returncode == 11
    doc = json.loads(done.stdout)
    assert doc["error"] == "FileError" and doc["exit_code"] == 11
    assert b"200 received" in done.stderr


# -- item 4: inputs that are not captures, and Linux cooked v2 ------------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "empty"),
        (b"\xd4\xc3", "shorter than a capture file header"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a pcap or pcapng capture"),
        (bytes.fromhex("d4c3b2a1") + bytes(20), "version 0, not 2"),  # a pcap magic, bad header
    ],
)
@pytest.mark.parametrize("stdin", [False, True])
def test_not_a_capture_fails_and_leaves_no_output_file(
    tmp_path: Path, content: bytes, says: str, stdin: bool
) -> None:
    src = tmp_path / "in.pcap"
    src.write_bytes(content)
    out = tmp_path / "o.pcap"
    if stdin:
        done = receive("-r", "-", "-w", str(out), stdin=content)
    else:
        done = receive("-r", str(src), "-w", str(out), "--json")
    assert done.returncode == 11, done.stderr
    assert says in done.stderr.decode() and b"Traceback" not in done.stderr
    assert not out.exists()
    if not stdin:
        assert json.loads(done.stdout)["error"] == "FileError"


# Sends GRE (10 ICMP frames with key 7) and 5 UDP datagrams over a namespace's loopback while
# `tcpdump -i any` writes them down: the capture tcpdump makes today (LINUX_SLL2).
_SEND_UNDER_TCPDUMP = r"""
import socket, subprocess, sys, time
from tests.unit.pipeline.helpers import gre, icmp_frame
out = sys.argv[1]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "addr", "add", "10.250.0.1/24", "dev", "lo"], check=True)
subprocess.run(["ip", "addr", "add", "10.250.0.2/24", "dev", "lo"], check=True)
dump = subprocess.Popen(["tcpdump", "-i", "any", "--immediate-mode", "-U", "-n", "-w", out, "ip"],
                        stderr=subprocess.PIPE)
while b"listening on" not in dump.stderr.readline():
    pass
time.sleep(0.3)
# held open so that the kernel answers neither GRE nor UDP with ICMP unreachable
holder = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("10.250.0.2", 9))
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for n in range(10):
    raw.sendto(gre(icmp_frame(n), key=7), ("10.250.0.2", 0))
    if n % 2:
        udp.sendto(b"not tunnelled", ("10.250.0.2", 9))
    time.sleep(0.02)  # tcpdump's immediate mode drops a burst (seen: 22 of 30)
time.sleep(1.5)  # a ring block times out after 1 s at worst
dump.terminate()
dump.wait(10)
"""


def test_linux_cooked_v2_capture_of_tcpdump_any_is_read_like_sll(tmp_path: Path) -> None:
    require_root()
    cooked = tmp_path / "any.pcap"
    made = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", _SEND_UNDER_TCPDUMP, str(cooked)],
        cwd=ROOT, capture_output=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    link = subprocess.run(["tcpdump", "-r", str(cooked), "-c", "1"], capture_output=True)
    assert b"LINUX_SLL2" in link.stderr  # the capture really is cooked v2
    # tshark's view of the input: the inner ICMP ids of the GRE frames, and the others
    inner_ids = [r[-1] for r in tshark_fields(cooked, "icmp.ident") if r[-1]]
    others = [r for r in tshark_fields(cooked, "gre.proto") if not r[0]]
    assert len(inner_ids) >= 10 and len(others) >= 5
    out = tmp_path / "inner.pcap"
    done = receive("-r", str(cooked), "-w", str(out), "--json")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["malformed"] == 0
    assert stats["not_tunnelled"] == len(others)
    assert stats["written"] == len(inner_ids)
    assert [r[0] for r in tshark_fields(out, "icmp.ident")] == inner_ids


# -- item 5: --json is the only thing on stdout ---------------------------------------------


def test_json_with_print_keeps_stdout_one_document(tmp_path: Path) -> None:
    src = gre_pcap(tmp_path / "in.pcap", count=4)
    for extra in ([], ["-w", str(tmp_path / "o.pcap")]):
        done = receive("-r", str(src), "--print", "--json", *extra)
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)  # the whole of stdout: one document, nothing else
        assert doc["written"] == 4
        # the printed packets: JSON Lines on stderr, the packet API's fields (issue #16)
        lines = [json.loads(x) for x in done.stderr.decode().splitlines() if x.startswith("{")]
        assert len(lines) == 4
        assert all(x["interface"] == "gre-key-7" and x["layers"][-1]["name"] == "icmp"
                   for x in lines)  # fmt: skip
    done = receive("-r", str(src), "--print")  # without --json, the lines stay on stdout
    assert len(done.stdout.splitlines()) == 4
    done = receive("-r", str(src))  # no -w: printed, as tcpdump does
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 4


# -- item 6: a closed pipe ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "take"),
    [
        (["-w", "-"], 100),  # `vmsniff receive -r x.pcap -w - | head -c 100`
        (["-w", "-", "-U"], 100),
        (["--print"], 100),  # `... --print | head -c 100`: text buffered in sys.stdout
    ],
)
def test_closed_pipe_is_a_quiet_exit_0(tmp_path: Path, args: list[str], take: int) -> None:
    src = gre_pcap(tmp_path / "in.pcap", count=20000)
    proc = subprocess.Popen(
        [*VMSNIFF, "receive", "-r", str(src), *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.read(take)) == take
    proc.stdout.close()  # what `head -c 100` does once it has its bytes
    with proc.stderr:
        err = proc.stderr.read()
    assert proc.wait(60) == 0, err
    assert err == b""  # no traceback, no message, no stats


# -- and the rest of the family -------------------------------------------------------------------


@pytest.mark.parametrize("via_stdin", [False, True])
def test_output_that_is_the_input_is_refused_even_with_force(
    tmp_path: Path, via_stdin: bool
) -> None:
    """`-r x.pcap -w x.pcap --force` truncated the capture before reading it (tcpdump too)."""
    src = gre_pcap(tmp_path / "x.pcap")
    before = src.read_bytes()
    (tmp_path / "same.pcap").hardlink_to(src)  # another name, the same file
    if via_stdin:
        with src.open("rb") as fh:
            done = subprocess.run(
                [*VMSNIFF, "receive", "-r", "-", "-w", str(tmp_path / "same.pcap"), "--force"],
                cwd=ROOT, stdin=fh, capture_output=True, timeout=60,
            )  # fmt: skip
    else:
        done = receive("-r", str(src), "-w", str(tmp_path / "same.pcap"), "--force")
    assert done.returncode == 2 and b"it is the file being read" in done.stderr
    assert src.read_bytes() == before


def test_a_file_refused_mid_run_still_prints_the_stats(tmp_path: Path) -> None:
    (tmp_path / "o.pcap1").symlink_to(tmp_path / "elsewhere")
    src = gre_pcap(tmp_path / "in.pcap", count=40, size=1000)
    done = receive("-r", str(src), "-w", str(tmp_path / "o.pcap"), "-C", "0.01")
    assert done.returncode == 2 and b"symbolic link" in done.stderr
    assert b" received, " in done.stderr and b" written, " in done.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_a_device_that_is_always_full_is_exit_11(tmp_path: Path) -> None:
    """-w onto a twin of /dev/full (char 1:7): every write fails with ENOSPC; nothing to cut."""
    require_root()
    full = tmp_path / "full"
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    done = receive("-r", str(gre_pcap(tmp_path / "in.pcap")), "-w", str(full))
    assert done.returncode == 11, done.stderr
    assert f"writing {full}: No space left on device".encode() in done.stderr
    assert b"Traceback" not in done.stderr


# -- a FIFO nobody reads (issue #14's review: the open blocked forever, past Ctrl-C) ------------


@pytest.mark.parametrize("sig", ["INT", "TERM"])
def test_a_fifo_without_reader_is_waited_for_until_a_signal(tmp_path: Path, sig: str) -> None:
    """tcpdump waits for a FIFO's reader; so does vmsniff, but a signal ends the wait (before,
    the open blocked in the kernel and the handler, which only sets a flag, could not end it)."""
    import signal
    import time

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    src = gre_pcap(tmp_path / "in.pcap")
    proc = subprocess.Popen([*VMSNIFF, "receive", "-r", str(src), "-w", str(fifo)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        time.sleep(2.0)  # interpreter start, imports, then the wait
        assert proc.poll() is None, "it should wait for a reader"
        proc.send_signal(getattr(signal, f"SIG{sig}"))
        _out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 11, err
    assert b"nobody opened the FIFO" in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # left as it was


def test_a_fifo_is_written_once_its_reader_comes(tmp_path: Path) -> None:
    import threading
    import time

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    src = gre_pcap(tmp_path / "in.pcap", count=5)
    got: list[bytes] = []

    def reader() -> None:
        time.sleep(1.5)  # after vmsniff started waiting
        with open(fifo, "rb") as fh:
            got.append(fh.read())

    thread = threading.Thread(target=reader)
    thread.start()
    result = receive("-r", str(src), "-w", str(fifo))
    thread.join(timeout=30)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out.pcap"
    out.write_bytes(got[0])
    assert len(tshark_fields(out, "frame.number")) == 5
