"""Bad input and missing privileges through the real CLI: a message naming the path or the
option, the right exit code, no traceback, and no row created (real ovsdb-servers: the
lab's, or a scratch one in a temporary directory)."""

from __future__ import annotations

import os
import shutil
import site
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root, skip_or_fail
from tests.functional.test_mirror import _env, assert_clean, vmsniff
from vmsniff.lab.topology import Lab

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _unprivileged_python() -> tuple[list[str], dict[str, str]]:
    """An interpreter user 65534 can run, with vmsniff and its dependencies importable.

    This test's own interpreter may live where that user cannot go (a pyenv under /root):
    then the system's Python of the same minor version, with our site-packages on its path.
    """
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), *site.getsitepackages()])}
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/python{version}"):
        probe = subprocess.run(
            [*NOBODY, "env", f"PYTHONPATH={env['PYTHONPATH']}", python, "-c", "import vmsniff"],
            capture_output=True, timeout=30,
        )  # fmt: skip
        if probe.returncode == 0:
            return [python], env
    skip_or_fail(f"no Python {version} that user 65534 can run with vmsniff importable")
    raise AssertionError("not reached")


def as_nobody(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``vmsniff ARGS`` as user 65534 (no groups, no capabilities)."""
    python, extra = _unprivileged_python()
    return subprocess.run(
        [*NOBODY, "env", *(f"{k}={v}" for k, v in {**env, **extra}.items()), *python, "-m",
         "vmsniff", *args], capture_output=True, text=True, timeout=60, cwd="/",
    )  # fmt: skip


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A temporary directory anyone may enter (pytest's tmp_path is root's, mode 0700)."""
    require_root()
    path = Path(tempfile.mkdtemp(prefix=f"vmst{os.getpid()}-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def scratch_ovsdb(open_dir: Path) -> Iterator[Path]:
    """A real ovsdb-server with the Open_vSwitch schema; its socket is root's, mode 0750."""
    for tool in ("ovsdb-server", "ovsdb-tool"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed")
    db, sock, pidfile = open_dir / "conf.db", open_dir / "db.sock", open_dir / "ovsdb.pid"
    schema = "/usr/share/openvswitch/vswitch.ovsschema"
    subprocess.run(["ovsdb-tool", "create", str(db), schema], check=True, timeout=30)
    subprocess.run(
        ["ovsdb-server", str(db), f"--remote=punix:{sock}", f"--pidfile={pidfile}",
         f"--unixctl={open_dir / 'ovsdb.ctl'}", f"--log-file={open_dir / 'ovsdb.log'}",
         "--detach"], check=True, timeout=30,
    )  # fmt: skip
    try:
        sock.chmod(0o750)
        yield sock
    finally:
        pid = int(pidfile.read_text())
        os.kill(pid, 15)  # the server this fixture started, by its pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)  # gone before open_dir is removed, or it leaves its lock file


def _refused(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def test_root_only_ovsdb_socket_is_permission_denied_naming_it(
    scratch_ovsdb: Path, lab: Lab
) -> None:
    env = {"HOME": "/nonexistent", "VMSNIFF_CONFIG": "/nonexistent/config.toml"}
    # the socket itself is root's (mode 0750): connect() is refused
    denied = as_nobody("list", "--ovsdb", f"unix:{scratch_ovsdb}", env=env)
    _refused(denied, 7, str(scratch_ovsdb), "no permission to connect")
    # the lab's socket sits in /run/PREFIX, mode 0700: the directory cannot be entered
    lab_sock = lab.ovsdb_remote.removeprefix("unix:")
    hidden = as_nobody("list", "--ovsdb", lab.ovsdb_remote, env=env)
    _refused(hidden, 7, lab_sock, "permission denied")
    # resolve meets the same through VMSNIFF_OVSDB, and the lab's libvirt file the same way
    resolved = as_nobody("resolve", "c-private", "--offline", "--no-libvirt",
                         env={**env, "VMSNIFF_OVSDB": f"unix:{scratch_ovsdb}"})  # fmt: skip
    _refused(resolved, 2)  # nothing to resolve with: refused before any connection
    node = lab.libvirt_uri.removeprefix("test://")
    libvirt = as_nobody("resolve", "c-private", "--offline", "--libvirt", lab.libvirt_uri,
                        env=env)  # fmt: skip
    _refused(libvirt, 7, node, "permission denied")
    assert "I/O warning" not in libvirt.stderr  # libxml2's own line, printed past libvirt
    gone = as_nobody("resolve", "c-private", "--offline", "--libvirt", "test:///nonexistent/n.xml",
                     env=env)  # fmt: skip
    _refused(gone, 6, "/nonexistent/n.xml", "No such file")
    # root reaches the same server: the refusal was about the user, not the server
    listed = subprocess.run(
        [sys.executable, "-m", "vmsniff", "list", "--ovsdb", f"unix:{scratch_ovsdb}", "--json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stderr


def test_missing_stale_and_non_socket_paths_are_unreachable_naming_them(open_dir: Path) -> None:
    env = {"HOME": "/nonexistent", "VMSNIFF_CONFIG": "/nonexistent/config.toml"}
    missing = open_dir / "no-such.sock"
    _refused(as_nobody("list", "--ovsdb", f"unix:{missing}", env=env), 6, str(missing),
             "does not exist")  # fmt: skip
    stale = open_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as bound:  # bound, never listening: a dead server's
        bound.bind(str(stale))
        stale.chmod(0o777)
        _refused(as_nobody("list", "--ovsdb", f"unix:{stale}", env=env), 6, str(stale),
                 "nothing listens")  # fmt: skip
    plain = open_dir / "plain"
    plain.write_text("")
    plain.chmod(0o644)
    _refused(as_nobody("cleanup", "--all", "--ovsdb", f"unix:{plain}", env=env), 6, str(plain),
             "not a socket")  # fmt: skip


def test_unreadable_config_is_permission_denied_naming_it(open_dir: Path) -> None:
    config = open_dir / "vmsniff" / "config.toml"
    config.parent.mkdir()
    config.write_text('host = "compute-1"\n')
    config.chmod(0o600)  # root's own file
    config.parent.chmod(0o755)
    env = {"HOME": "/nonexistent", "XDG_CONFIG_HOME": str(open_dir)}
    for args in (
        ["resolve", "c-private", "--offline"],
        ["mirror", "c-private", "--to", "192.0.2.9", "--offline"],
    ):
        _refused(as_nobody(*args, env=env), 7, str(config), "permission denied")
        _refused(as_nobody(*args, env={"VMSNIFF_CONFIG": str(config)}), 7, str(config))
    config.chmod(0o644)
    config.parent.chmod(0o700)  # the file is readable, its directory cannot be entered
    _refused(as_nobody("resolve", "c-private", "--offline", env=env), 7, str(config))


# --- mirror: refused before any row exists ------------------------------------------------


def _mirror(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    # --duration: without the checks these would mirror for 3 s and exit 0
    return vmsniff(lab, "mirror", "c-private", *args, "--duration", "3")


@pytest.mark.parametrize(
    ("to", "why"),
    [
        ("255.255.255.255", "broadcast"),
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.5", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("fe80::1", "link-local"),
    ],
)
def test_addresses_that_cannot_receive_are_refused(lab: Lab, to: str, why: str) -> None:
    _refused(_mirror(lab, "--to", to), 2, f"--to {to} cannot receive a tunnel", why)
    assert_clean(lab)


def test_the_hypervisors_own_tunnel_address_is_refused(lab: Lab) -> None:
    # A Neutron-style tunnel port whose local_ip is this hypervisor's tunnel address.
    from vmsniff.lab.switch import vsctl
    from vmsniff.lab.topology import TUNNEL_IP

    port = f"gre-v{os.getpid() % 100000}"
    vsctl(lab, "add-port", "br-int", port, "--", "set", "Interface", port, "type=gre",
          "options:remote_ip=192.0.2.77", f"options:local_ip={TUNNEL_IP}")  # fmt: skip
    try:
        _refused(_mirror(lab, "--to", TUNNEL_IP), 2, f"--to {TUNNEL_IP}", port, "own tunnel")
    finally:
        vsctl(lab, "--if-exists", "del-port", "br-int", port)
    assert_clean(lab)


@pytest.mark.parametrize(
    ("to", "why"),
    [
        ("10.250.0.1", "an address of this hypervisor (br-phy"),  # br-phy's: the tunnel IP
        ("10.250.0.255", "the broadcast address of 10.250.0.0/24 (br-phy"),
    ],
)
def test_own_addresses_and_subnet_broadcasts_are_refused_from_the_route_table(
    lab: Lab, to: str, why: str
) -> None:
    # No tunnel port records these: only ovs-vswitchd's route table knows them (OVS itself
    # routes both out of br-phy like any receiver, so the commit would succeed).
    _refused(_mirror(lab, "--to", to), 2, f"--to {to} cannot receive this mirror", why)
    assert_clean(lab)


def test_a_bridge_the_port_is_not_on_is_refused_naming_where_it_is(lab: Lab) -> None:
    done = _mirror(lab, "--to", "10.250.0.2", "--bridge", "br-phy")
    _refused(done, 2, "--bridge br-phy", "is on bridge br-int", "--bridge br-int")
    assert_clean(lab)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--erspan-version", "2"], "--erspan-version only applies to ERSPAN, not --encap gre"),
        (["--erspan-index", "7"], "--erspan-index only applies to ERSPAN"),
        (["--encap", "erspan", "--erspan-version", "2", "--erspan-index", "7"],
         "field of ERSPAN version 1"),
        (["--encap", "erspan", "--erspan-index", "1048576"], "0<=x<=1048575"),
        (["--encap", "erspan", "--erspan-version", "3"], "1<=x<=2"),
    ],
)  # fmt: skip
def test_erspan_options_that_would_be_ignored_or_rejected_by_ovs_are_refused(
    lab: Lab, args: list[str], message: str
) -> None:
    _refused(_mirror(lab, "--to", "10.250.0.2", *args), 2, message)
    assert_clean(lab)


@pytest.mark.parametrize("index", [300, 1048575])
def test_erspan_index_reaches_the_wire_as_given(lab: Lab, index: int) -> None:
    """ovs-vswitchd reads options:erspan_idx as hexadecimal: 300 must arrive as 300 (not
    0x300), and 1048575, the largest 20-bit index, must be accepted (not "invalid")."""
    from tests.functional.test_mirror import collector, start_mirror
    from vmsniff.lab.topology import RECEIVER_IP
    from vmsniff.lab.traffic import make_traffic

    with collector(lab) as got:
        proc = start_mirror(lab, "c-private", "--to", RECEIVER_IP, "--encap", "erspan",
                            "--key", "200", "--erspan-index", str(index),
                            "--duration", "4")  # fmt: skip
        make_traffic(lab, "c-private", "c-native", count=1)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert_clean(lab)
    # ERSPAN type II header: the index is the low 20 bits of its second word
    headers = [bytes.fromhex(str(inner))[:8] for _key, inner, _len in got]
    assert headers and {int.from_bytes(h[4:8], "big") & 0xFFFFF for h in headers} == {index}


# --- --dry-run: the printed command works as printed --------------------------------------

REASONS = ['ticket 42: a\\b "quoted" (x=1, y:2)', "it's $HOME `id` \\n; rm -rf /tmp/x", "ünï ✓\t"]


@pytest.mark.parametrize("reason", REASONS)
def test_dry_run_command_stores_the_reason_exactly(lab: Lab, reason: str) -> None:
    import json

    from vmsniff.lab.switch import vsctl

    done = vmsniff(lab, "mirror", "c-private", "--to", "10.250.0.2", "--dry-run", "--reason",
                   reason)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_clean(lab)  # a dry run creates nothing
    command = done.stdout.splitlines()[-1]
    assert command.startswith("ovs-vsctl --db=")
    # run it as printed, by a shell, against the lab's real ovsdb-server
    ran = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60,
                         env=_env(lab))  # fmt: skip
    try:
        assert ran.returncode == 0, ran.stderr
        for table in ("Interface", "Port", "Mirror"):
            rows = json.loads(vsctl(lab, "--format=json", "--columns=name,external_ids",
                                    "list", table))["data"]  # fmt: skip
            ours = [dict(ids[1]) for _name, ids in rows if "vmsniff-session" in dict(ids[1])]
            assert len(ours) == 2, (table, rows)
            assert all(ids["vmsniff-reason"] == reason for ids in ours), ours
    finally:
        cleaned = vmsniff(lab, "cleanup", "--all")
        assert cleaned.returncode == 0, cleaned.stderr
    assert_clean(lab)


# --- a closed pipe ------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["resolve", "c-private"], ["resolve", "c-private", "--json"]])
def test_resolve_into_head_exits_0_quietly(lab: Lab, args: list[str]) -> None:
    """`vmsniff resolve c-private | head -1`: rich's table (or the JSON) meets a closed pipe."""
    for _ in range(5):  # the reader may go before or after the last write: try both often
        done = subprocess.run(
            ["bash", "-c", f"{sys.executable} -m vmsniff {' '.join(args)} | head -c 1 >/dev/null;"
             " exit ${PIPESTATUS[0]}"], capture_output=True, text=True, env=_env(lab),
            timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert (done.returncode, done.stderr) == (0, "")
