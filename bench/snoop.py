"""``vmsniff snoop`` against a direct connection, in one run, on loopback.

A stand-in OpenFlow controller (asyncio, a process of its own) answers ECHO_REQUEST with
ECHO_REPLY and a MULTIPART_REQUEST with a flow-table-dump-sized stream of MULTIPART_REPLY
messages. The bench client talks to it directly and through ``vmsniff snoop`` (the real
command, its own process, writing a pcap to a temporary directory), alternating, and prints:

* added latency of a small request/response (OpenFlow echo): p50 and p99 through the relay
  minus direct (target: p50 under 200 µs added);
* bulk throughput of a flow-table dump (target: at least 0.8x), two ways: a real one,
  ``ovs-ofctl dump-flows tcp:...`` of ``--flows`` (default 150000) flows from a real
  ovs-vswitchd in a lab of the bench's own (its bridge listens with ``ptcp:``; root needed,
  skipped otherwise), and a synthetic stream of ``--dump-mb`` (default 32) MB of
  MULTIPART_REPLY messages from the stand-in, which shows the relay's own ceiling;
* ``--conns`` (default 1000) concurrent connections through the relay, each doing an echo
  and held open together: errors (target: none);
* the relay's peak RSS (``VmHWM``) at the end.

    sudo .venv/bin/python bench/snoop.py [--echoes 2000] [--dump-mb 32] [--flows 150000]
                                         [--conns 1000] [--json]

Numbers, not assertions: run it on an idle machine; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = struct.Struct("!BBHI")
VERSION = 6  # OpenFlow 1.5
ECHO_REQUEST, ECHO_REPLY, MULTIPART_REQUEST, MULTIPART_REPLY = 2, 3, 18, 19
REPLY_BODY = 65000  # bytes of body per MULTIPART_REPLY (a full-size OpenFlow message)


# -- the stand-in controller (run as `bench/snoop.py --serve PORT`) ---------------------------


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readexactly(8)
            version, msg_type, length, xid = HEADER.unpack(head)
            body = await reader.readexactly(length - 8)
            if msg_type == ECHO_REQUEST:
                writer.write(HEADER.pack(version, ECHO_REPLY, length, xid) + body)
            elif msg_type == MULTIPART_REQUEST:
                (total,) = struct.unpack("!Q", body[:8])
                chunk = HEADER.pack(version, MULTIPART_REPLY, 8 + REPLY_BODY, xid) + bytes(
                    REPLY_BODY
                )
                sent = 0
                while sent < total:
                    writer.write(chunk)
                    sent += len(chunk)
                    await writer.drain()
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve(port: int) -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


# -- the client ------------------------------------------------------------------------------


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


def echo_times(port: int, count: int) -> list[float]:
    """Round trips of an 8-byte ECHO_REQUEST, in microseconds."""
    out = []
    with _connect(port) as sock:
        for xid in range(count):
            msg = HEADER.pack(VERSION, ECHO_REQUEST, 8, xid)
            start = time.perf_counter_ns()
            sock.sendall(msg)
            _recv_exactly(sock, 8)
            out.append((time.perf_counter_ns() - start) / 1000)
    return out


def dump_rate(port: int, total: int) -> float:
    """MB/s of one flow-table-dump-sized reply stream."""
    with _connect(port) as sock:
        req = HEADER.pack(VERSION, MULTIPART_REQUEST, 16, 1) + struct.pack("!Q", total)
        start = time.perf_counter()
        sock.sendall(req)
        got = 0
        while got < total:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed early")
            got += len(chunk)
        return got / (time.perf_counter() - start) / 1e6


def hold(port: int, conns: int) -> tuple[int, int]:
    """Open ``conns`` connections, one echo on each, all held open at once: (ok, errors)."""
    socks, ok, errors = [], 0, 0
    try:
        for _ in range(conns):
            try:
                socks.append(_connect(port))
            except OSError:
                errors += 1
        for xid, sock in enumerate(socks):
            try:
                sock.settimeout(10)
                sock.sendall(HEADER.pack(VERSION, ECHO_REQUEST, 8, xid))
                if HEADER.unpack(_recv_exactly(sock, 8))[3] == xid:
                    ok += 1
                else:
                    errors += 1
            except OSError:
                errors += 1
    finally:
        for sock in socks:
            sock.close()
    return ok, errors


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--echoes", type=int, default=2000)
    parser.add_argument("--dump-mb", type=int, default=32)
    parser.add_argument("--dumps", type=int, default=3, help="dumps each way (best counts)")
    parser.add_argument("--conns", type=int, default=1000)
    parser.add_argument("--flows", type=int, default=150000, help="0: no real OVS dump")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    _raise_nofile()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    upstream, listen = _free_port(), _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(upstream)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    with tempfile.TemporaryDirectory(prefix="vmsniff-bench-snoop-") as tmp:
        capture = Path(tmp) / "bench.pcap"
        relay = subprocess.Popen(
            [sys.executable, "-m", "vmsniff", "-q", "snoop", "--listen", f"127.0.0.1:{listen}",
             "--upstream", f"127.0.0.1:{upstream}", "-w", str(capture), "--json"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", listen), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            results = _measure(args, upstream, listen)
            status = Path(f"/proc/{relay.pid}/status").read_text()
            results["relay_peak_rss_mib"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
            results["capture_mb"] = capture.stat().st_size / 1e6
        finally:
            relay.send_signal(2)
            out, err = relay.communicate(timeout=60)
            server.terminate()
            server.wait(10)
    results["relay_stats"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else err
    if args.flows and os.geteuid() == 0:
        results.update(ovs_dump(args.flows, args.dumps))
    _print(results, args)


def ovs_dump(flows: int, dumps: int) -> dict[str, float]:
    """``ovs-ofctl dump-flows`` of a real bridge holding ``flows`` flows, straight to the
    bridge's ``ptcp:`` listener and through ``vmsniff snoop``, in a lab of our own."""
    sys.path.insert(0, str(ROOT))
    from vmsniff.lab.build import build
    from vmsniff.lab.switch import ovs_env, vsctl
    from vmsniff.lab.teardown import teardown
    from vmsniff.lab.topology import lab_for

    lab = lab_for(f"vmsb{os.getpid()}")
    env = ovs_env(lab)
    direct, via = "16633", "16634"
    try:
        build(lab)
        ns = ["ip", "netns", "exec", lab.hypervisor_ns]
        vsctl(lab, "add-br", "vmsbench", "--", "set", "Bridge", "vmsbench",
              "datapath_type=netdev", "fail_mode=secure", "--", "set-controller", "vmsbench",
              f"ptcp:{direct}:127.0.0.1")  # fmt: skip
        table = "".join(
            f"priority=100,tcp,nw_src=10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255},"
            f"tp_dst={i % 60000 + 1},actions=mod_nw_tos:{(i % 64) * 4}\n"
            for i in range(flows)
        )
        add = [*ns, "ovs-ofctl", "add-flows", "vmsbench", "-"]
        added = subprocess.run(add, env=env, input=table, text=True, capture_output=True,
                               timeout=900)  # fmt: skip
        if added.returncode:
            raise RuntimeError(f"ovs-ofctl add-flows: {added.stderr.strip()}")
        with tempfile.TemporaryDirectory(prefix="vmsniff-bench-snoop-") as tmp:
            relay = subprocess.Popen(
                [*ns, sys.executable, "-m", "vmsniff", "-q", "snoop", "--listen", via,
                 "--upstream", f"127.0.0.1:{direct}", "-w", f"{tmp}/ovs.pcap"],
                cwd=ROOT, env=env, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(2)
            times: dict[str, list[float]] = {"direct": [], "relay": []}
            size = 0
            try:
                for _ in range(dumps):
                    for name, port in (("direct", direct), ("relay", via)):
                        start = time.perf_counter()
                        done = subprocess.run(
                            [*ns, "ovs-ofctl", "-O", "OpenFlow15", "dump-flows",
                             f"tcp:127.0.0.1:{port}"], env=env, capture_output=True,
                            check=True, timeout=600,
                        )  # fmt: skip
                        times[name].append(time.perf_counter() - start)
                        lines = done.stdout.count(b"\n")
                        assert lines >= flows, (name, lines)
            finally:
                relay.send_signal(2)
                relay.wait(60)
            size = os.stat(f"{tmp}/ovs.pcap").st_size
    finally:
        teardown(lab)
    best_direct, best_relay = min(times["direct"]), min(times["relay"])
    return {
        "ovs_flows": flows,
        "ovs_dump_direct_s": best_direct,
        "ovs_dump_relay_s": best_relay,
        "ovs_dump_ratio": best_direct / best_relay,
        "ovs_capture_mb": size / 1e6,
    }


def _measure(args: argparse.Namespace, upstream: int, listen: int) -> dict[str, object]:
    direct: list[float] = []
    relayed: list[float] = []
    for _ in range(2):  # alternate, so that a noisy moment hits both alike
        direct += echo_times(upstream, args.echoes // 2)
        relayed += echo_times(listen, args.echoes // 2)
    total = args.dump_mb * 1_000_000
    rates: dict[str, list[float]] = {"direct": [], "relay": []}
    for _ in range(args.dumps):
        rates["direct"].append(dump_rate(upstream, total))
        rates["relay"].append(dump_rate(listen, total))
    ok, errors = hold(listen, args.conns)
    d50, r50 = statistics.median(direct), statistics.median(relayed)
    d99, r99 = _pct(direct, 0.99), _pct(relayed, 0.99)
    return {
        "echo_direct_p50_us": d50,
        "echo_relay_p50_us": r50,
        "echo_added_p50_us": r50 - d50,
        "echo_direct_p99_us": d99,
        "echo_relay_p99_us": r99,
        "echo_added_p99_us": r99 - d99,
        "dump_direct_mb_s": max(rates["direct"]),
        "dump_relay_mb_s": max(rates["relay"]),
        "dump_ratio": max(rates["relay"]) / max(rates["direct"]),
        "conns": args.conns,
        "conns_ok": ok,
        "conns_errors": errors,
    }


def _print(r: dict[str, object], args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(r, indent=2))
        return
    f = {k: v for k, v in r.items() if isinstance(v, float | int)}
    rows = [
        ("echo p50 (µs)", f"{f['echo_direct_p50_us']:.0f}", f"{f['echo_relay_p50_us']:.0f}",
         f"+{f['echo_added_p50_us']:.0f} µs", "< +200 µs"),
        ("echo p99 (µs)", f"{f['echo_direct_p99_us']:.0f}", f"{f['echo_relay_p99_us']:.0f}",
         f"+{f['echo_added_p99_us']:.0f} µs", ""),
        (f"dump {args.dump_mb} MB (MB/s)", f"{f['dump_direct_mb_s']:.0f}",
         f"{f['dump_relay_mb_s']:.0f}", f"{f['dump_ratio']:.2f}x", ">= 0.8x"),
        *([(f"ofctl dump {f['ovs_flows']} flows (s)", f"{f['ovs_dump_direct_s']:.2f}",
             f"{f['ovs_dump_relay_s']:.2f}", f"{f['ovs_dump_ratio']:.2f}x", ">= 0.8x")]
          if "ovs_flows" in f else []),
        (f"{args.conns} concurrent conns", "", f"{f['conns_ok']} ok",
         f"{f['conns_errors']} errors", "0 errors"),
        ("relay peak RSS (MiB)", "", f"{f['relay_peak_rss_mib']:.0f}", "", ""),
    ]  # fmt: skip
    print(f"| {'measure':<30} | {'direct':>8} | {'relay':>9} | {'relay vs direct':>15} | target |")
    print(f"| {'-' * 30} | {'-' * 8} | {'-' * 9} | {'-' * 15} | ------ |")
    for name, d, rl, ratio, target in rows:
        print(f"| {name:<30} | {d:>8} | {rl:>9} | {ratio:>15} | {target} |")
    print(f"capture written: {f['capture_mb']:.1f} MB; relay stats: {r['relay_stats']}")
    if "ovs_capture_mb" in f:
        print(f"ovs-ofctl dumps through the relay: {f['ovs_capture_mb']:.1f} MB of capture")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
