"""``vmsniff snoop`` as a command: refusals with the right exit codes, and a whole run."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.unit.snoop import tshark
from tests.unit.snoop.pki import make_pki
from vmsniff.cli import cli
from vmsniff.cli._errors import run as run_cli

ROOT = Path(__file__).resolve().parents[3]


class Done:
    def __init__(self, exit_code: int, out: str, err: str) -> None:
        self.exit_code, self.stdout, self.output = exit_code, out, out + err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    def invoke(*args: str) -> Done:
        code = run_cli(cli, ["snoop", *args])
        got = capsys.readouterr()
        return Done(code, got.out, got.err)

    return invoke


@pytest.fixture
def busy_port() -> Any:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_option_mistakes_are_usage_errors(run: Any, tmp_path: Path) -> None:
    out = str(tmp_path / "x.pcap")
    # (no -w: the messages are printed, as tcpdump would, issue #16; not an error any more)
    assert run("--listen", "6653", "--upstream", "h:1", "-w", "-", "--print").exit_code == 2
    assert run("--upstream", "127.0.0.1:6633", "-w", out).exit_code == 2
    done = run("--listen", "6653", "--upstream", "6633", "-w", out)
    assert done.exit_code == 2 and "HOST:PORT" in done.output
    done = run("--listen", "70000", "--upstream", "127.0.0.1:6633", "-w", out)
    assert done.exit_code == 2 and "1-65535" in done.output
    done = run("--listen", "0:6653", "--upstream", "no-such-host.invalid:6633", "-w", out)
    assert done.exit_code == 2 and "cannot resolve" in done.output
    assert not os.path.exists(out)


def test_listen_port_in_use_is_refused_and_leaves_no_file(
    run: Any, busy_port: int, tmp_path: Path
) -> None:
    out = tmp_path / "x.pcap"
    done = run("--listen", f"127.0.0.1:{busy_port}", "--upstream", "127.0.0.1:1", "-w", str(out))
    assert done.exit_code == 2
    assert "already in use" in done.output and "hint:" in done.output
    assert "Traceback" not in done.output
    assert not out.exists()


def test_bad_or_missing_certificates_are_clear_errors(run: Any, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    out = str(tmp_path / "x.pcap")
    base = ["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "-w", out]

    def tls(cert: Path, key: Path, ca: Path) -> Done:
        return run(*base, "--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca))  # type: ignore[no-any-return]

    done = tls(tmp_path / "missing.pem", pki["key"], pki["ca"])
    assert done.exit_code == 3 and "missing.pem: no such file" in done.output
    done = tls(pki["cert"], pki["cakey"], pki["ca"])  # a key that is not the certificate's
    assert done.exit_code == 2 and "private key" in done.output
    done = tls(pki["cert"], pki["key"], pki["key"])  # a key where the CA belongs
    assert done.exit_code == 2 and "CA certificate" in done.output
    link = tmp_path / "link.pem"
    link.symlink_to(pki["cert"])
    done = tls(link, pki["key"], pki["ca"])
    assert done.exit_code == 2 and "symbolic link" in done.output
    done = run(*base, "--tls-cert", str(pki["cert"]))
    assert done.exit_code == 2 and "--tls-key" in done.output
    done = run(*base, "--upstream-tls")
    assert done.exit_code == 2
    assert "Traceback" not in done.output and not os.path.exists(out)


def test_a_whole_run_writes_a_capture_tshark_reads(tmp_path: Path) -> None:
    """The command in a process of its own, a controller stand-in answering on loopback."""
    up = socket.socket()
    up.bind(("127.0.0.1", 0))
    up.listen()
    answer = b"\x04\x03\x00\x08\x00\x00\x00\x07"

    def controller() -> None:
        conn, _ = up.accept()
        with conn:
            conn.recv(8)
            conn.sendall(answer)
            conn.recv(8)

    threading.Thread(target=controller, daemon=True).start()
    out = tmp_path / "run.pcapng"
    proc = subprocess.Popen(
        [sys.executable,
         "-m", "vmsniff", "snoop", "--listen", "127.0.0.1:0", "--upstream",
         f"127.0.0.1:{up.getsockname()[1]}", "-w", str(out), "--format", "pcapng", "-c", "7"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("snooping on 127.0.0.1:"), line
    port = int(line.split()[2].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"\x04\x02\x00\x08\x00\x00\x00\x07")
        assert s.recv(8) == answer
        s.sendall(b"\x04\x02\x00\x08\x00\x00\x00\x08")
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    up.close()
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    rows = tshark.fields(out, "frame.interface_name", "tcp.len", "tcp.flags.str")
    assert len(rows) == 7  # -c 7: handshake, request, reply, request, the switch's FIN
    assert [r[1] for r in rows] == ["0", "0", "0", "8", "8", "8", "0"]
    assert "F" in rows[-1][2]
    assert {r[0] for r in rows} == {"vmsniff-snoop"}
    assert tshark.problems(out) == []


def _controller_answering(count: int, size: int = 8) -> tuple[socket.socket, threading.Thread]:
    """A stand-in controller that answers ``count`` echo requests of ``size`` bytes, then
    waits for EOF."""
    up = socket.socket()
    up.bind(("127.0.0.1", 0))
    up.listen()

    def serve() -> None:
        conn, _ = up.accept()
        with conn:
            for _ in range(count):
                req = b""
                while len(req) < size:
                    req += conn.recv(size - len(req))
                conn.sendall(req[:1] + b"\x03" + req[2:])
            while conn.recv(100):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return up, thread


def _start(*args: str, stdout: Any = subprocess.DEVNULL) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmsniff", "snoop", "--listen", "127.0.0.1:0", *args],
        cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert line.startswith("snooping on 127.0.0.1:"), line
    return proc, int(line.split()[2].rsplit(":", 1)[1])


def _echo(port: int, count: int, size: int = 8) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        for xid in range(count):
            s.sendall(
                b"\x04\x02" + size.to_bytes(2, "big") + xid.to_bytes(4, "big") + bytes(size - 8)
            )
            got = b""
            while len(got) < size:
                got += s.recv(size - len(got))


def test_write_to_stdout_is_a_capture_tshark_reads(tmp_path: Path) -> None:
    up, _t = _controller_answering(3)
    proc, port = _start("--upstream", f"127.0.0.1:{up.getsockname()[1]}", "-w", "-", "--json",
                        stdout=subprocess.PIPE)  # fmt: skip
    _echo(port, 3)
    proc.send_signal(2)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    up.close()
    path = tmp_path / "stdout.pcap"
    path.write_bytes(out)
    assert tshark.problems(path) == []
    assert [r[0] for r in tshark.fields(path, "tcp.len") if r[0] != "0"] == ["8"] * 6
    assert b'"accepted": 1' in err  # --json stats go to stderr with -w -


def test_rotation_by_size_writes_several_files_each_a_capture(tmp_path: Path) -> None:
    up, _t = _controller_answering(40, 200)
    out = tmp_path / "rot.pcap"
    proc, port = _start("--upstream", f"127.0.0.1:{up.getsockname()[1]}", "-w", str(out),
                        "-C", "0.002", "-U")  # fmt: skip
    _echo(port, 40, size=200)
    proc.send_signal(2)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    up.close()
    files = sorted(tmp_path.glob("rot.pcap*"))
    assert len(files) >= 3
    assert all(len(f.read_bytes()) <= 2000 + 400 for f in files)
    lengths = [r[0] for f in files for r in tshark.fields(f, "tcp.len")]
    assert lengths.count("200") == 80  # every request and reply, across the files


@pytest.mark.parametrize(
    ("listen", "client_ip"), [("[::1]:0", "::1"), ("127.0.0.1:0", "::ffff:127.0.0.1")]
)
def test_ipv6_as_it_is_and_mixed_families_as_mapped_addresses(
    tmp_path: Path, listen: str, client_ip: str
) -> None:
    up = socket.socket(socket.AF_INET6)
    up.bind(("::1", 0))
    up.listen()

    def controller() -> None:
        conn, _ = up.accept()
        with conn:
            conn.sendall(conn.recv(8))

    threading.Thread(target=controller, daemon=True).start()
    out = tmp_path / "v6.pcap"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmsniff", "snoop", "--listen", listen, "--upstream",
         f"[::1]:{up.getsockname()[1]}", "-w", str(out)],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.match(r"snooping on \[?([0-9a-f.:]+)\]?:(\d+) -> \[::1\]:\d+$", line.strip())
    assert match, line
    family = socket.AF_INET6 if ":" in match[1] else socket.AF_INET
    with socket.socket(family) as s:
        s.connect((match[1], int(match[2])))
        s.sendall(b"\x04\x02\x00\x08\x00\x00\x00\x01")
        assert s.recv(8) == b"\x04\x02\x00\x08\x00\x00\x00\x01"
    time.sleep(0.3)
    proc.send_signal(2)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    up.close()
    rows = tshark.fields(out, "ipv6.src", "ipv6.dst")
    assert rows and {r[0] for r in rows} == {client_ip, "::1"}
    assert tshark.problems(out) == []
