"""``vmsniff snoop`` between a real ovs-vswitchd and a real OpenFlow controller, in the lab.

Bridges of the test's own (netdev datapath) in the lab's hypervisor namespace connect through
``vmsniff snoop`` to Debian's ``ovs-testcontroller``, all on that namespace's loopback. Ground
truth is tcpdump on the namespace's ``lo``: the real TCP connections switch->relay and
relay->controller, reassembled by tshark, are what each side sent. The synthesized capture
must match them byte for byte, and tshark must find nothing wrong in it.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.unit.snoop import tshark
from vmsniff.lab.switch import ovs_env, vsctl
from vmsniff.lab.topology import Lab

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
OPENFLOW = "6653"  # tshark decodes OpenFlow on its registered port: the controller listens there


@pytest.fixture(autouse=True)
def _tools() -> None:
    if shutil.which("ovs-testcontroller") is None:
        skip_or_fail("ovs-testcontroller is not installed (openvswitch-testcontroller)")


def in_ns(lab: Lab, *argv: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", lab.hypervisor_ns, *argv], text=True, env=ovs_env(lab),
        cwd=ROOT, **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    """End a process this test started, by its pid."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def controller(lab: Lab, port: str = OPENFLOW, *args: str) -> Iterator[subprocess.Popen[str]]:
    """ovs-testcontroller listening on the namespace's loopback (``ptcp:``, or ``args``)."""
    method = args[0] if args else f"ptcp:{port}:127.0.0.1"
    proc = in_ns(lab, "ovs-testcontroller", method, *args[1:], "--no-chdir",
                 f"--unixctl={lab.rundir / f'testcontroller-{port}.ctl'}",
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.3)
        assert proc.poll() is None, "ovs-testcontroller did not start"
        yield proc
    finally:
        stop(proc)


