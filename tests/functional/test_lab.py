"""The lab is real: OVS in namespaces, traffic through br-int, GRE to the receiver, no traces."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.functional.conftest import unique_prefix
from vmsniff.errors import InvalidState, NotFound
from vmsniff.lab.build import build
from vmsniff.lab.links import addresses, create_namespace, existing_namespaces, link_info
from vmsniff.lab.status import status
from vmsniff.lab.switch import appctl, ofctl, ovs_env, restart_daemon, start_daemons, vsctl
from vmsniff.lab.teardown import teardown
from vmsniff.lab.topology import RECEIVER_IP, Lab, lab_for
from vmsniff.lab.traffic import make_traffic

pytestmark = pytest.mark.lab


def vmsniff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmsniff", *args], capture_output=True, text=True, timeout=120
    )


def test_status_json_has_documented_keys(lab: Lab) -> None:
    proc = vmsniff("lab", "status", "--prefix", lab.prefix, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "running"
    assert data["ovsdb"] == f"unix:/run/{lab.prefix}/db.sock"
    assert data["hypervisor"]["namespace"] == f"{lab.prefix}-hv"
    assert data["receiver"] == {
        "namespace": f"{lab.prefix}-rx",
        "address": RECEIVER_IP,
        "device": "eth0",
        "mac": data["receiver"]["mac"],
        "mtu": 9000,
    }
    plugs = {vm["name"]: vm for vm in data["vms"]}
    assert plugs["c-private"]["plug"] == "hybrid"
    assert plugs["c-private"]["ovs_port"].startswith("qvo")
    assert plugs["c-native"]["plug"] == "ovs"
    assert plugs["c-native"]["ovs_port"] == plugs["c-native"]["tap"]
    assert sorted(plugs) == ["c-multi", "c-native", "c-private"]
    for vm in data["vms"]:
        for key in ("name", "namespace", "address", "mac", "tap", "ovs_port", "plug"):
            assert vm[key], key
        assert vm["mac"].startswith("fa:16:3e:")
        first = {k: v for k, v in vm["nics"][0].items() if k != "device"}
        assert first == {k: vm[k] for k in first}  # the flat keys are the first NIC's
    multi = lab.vm("c-multi")
    assert plugs["c-multi"]["nics"] == [
        {
            "device": nic.device,
            "address": nic.address,
            "mac": nic.mac,
            "port_id": nic.port_id,
            "tap": nic.tap,
            "ovs_port": nic.ovs_port,
            "bridge": "br-int",
            "plug": nic.plug.value,
            "qbr": nic.qbr,
            "qvb": nic.qvb,
            "tag": 1,
        }
        for nic in multi.nics
    ]
    assert [n["plug"] for n in plugs["c-multi"]["nics"]] == ["ovs", "hybrid"]
    for info in data["hypervisor"]["daemons"].values():
        assert Path(info["pidfile"]).parent == lab.rundir
    assert all(data["namespaces"].values())


def test_ovs_vsctl_sees_the_topology_with_os_vif_external_ids(lab: Lab) -> None:
    show = vsctl(lab, "show")
    assert "Bridge br-int" in show and "Bridge br-phy" in show
    assert "datapath_type: netdev" in show
    for vm in lab.vms:
        for nic in vm.nics:
            assert f"Port {nic.ovs_port}" in show
            ids = vsctl(lab, "get", "Interface", nic.ovs_port, "external_ids")
            assert f'iface-id="{nic.port_id}"' in ids
            assert f'attached-mac="{nic.mac}"' in ids
            assert f'vm-uuid="{vm.server_id}"' in ids
            assert "iface-status=active" in ids
            assert vsctl(lab, "get", "Port", nic.ovs_port, "tag").strip() == "1"
    ports = vsctl(lab, "list-ports", "br-int").split()
    assert sorted(ports) == sorted(nic.ovs_port for vm in lab.vms for nic in vm.nics)
    # The hybrid plug's Linux bridge holds the tap and the qvb end (c-multi's second NIC too).
    for hybrid in (lab.vm("c-private").nics[0], lab.vm("c-multi").nics[1]):
        bridge = subprocess.run(
            ["ip", "netns", "exec", lab.hypervisor_ns, "ip", "-o", "link", "show", "master",
             str(hybrid.qbr)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert hybrid.tap in bridge and str(hybrid.qvb) in bridge


def test_a_vm_with_two_nics_has_eth0_and_eth1_with_their_macs_and_addresses(lab: Lab) -> None:
    vm = lab.vm("c-multi")
    for nic in vm.nics:
        info = link_info(vm.namespace, nic.device)
        assert info["mac"] == nic.mac and info["addresses"] == [f"{nic.address}/24"]
        assert info["mtu"] == 1500
        # What leaves from the NIC's address leaves through the NIC.
        route = subprocess.run(
            ["ip", "netns", "exec", vm.namespace, "ip", "-o", "route", "get",
             lab.vm("c-private").address, "from", nic.address],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert f" dev {nic.device} " in route, route


@pytest.mark.parametrize(
    ("src", "dst", "src_nic", "dst_nic"),
    [
        ("c-private", "c-native", 0, 0),
        ("c-native", "c-private", 0, 0),
        ("c-multi", "c-private", 0, 0),
        ("c-multi", "c-native", 1, 0),
        ("c-private", "c-multi", 0, 1),
        ("c-native", "c-multi", 0, 0),
    ],
)
def test_traffic_flows_between_vms_in_both_directions(
    lab: Lab, src: str, dst: str, src_nic: int, dst_nic: int
) -> None:
    result = make_traffic(lab, src, dst, count=3, source_nic=src_nic, destination_nic=dst_nic)
    assert result["from"]["address"] == lab.vm(src).nics[src_nic].address
    assert result["to"]["device"] == f"eth{dst_nic}"
    for kind, counts in result["traffic"].items():
        assert counts["sent"] == 3, kind
        assert counts["replies"] == 3, (src, dst, kind, counts)


def test_traffic_refuses_a_nic_the_vm_does_not_have(lab: Lab) -> None:
    with pytest.raises(NotFound, match="c-private has no NIC 1"):
        make_traffic(lab, "c-private", "c-multi", source_nic=1)


def test_traffic_crosses_br_int(lab: Lab) -> None:
    """The VMs' packets go through OVS (its port counters grow), not around it."""

    def rx_packets(port: str) -> int:
        # Live OpenFlow port counters (the Interface statistics column lags by 5 s).
        out = ofctl(lab, "dump-ports", "br-int", port)
        return int(re.search(r"rx pkts=(\d+)", out).group(1))  # type: ignore[union-attr]

    pair = [lab.vm("c-private").ovs_port, lab.vm("c-native").ovs_port]
    before = {port: rx_packets(port) for port in pair}
    make_traffic(lab, "c-private", "c-native", count=2)
    for port in pair:
        assert rx_packets(port) >= before[port] + 8, port
    # A VM with two NICs: the traffic of each NIC's address crosses that NIC's port only.
    multi = [nic.ovs_port for nic in lab.vm("c-multi").nics]
    for used in (0, 1):
        before = {port: rx_packets(port) for port in multi}
        make_traffic(lab, "c-multi", "c-native", count=2, source_nic=used)
        grown = [rx_packets(port) - before[port] for port in multi]
        assert grown[used] >= 8 and grown[1 - used] < 4, grown


