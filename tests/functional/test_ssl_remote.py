"""An ``ssl:`` OVSDB remote with the certificates of config ``[ssl]``: a real ovsdb-server
listening with TLS on loopback (``pssl:``), its own CA, started and stopped by pidfile."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root, skip_or_fail

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _pki(d: Path) -> None:
    """A CA, and a key and certificate signed by it for the server and for vmsniff."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out",
             "ca.pem", "-days", "1", "-subj", "/CN=vmsniff-test-ca", cwd=d)  # fmt: skip
    for who in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}-key.pem", "-out",
                 f"{who}.csr", "-subj", f"/CN={who}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-out", f"{who}.pem", "-days", "1", cwd=d)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ssl_ovsdb(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``ssl:127.0.0.1:PORT`` of an ovsdb-server of our own, and the PKI directory."""
    require_root()
    for tool in ("openssl", "ovsdb-server", "ovsdb-tool"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            skip_or_fail(f"{tool} is not installed")
    _pki(tmp_path)
    db = tmp_path / "conf.db"
    subprocess.run(["ovsdb-tool", "create", str(db), str(SCHEMA)], check=True)
    port = _free_port()
    pidfile = tmp_path / "ovsdb-server.pid"
    subprocess.run(
        ["ovsdb-server", str(db), f"--remote=pssl:{port}:127.0.0.1",
         f"--private-key={tmp_path / 'server-key.pem'}",
         f"--certificate={tmp_path / 'server.pem'}", f"--ca-cert={tmp_path / 'ca.pem'}",
         f"--pidfile={pidfile}", f"--unixctl={tmp_path / 'ctl'}", "--detach", "--no-chdir",
         f"--log-file={tmp_path / 'ovsdb-server.log'}"],
        check=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "ovsdb-server did not listen"
            time.sleep(0.05)
        yield f"ssl:127.0.0.1:{port}", tmp_path
    finally:
        pid = int(pidfile.read_text().strip()) if pidfile.exists() else None
        if pid is not None:
            os.kill(pid, signal.SIGTERM)


def vmsniff(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "VMSNIFF_"))}
    env["VMSNIFF_CONFIG"] = str(config)
    return subprocess.run([sys.executable, "-m", "vmsniff", *args], capture_output=True, text=True,
                          env=env, timeout=60)  # fmt: skip


def test_an_ssl_remote_works_with_the_config_certificates(ssl_ovsdb: tuple[str, Path]) -> None:
    remote, pki = ssl_ovsdb
    config = pki / "vmsniff.toml"
    config.write_text(
        f'[ssl]\nprivate_key = "{pki / "client-key.pem"}"\ncertificate = "{pki / "client.pem"}"\n'
        f'ca_cert = "{pki / "ca.pem"}"\n'
    )
    proc = vmsniff("list", "--ovsdb", remote, "--json", config=config)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_an_ssl_remote_without_certificates_says_what_to_configure(
    ssl_ovsdb: tuple[str, Path],
) -> None:
    remote, pki = ssl_ovsdb
    config = pki / "empty.toml"
    config.write_text("")
    proc = vmsniff("list", "--ovsdb", remote, config=config)
    assert proc.returncode == 2, proc.stderr
    assert "[ssl] private_key" in proc.stderr
    config.write_text(
        f'[ssl]\nprivate_key = "{pki / "nope.pem"}"\ncertificate = "x"\nca_cert = "y"\n'
    )
    proc = vmsniff("list", "--ovsdb", remote, config=config)
    assert proc.returncode == 2 and "nope.pem is missing or not readable" in proc.stderr