class Snoop:
    """``vmsniff snoop`` in the hypervisor namespace; ``finish()`` stops it (SIGINT)."""

    def __init__(self, lab: Lab, *args: str, routes: int = 1) -> None:
        self.proc = in_ns(lab, sys.executable, "-m", "vmsniff", "snoop", *args,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        assert self.proc.stderr is not None
        self.listening: list[tuple[str, str]] = []
        line = ""
        while len(self.listening) < routes:
            ready, _w, _x = select.select([self.proc.stderr], [], [], 30)
            line = self.proc.stderr.readline() if ready else "(no output in 30 s)"
            match = re.match(r"snooping on (\S+) -> (\S+)", line)
            if not match:
                break
            self.listening.append((match[1], match[2]))
        if len(self.listening) < routes:
            if self.proc.poll() is None:
                stop(self.proc)
            raise AssertionError(line + self.proc.stderr.read())
        self.out = self.err = ""

    def finish(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        self.out, err = self.proc.communicate(timeout=30)
        self.err += err
        return self.proc.returncode


@contextmanager
def snoop(lab: Lab, *args: str) -> Iterator[Snoop]:
    s = Snoop(lab, *args)
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            s.finish()


@contextmanager
def ground_truth(lab: Lab, path: Path, *ports: str) -> Iterator[None]:
    """tcpdump on the namespace's loopback for ``ports`` (the real connections)."""
    expr = " or ".join(f"tcp port {p}" for p in ports)
    # --immediate-mode: without it libpcap hands packets over when a ring block retires
    # (tcpdump's 1 s timeout), and those of the last second before SIGINT were lost: the
    # relay's capture then held an ECHO the ground truth did not.
    # -B 16384: a loaded machine once made it drop segments ("bytes missing" in its streams)
    proc = in_ns(lab, "tcpdump", "-n", "-i", "lo", "-U", "--immediate-mode", "-B", "16384",
                 "-w", str(path), expr, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "listening on" in line, line
    try:
        yield
    finally:
        time.sleep(0.3)
        stop(proc, signal.SIGINT)
        proc.stderr.close()


@contextmanager
def bridges(lab: Lab, names: list[str], target: str) -> Iterator[list[str]]:
    """Bridges of the test's own, each with ``target`` as its controller (fast reconnects)."""
    try:
        for name in names:
            vsctl(lab, "add-br", name, "--", "set", "Bridge", name, "datapath_type=netdev",
                  "fail_mode=secure", "--", "set-controller", name, target)  # fmt: skip
            vsctl(lab, "set", "Controller", name, "max_backoff=1000", "inactivity_probe=5000")
        yield names
    finally:
        for name in names:
            vsctl(lab, "--if-exists", "del-br", name)


def wait_connected(lab: Lab, bridge: str, want: bool = True, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = vsctl(lab, "get", "Controller", bridge, "is_connected").strip()
        if state == str(want).lower():
            return
        time.sleep(0.2)
    raise AssertionError(f"{bridge}: is_connected never became {want}")


def names(tag: str, n: int) -> list[str]:
    return [f"snp{os.getpid() % 100000}{tag}{i}" for i in range(n)]


def real_streams(path: Path) -> dict[int, tuple[int, bytes, bytes]]:
    """The real capture's TCP connections by client port: (server port, client's bytes,
    server's bytes)."""
    out = {}
    for stream in range(tshark.streams(path)):
        (client, server), sent, answered = tshark.follow(path, stream)
        out[int(client.rsplit(":", 1)[1])] = (int(server.rsplit(":", 1)[1]), sent, answered)
    return out


def test_several_bridges_through_the_relay_byte_exact_and_clean(lab: Lab, tmp_path: Path) -> None:
    relay_port = "16654"
    synth, real = tmp_path / "snoop.pcap", tmp_path / "real.pcap"
    with (
        controller(lab),
        ground_truth(lab, real, relay_port, OPENFLOW),
        snoop(
            lab,
            "--listen",
            f"127.0.0.1:{relay_port}",
            "--upstream",
            f"127.0.0.1:{OPENFLOW}",
            "-w",
            str(synth),
            "--print",
        ) as s,  # fmt: skip
        bridges(lab, names("a", 3), f"tcp:127.0.0.1:{relay_port}") as brs,
    ):
        for br in brs:
            wait_connected(lab, br)
        time.sleep(6)  # an inactivity probe: ECHO_REQUEST / ECHO_REPLY
        assert s.finish() == 0, s.err
    assert tshark.problems(synth) == []
    assert tshark.streams(synth) == 3
    # tshark decodes the OpenFlow exchange (the version both ends chose: 1.5)
    types = {t for row in tshark.fields(synth, "openflow_v6.type") for t in row[0].split(",")}
    assert {"0", "5", "6", "2", "3", "14"} <= types, types  # HELLO FEATURES ECHO FLOW_MOD
    truth = real_streams(real)
    upstream_answers = sorted(a for port, (sp, _s, a) in truth.items() if sp == int(OPENFLOW))
    switch_said = []
    for stream in range(3):
        (client, server), sent, answered = tshark.follow(synth, stream)
        assert server == f"127.0.0.1:{OPENFLOW}"
        relay_side = truth[int(client.rsplit(":", 1)[1])]
        assert relay_side[0] == int(relay_port)
        assert (sent, answered) == relay_side[1:]  # what the switch sent / was sent
        switch_said.append(sent)
    assert sorted(answered for *_x, answered in [tshark.follow(synth, i) for i in range(3)]) == (
        upstream_answers
    )
    relayed = sorted(s for port, (sp, s, _a) in truth.items() if sp == int(OPENFLOW))
    assert relayed == sorted(switch_said)  # the controller got exactly what the switches sent
    lines = s.out.splitlines()
    hello = re.compile(r"#\d switch>controller OF1\.\d HELLO xid=0x\w+ len=\d+")
    assert any(hello.search(x) for x in lines)
    assert any("controller>switch" in x and "FEATURES_REQUEST" in x for x in lines)
    assert any("ECHO_REQUEST" in x for x in lines) and any("ECHO_REPLY" in x for x in lines)


def test_a_controller_that_dies_is_a_reset_and_the_switch_comes_back_through_the_relay(
    lab: Lab, tmp_path: Path
) -> None:
    relay_port = "16655"
    synth = tmp_path / "dies.pcap"
    with (
        snoop(
            lab,
            "--listen",
            f"127.0.0.1:{relay_port}",
            "--upstream",
            f"127.0.0.1:{OPENFLOW}",
            "-w",
            str(synth),
            "--print",
        ) as s,  # fmt: skip
        bridges(lab, names("d", 1), f"tcp:127.0.0.1:{relay_port}") as (br,),
    ):
        with controller(lab) as ctl:
            wait_connected(lab, br)
            # Stop the controller, let the switch's inactivity probe (an ECHO_REQUEST) reach
            # its socket unread, then kill it: the kernel answers with a RST.
            ctl.send_signal(signal.SIGSTOP)
            time.sleep(6)
            ctl.kill()
            ctl.wait(10)
        wait_connected(lab, br, want=False)
        time.sleep(2)  # the switch retries meanwhile: each attempt is refused upstream
        with controller(lab):
            wait_connected(lab, br)  # it reconnects through the relay on its own
            time.sleep(0.5)
        assert s.finish() == 0, s.err
    flags = tshark.fields(synth, "tcp.stream", "tcp.srcport", "tcp.flags.str", "tcp.len")
    by_stream: dict[str, list[tuple[str, str, str]]] = {}
    for stream, sport, fl, size in flags:
        by_stream.setdefault(stream, []).append((sport, fl, size))
    first = by_stream["0"]
    assert first[-1][0] == OPENFLOW and "R" in first[-1][1], first[-3:]  # the controller's RST
    refused = [v for v in by_stream.values() if len(v) == 2 and "R" in v[1][1]]
    assert refused, "no refused reconnect recorded"
    last = by_stream[max(by_stream, key=int)]
    assert "S" in last[0][1] and any(size != "0" for _p, _f, size in last)  # a live session
    assert tshark.problems(synth, allow=("Connection reset",)) == []
    assert "Connection refused" in s.err
    hellos = [x for x in s.out.splitlines() if "switch>controller" in x and " HELLO " in x]
    assert len(hellos) == 2, s.out


def controller_row(lab: Lab, bridge: str) -> tuple[str, str]:
    """(target, external_ids) of the bridge's one Controller row, as ovs-vsctl prints them."""
    target = vsctl(lab, "get", "Controller", bridge, "target").strip().strip('"')
    return target, vsctl(lab, "get", "Controller", bridge, "external_ids").strip()


def test_ovs_redirects_bridges_the_ml2_way_and_restores_them_exactly(
    lab: Lab, tmp_path: Path
) -> None:
    """ML2/OVS's agent listens on 127.0.0.1:6633 for br-int; two snoops, two bridges."""
    original = "tcp:127.0.0.1:6633"
    synth = tmp_path / "ovs.pcap"
    with controller(lab, "6633"), bridges(lab, names("o", 2), original) as (br_a, br_b):
        vsctl(lab, "set", "Controller", br_a, "external_ids:theirs=keep")
        before = controller_row(lab, br_a)
        for br in (br_a, br_b):
            wait_connected(lab, br)
        remote = ["--ovsdb", lab.ovsdb_remote]
        with (
            snoop(lab, "--ovs", br_a, *remote, "-w", str(synth), "--print") as a,
            snoop(lab, "--ovs", br_b, *remote, "-w", str(tmp_path / "b.pcap")) as b,
        ):
            (listen_a, up_a), (listen_b, _up_b) = a.listening[0], b.listening[0]
            assert up_a == original
            target, ids = controller_row(lab, br_a)
            assert target == f"tcp:{listen_a}"
            assert f'vmsniff-snoop-target="{original}"' in ids and "theirs=keep" in ids
            assert controller_row(lab, br_b)[0] == f"tcp:{listen_b}"
            time.sleep(1.5)
            wait_connected(lab, br_a)  # reconnected through the relay
            assert a.finish(signal.SIGTERM) == 0, a.err
            assert controller_row(lab, br_a) == before  # exactly as it was
            assert controller_row(lab, br_b)[0] == f"tcp:{listen_b}"  # the other snoop's
            assert b.finish(signal.SIGHUP) == 0, b.err
        assert controller_row(lab, br_b)[0] == original
        assert "vmsniff" not in controller_row(lab, br_b)[1]
        wait_connected(lab, br_a)
    assert tshark.problems(synth) == []
    types = {t for row in tshark.fields(synth, "openflow_v6.type") for t in row[0].split(",")}
    assert {"0", "5", "6"} <= types, types
    assert " HELLO " in a.out and "FEATURES_REPLY" in a.out


def test_a_killed_ovs_snoop_is_restored_by_cleanup_expired_at_once(lab: Lab) -> None:
    """kill -9 leaves the bridge pointing at a dead relay: the rows record the owner's pid,
    start time and boot id, so `vmsniff cleanup --expired` restores them before the expiry."""
    original = "tcp:127.0.0.1:6633"
    with controller(lab, "6633"), bridges(lab, names("k", 1), original) as (br,):
        with snoop(lab, "--ovs", br, "--ovsdb", lab.ovsdb_remote, "--print", "--ttl", "600") as s:
            s.proc.kill()  # SIGKILL: no chance to restore
            s.proc.communicate(timeout=10)
        target, ids = controller_row(lab, br)
        assert target != original and "vmsniff-pid" in ids
        done = subprocess.run(
            [sys.executable, "-m", "vmsniff", "cleanup", "--expired", "--ovsdb",
             lab.ovsdb_remote, "--json"], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["restored_controllers"] == [original]
        assert controller_row(lab, br) == (original, "{}")
        wait_connected(lab, br)


def test_a_running_ovs_snoop_is_kept_by_cleanup_expired(lab: Lab) -> None:
    original = "tcp:127.0.0.1:6633"
    with controller(lab, "6633"), bridges(lab, names("r", 1), original) as (br,):
        with snoop(lab, "--ovs", br, "--ovsdb", lab.ovsdb_remote, "--print", "--ttl", "600") as s:
            done = subprocess.run(
                [sys.executable, "-m", "vmsniff", "cleanup", "--expired", "--ovsdb",
                 lab.ovsdb_remote, "--json"], capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert json.loads(done.stdout)["restored_controllers"] == [], done.stderr
            assert controller_row(lab, br)[0] != original
            assert s.finish() == 0, s.err
        assert controller_row(lab, br) == (original, "{}")


def test_ovs_refusals_leave_the_bridge_untouched(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "x.pcap"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", lab.hypervisor_ns, sys.executable, "-m", "vmsniff", "snoop",
             "--ovsdb", lab.ovsdb_remote, "-w", str(out), *args],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip

    with bridges(lab, names("n", 2), "tcp:127.0.0.1:6633") as (bare, passive):
        vsctl(lab, "del-controller", bare)
        vsctl(lab, "set-controller", passive, "ptcp:16699:127.0.0.1")
        done = run("--ovs", bare)
        assert done.returncode == 5 and "has no controller" in done.stderr, done.stderr
        done = run("--ovs", passive)
        assert done.returncode == 2 and "only tcp: and ssl:" in done.stderr
        assert controller_row(lab, passive) == ("ptcp:16699:127.0.0.1", "{}")
        done = run("--ovs", "no-such-br")
        assert done.returncode == 3 and "no bridge no-such-br" in done.stderr
        done = run("--ovs", bare, "--listen", "6653")
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert not out.exists()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ovs-pki's two CAs and certificates for a controller, a switch, and the relay (which
    is a controller to the switch and a switch to the controller)."""
    base = tmp_path_factory.mktemp("pki")
    ca = base / "ca"

    def ovs_pki(*args: str) -> None:
        subprocess.run(["ovs-pki", f"--dir={ca}", *args], cwd=base, check=True,
                       capture_output=True, timeout=120)  # fmt: skip

    ovs_pki("init")
    ovs_pki("req+sign", "ctl", "controller")
    ovs_pki("req+sign", "sc", "switch")
    ovs_pki("req+sign", "relay", "switch")
    return base


def test_tls_both_sides_with_ovs_pki_certificates_gives_a_plaintext_capture(
    lab: Lab, tmp_path: Path, pki: Path
) -> None:
    relay_port = "16656"
    synth, real = tmp_path / "tls.pcap", tmp_path / "real.pcap"
    switch_ca, controller_ca = pki / "ca/switchca/cacert.pem", pki / "ca/controllerca/cacert.pem"
    tls_controller = (f"pssl:{OPENFLOW}:127.0.0.1", "-p", str(pki / "ctl-privkey.pem"),
                      "-c", str(pki / "ctl-cert.pem"), "-C", str(switch_ca))  # fmt: skip
    args = ["--listen", f"127.0.0.1:{relay_port}", "--upstream", f"127.0.0.1:{OPENFLOW}",
            "-w", str(synth), "--print",
            # towards the switch the relay is its controller ...
            "--tls-cert", str(pki / "ctl-cert.pem"), "--tls-key", str(pki / "ctl-privkey.pem"),
            "--tls-ca", str(switch_ca),
            # ... and towards the controller, a switch
            "--upstream-tls", "--upstream-cert", str(pki / "relay-cert.pem"),
            "--upstream-key", str(pki / "relay-privkey.pem"), "--upstream-ca", str(controller_ca),
    ]  # fmt: skip
    vsctl(lab, "set-ssl", str(pki / "sc-privkey.pem"), str(pki / "sc-cert.pem"), str(controller_ca))
    try:
        with (
            controller(lab, OPENFLOW, *tls_controller),
            ground_truth(lab, real, relay_port, OPENFLOW),
            snoop(lab, *args) as s,
            bridges(lab, names("t", 2), f"ssl:127.0.0.1:{relay_port}") as brs,
        ):
            for br in brs:
                wait_connected(lab, br)
            time.sleep(1)
            assert s.finish() == 0, s.err
    finally:
        vsctl(lab, "del-ssl")
    # the wire carried TLS, both between switch and relay and between relay and controller
    hellos = tshark.fields(real, "tcp.dstport", display="tls.handshake.type == 1",
                           decode=f"tcp.port=={OPENFLOW},tls")  # fmt: skip
    assert {r[0] for r in hellos} == {relay_port, OPENFLOW}  # ClientHellos to relay and controller
    (_c, _s), sent, _answered = tshark.follow(synth, 0)
    wire = b"".join(tshark.follow(real, i)[1] for i in range(tshark.streams(real)))
    assert sent[:16] not in wire  # the switch's plaintext never crossed the wire
    # the synthesized capture holds the plaintext OpenFlow conversation
    assert tshark.problems(synth) == []
    assert tshark.streams(synth) == 2
    types = {t for row in tshark.fields(synth, "openflow_v6.type") for t in row[0].split(",")}
    assert {"0", "5", "6"} <= types, types
    assert s.out.count("switch>controller OF1.5 HELLO") == 2, s.out


def test_an_ovsdb_manager_connection_is_relayed_and_printed_by_method(
    lab: Lab, tmp_path: Path
) -> None:
    """Not OpenFlow: OVSDB's JSON-RPC (RFC 7047) on a ptcp: remote of the lab's ovsdb-server,
    used by ovs-vsctl through the relay."""
    from vmsniff.lab.switch import appctl

    remote, relay_port = "16640", "16641"
    synth = tmp_path / "ovsdb.pcap"
    appctl(lab, "ovsdb-server", "ovsdb-server/add-remote", f"ptcp:{remote}:127.0.0.1")
    try:
        with snoop(lab, "--listen", f"127.0.0.1:{relay_port}", "--upstream",
                   f"127.0.0.1:{remote}", "-w", str(synth), "--print", "--json") as s:  # fmt: skip
            shown = subprocess.run(
                ["ip", "netns", "exec", lab.hypervisor_ns, "ovs-vsctl",
                 f"--db=tcp:127.0.0.1:{relay_port}", "--timeout=10", "list-br"],
                capture_output=True, text=True, timeout=30, env=ovs_env(lab),
            )  # fmt: skip
            assert shown.returncode == 0, shown.stderr
            assert s.finish() == 0, s.err
    finally:
        appctl(lab, "ovsdb-server", "ovsdb-server/remove-remote", f"ptcp:{remote}:127.0.0.1")
    assert shown.stdout == vsctl(lab, "list-br")  # the same answer as straight to the server
    import json

    printed = [json.loads(line) for line in s.out.splitlines()]
    messages = [m for m in printed if "direction" in m]
    assert all(m["protocol"] == "jsonrpc" and m["valid"] for m in messages), messages
    asked = [m["type"] for m in messages if m["direction"] == "switch>controller"]
    assert "get_schema" in asked and ("monitor" in asked or "monitor_cond" in asked), asked
    assert any(m["type"] == "reply" for m in messages if m["direction"] == "controller>switch")
    assert printed[-1]["accepted"] == 1  # the final stats
    assert tshark.problems(synth) == []
    (_nodes, sent, answered) = tshark.follow(synth, 0)
    assert b'"get_schema"' in sent and b'"Open_vSwitch"' in answered


def test_ovs_with_an_ssl_controller_goes_through_tls_and_is_restored(
    lab: Lab, tmp_path: Path, pki: Path
) -> None:
    original = f"ssl:127.0.0.1:{OPENFLOW}"
    synth = tmp_path / "ovs-tls.pcap"
    switch_ca, controller_ca = pki / "ca/switchca/cacert.pem", pki / "ca/controllerca/cacert.pem"
    tls = ["--tls-cert", str(pki / "ctl-cert.pem"), "--tls-key", str(pki / "ctl-privkey.pem"),
           "--tls-ca", str(switch_ca), "--upstream-tls",
           "--upstream-cert", str(pki / "relay-cert.pem"),
           "--upstream-key", str(pki / "relay-privkey.pem"),
           "--upstream-ca", str(controller_ca)]  # fmt: skip
    ctl = (f"pssl:{OPENFLOW}:127.0.0.1", "-p", str(pki / "ctl-privkey.pem"),
           "-c", str(pki / "ctl-cert.pem"), "-C", str(switch_ca))  # fmt: skip
    vsctl(lab, "set-ssl", str(pki / "sc-privkey.pem"), str(pki / "sc-cert.pem"), str(controller_ca))
    try:
        with controller(lab, OPENFLOW, *ctl), bridges(lab, names("s", 1), original) as (br,):
            wait_connected(lab, br)
            with snoop(lab, "--ovs", br, "--ovsdb", lab.ovsdb_remote, "-w", str(synth),
                       "--print", *tls) as s:  # fmt: skip
                listen, upstream = s.listening[0]
                assert upstream == original
                assert controller_row(lab, br)[0] == f"ssl:{listen}"
                time.sleep(1.5)
                wait_connected(lab, br)
                assert s.finish() == 0, s.err
            assert controller_row(lab, br) == (original, "{}")
            wait_connected(lab, br)
    finally:
        vsctl(lab, "del-ssl")
    assert "switch>controller OF1.5 HELLO" in s.out
    assert tshark.problems(synth) == []
    types = {t for row in tshark.fields(synth, "openflow_v6.type") for t in row[0].split(",")}
    assert {"0", "5", "6"} <= types, types


def test_an_ovs_snoop_waiting_for_a_fifo_reader_restores_the_bridge_on_a_signal(
    lab: Lab, tmp_path: Path
) -> None:
    """-w FIFO with nobody reading: the bridge is already redirected to the relay when the
    file is opened. Before, the open blocked in the kernel past SIGTERM (the handler only sets
    a flag): the process hung and the switch kept a controller target nobody served. Now the
    wait ends on the signal, the bridge is restored, exit 11."""
    original = "tcp:127.0.0.1:6633"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with controller(lab, "6633"), bridges(lab, names("f", 1), original) as (br,):
        proc = in_ns(lab, sys.executable, "-m", "vmsniff", "snoop", "--ovs", br, "--ovsdb",
                     lab.ovsdb_remote, "-w", str(fifo), stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while controller_row(lab, br)[0] == original and time.monotonic() < deadline:
                time.sleep(0.2)
            assert controller_row(lab, br)[0] != original, "never redirected"
            time.sleep(1.0)
            assert proc.poll() is None, "it should wait for the FIFO's reader"
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 11, err
        assert "nobody opened the FIFO" in err
        assert controller_row(lab, br) == (original, "{}")
        wait_connected(lab, br)