def test_libvirt_test_driver_loads_nova_style_domains(lab: Lab) -> None:
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open(lab.libvirt_uri)
    try:
        for vm in lab.vms:
            dom = conn.lookupByName(vm.instance_name)
            assert dom.UUIDString() == vm.server_id
            meta = dom.metadata(
                libvirt.VIR_DOMAIN_METADATA_ELEMENT, "http://openstack.org/xmlns/libvirt/nova/1.1"
            )
            assert f"<name>{vm.name}</name>" in meta
            xml = dom.XMLDesc()
            for nic in vm.nics:
                assert f"<target dev='{nic.tap}'/>" in xml
                assert f"<mac address='{nic.mac}'/>" in xml
                assert nic.port_id in meta and nic.address in meta
            assert xml.count("<interface ") == len(vm.nics)
    finally:
        conn.close()


def test_gre_mirror_reaches_the_receiver_over_br_phy(lab: Lab) -> None:
    """A GRE port + Mirror made by hand (ovs-vsctl) delivers the VM's frames to the receiver.

    This is the lab's promise to the mirror and receive commands: the underlay, the tunnel
    IP on br-phy and the receiver namespace work together.
    """
    vm = lab.vm("c-private")
    counter = subprocess.Popen(
        ["ip", "netns", "exec", lab.receiver_ns, sys.executable, "-c",
         "import socket,sys,select,time\n"
         "s=socket.socket(socket.AF_INET,socket.SOCK_RAW,47)\n"
         "print('ready',flush=True)\n"
         "n=0;big=0;end=time.time()+8\n"
         "while time.time()<end:\n"
         "  r,_,_=select.select([s],[],[],0.2)\n"
         "  if r:\n"
         "    d=s.recv(65535);n+=1;big+=len(d)>1500\n"
         "  if sys.stdin in select.select([sys.stdin],[],[],0)[0]: break\n"
         "print(n,big,flush=True)\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert counter.stdout is not None and counter.stdin is not None
        assert counter.stdout.readline().strip() == "ready"
        vsctl(
            lab,
            "--", "add-port", "br-int", "vmstgre0",
            "--", "set", "Interface", "vmstgre0", "type=gre",
            f"options:remote_ip={RECEIVER_IP}", "options:key=77",
            "--", "--id=@out", "get", "Port", "vmstgre0",
            "--", "--id=@vm", "get", "Port", vm.ovs_port,
            "--", "--id=@m", "create", "Mirror", "name=vmst-m",
            "select_src_port=@vm", "select_dst_port=@vm", "output_port=@out",
            "--", "add", "Bridge", "br-int", "mirrors", "@m",
        )  # fmt: skip
        time.sleep(0.3)
        make_traffic(lab, "c-private", "c-native", count=2)
        time.sleep(0.5)
        counter.stdin.write("x\n")
        counter.stdin.flush()
        got, big = map(int, counter.stdout.readline().split())
    finally:
        counter.kill()
        counter.communicate()
        mirror = vsctl(lab, "get", "Mirror", "vmst-m", "_uuid").strip()
        vsctl(lab, "--", "remove", "Bridge", "br-int", "mirrors", mirror,
              "--", "del-port", "br-int", "vmstgre0")  # fmt: skip
    # 4 kinds x 2 round trips x 2 directions = 16 frames at least, plus ARP and TCP control.
    assert got >= 16
    assert big >= 4  # the full-size frames arrive: the underlay is jumbo


def test_lifecycle_already_running_idempotent_down_no_traces(fresh_lab_prefix: str) -> None:
    the_lab = lab_for(fresh_lab_prefix)
    start = time.monotonic()
    build(the_lab)
    up_s = time.monotonic() - start
    pids = [s["pid"] for s in status(the_lab)["hypervisor"]["daemons"].values() if s["pid"]]
    assert len(pids) == 3  # ovsdb-server, ovs-vswitchd, the stand-in cloud
    with pytest.raises(InvalidState, match="already running"):
        build(the_lab)
    proc = vmsniff("lab", "up", "--prefix", fresh_lab_prefix)
    assert proc.returncode == 5 and "already running" in proc.stderr
    start = time.monotonic()
    report = teardown(the_lab)
    down_s = time.monotonic() - start
    assert sorted(report["processes_stopped"]) == ["cloud", "ovs-vswitchd", "ovsdb-server"]
    assert not _ours(fresh_lab_prefix)
    assert the_lab.mgmt_root_device not in {dev for dev, _ in addresses(None)}
    assert not Path(f"/sys/class/net/{the_lab.mgmt_root_device}").exists()
    assert not the_lab.rundir.exists()
    for pid in pids:
        assert _gone(pid)
    # Idempotent, through the CLI too.
    assert teardown(the_lab)["namespaces_removed"] == []
    proc = vmsniff("lab", "down", "--prefix", fresh_lab_prefix)
    assert proc.returncode == 0 and "not running" in proc.stderr
    print(f"lab up {up_s:.2f} s, down {down_s:.2f} s")


def test_down_after_a_crashed_up_removes_everything(fresh_lab_prefix: str) -> None:
    """Half a lab (namespaces, daemons, no state file) is still found and removed."""
    the_lab = lab_for(fresh_lab_prefix)
    the_lab.rundir.mkdir(parents=True)
    create_namespace(the_lab.hypervisor_ns)
    create_namespace(the_lab.vms[0].namespace)
    start_daemons(the_lab)
    pid = int(the_lab.pidfile("ovs-vswitchd").read_text())
    assert status(the_lab)["status"] != "running"
    proc = vmsniff("lab", "down", "--prefix", fresh_lab_prefix, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["namespaces_removed"]) == {the_lab.hypervisor_ns, the_lab.vms[0].namespace}
    assert not _ours(fresh_lab_prefix)
    assert _gone(pid)
    assert not the_lab.rundir.exists()


def test_a_failing_up_cleans_up_after_itself(
    fresh_lab_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vmsniff.lab.build as build_module

    def broken(lab: Lab) -> None:
        raise RuntimeError("injected failure after the daemons started")

    monkeypatch.setattr(build_module, "_underlay", broken)
    the_lab = lab_for(fresh_lab_prefix)
    with pytest.raises(RuntimeError, match="injected"):
        build(the_lab)
    assert not _ours(fresh_lab_prefix)
    assert not the_lab.rundir.exists()


def lab_env(lab: Lab) -> dict[str, str]:
    """This process's environment (without OS_*) plus what `vmsniff lab env` exports."""
    proc = vmsniff("lab", "env", "--prefix", lab.prefix)
    assert proc.returncode == 0, proc.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    for line in proc.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0]
    return env


def in_hv(lab: Lab, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``ip netns exec PREFIX-hv python -m vmsniff ARGS``: where a compute node runs it."""
    return subprocess.run(
        ["ip", "netns", "exec", lab.hypervisor_ns, sys.executable, "-m", "vmsniff", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_env_exports_point_tools_at_the_lab(lab: Lab) -> None:
    env = lab_env(lab)
    assert env["VMSNIFF_OVSDB"] == lab.ovsdb_remote
    assert env["OS_CLOUD"] == "vmsniff-lab"
    assert env["VMSNIFF_LAB_CLOUD_URL"].startswith(f"http://{lab.mgmt_root_ip}:")
    show = subprocess.run(
        ["ovs-vsctl", f"--db={env['VMSNIFF_OVSDB']}", "list-br"],
        capture_output=True, text=True, check=True, env={**ovs_env(lab), **env},
    ).stdout.split()  # fmt: skip
    assert show == ["br-int", "br-phy"]


def test_the_cloud_is_reachable_from_the_hypervisor_namespace(lab: Lab) -> None:
    """As on a compute node: the API answers on the management network, from both sides."""
    url = lab_env(lab)["VMSNIFF_LAB_CLOUD_URL"] + "/identity/v3"
    fetch = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=5).status)"
    for where in ([], ["ip", "netns", "exec", lab.hypervisor_ns]):
        got = subprocess.run([*where, sys.executable, "-c", fetch], capture_output=True,
                             text=True, timeout=30)  # fmt: skip
        assert got.stdout.strip() == "200", (where, got.stderr)
    data = json.loads(vmsniff("lab", "status", "--prefix", lab.prefix, "--json").stdout)
    assert data["management"] == {
        "network": lab.mgmt_net,
        "device": lab.mgmt_root_device,
        "address": lab.mgmt_root_ip,
        "hypervisor_device": "mgmt0",
        "hypervisor_address": lab.mgmt_hv_ip,
        "up": True,
    }
    assert link_info(lab.hypervisor_ns, "mgmt0")["addresses"] == [f"{lab.mgmt_hv_ip}/30"]
    clouds = yaml.safe_load((lab.rundir / "clouds.yaml").read_text())["clouds"]
    for cloud in clouds.values():
        assert cloud["auth"]["auth_url"].startswith(f"http://{lab.mgmt_root_ip}:")


def test_resolve_and_capture_in_the_hypervisor_namespace_ask_the_cloud(
    lab: Lab, tmp_path: Path
) -> None:
    """Every command works in PREFIX-hv with `lab env`'s OS_CLOUD, not only --offline."""
    env = lab_env(lab)
    resolved = in_hv(lab, "resolve", "c-private", "--json", env=env)
    assert resolved.returncode == 0, resolved.stderr
    data = json.loads(resolved.stdout)
    assert "nova" in data["sources"] and data["server"]["host"] == "compute-1"
    assert data["nics"][0]["network_name"] == "private"  # only Neutron knows the network's name
    out = tmp_path / "f.pcapng"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.hypervisor_ns, sys.executable, "-m", "vmsniff", "capture",
         "c-private", "-c", "6", "-w", str(out), "icmp"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("capturing"), line + proc.stderr.read()
        make_traffic(lab, "c-private", "c-native", count=3)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    frames = subprocess.run(
        ["tshark", "-r", str(out), "-T", "fields", "-e", "icmp.type"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert sorted(frames) == ["0", "0", "0", "8", "8", "8"]


def test_a_lab_whose_management_network_is_taken_is_refused_untouched(lab: Lab) -> None:
    """Two prefixes may hash to one /30: the second `lab up` refuses and creates nothing."""
    clash = next(
        other
        for other in (lab_for(f"{lab.prefix[:16]}-c{i}") for i in range(200_000))
        if other.mgmt_net == lab.mgmt_net
    )
    try:
        with pytest.raises(InvalidState, match=f"management network {lab.mgmt_net}"):
            build(clash)
        assert not clash.rundir.exists() and not _ours(clash.prefix)
    finally:
        teardown(clash)
    assert status(lab)["management"]["up"]  # the first lab keeps its own


def test_status_and_env_of_an_absent_lab() -> None:
    prefix = unique_prefix("absent")
    proc = vmsniff("lab", "status", "--prefix", prefix, "--json")
    assert proc.returncode == 5
    assert json.loads(proc.stdout)["status"] == "absent"
    proc = vmsniff("lab", "env", "--prefix", prefix)
    assert proc.returncode == 5 and "not running" in proc.stderr


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.split(") ", 1)[1].startswith("Z")  # a zombie whose parent has not reaped it


def _ours(prefix: str) -> set[str]:
    # Only this test's namespaces: other labs (other runs, a developer's) may exist meanwhile.
    return {ns for ns in existing_namespaces() if ns.startswith(f"{prefix}-")}


def test_restarting_the_daemons_keeps_the_rows_and_the_tunnel_endpoint(
    fresh_lab_prefix: str,
) -> None:
    """bench/faults.py restarts ovsdb-server and ovs-vswitchd through these helpers."""
    the_lab = lab_for(fresh_lab_prefix)
    build(the_lab)
    vsctl(the_lab, "add-port", "br-int", "vmst-keep", "--", "set", "Interface", "vmst-keep",
          "type=internal")  # fmt: skip
    for daemon in ("ovsdb-server", "ovs-vswitchd"):
        before = status(the_lab)["hypervisor"]["daemons"][daemon]["pid"]
        restart_daemon(the_lab, daemon, outage=0.2)
        after = status(the_lab)["hypervisor"]["daemons"][daemon]["pid"]
        assert after and after != before and _gone(before), daemon
        assert "vmst-keep" in vsctl(the_lab, "list-ports", "br-int").split()
        assert "10.250.0.1/24" in link_info(the_lab.hypervisor_ns, "br-phy")["addresses"]
        # The next hop a userspace tunnel needs, given up front again (FACTS.md).
        assert RECEIVER_IP in appctl(the_lab, "ovs-vswitchd", "tnl/arp/show")
        assert f"{RECEIVER_IP}/32" in appctl(the_lab, "ovs-vswitchd", "ovs/route/show")
    assert status(the_lab)["status"] == "running"
    # The VMs' ports came back in the new vswitchd, traffic flows again.
    result = make_traffic(the_lab, "c-private", "c-native", count=2)
    assert all(c["replies"] == 2 for c in result["traffic"].values()), result
    assert sorted(teardown(the_lab)["processes_stopped"]) == ["cloud", "ovs-vswitchd",
                                                              "ovsdb-server"]  # fmt: skip
