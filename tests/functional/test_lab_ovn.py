"""`lab up --hosts 2 --ovn`: Debian's real OVN programs two chassis; Geneve between them,
an NB Mirror realised on the right chassis and its GRE at the lab's receiver."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.functional.conftest import _require_lab_tools, unique_prefix
from tests.functional.test_mirror import collector
from vmsniff.lab.build import build
from vmsniff.lab.ovn import nbctl, sbctl
from vmsniff.lab.switch import appctl, ofctl, vsctl
from vmsniff.lab.teardown import teardown
from vmsniff.lab.topology import RECEIVER_IP, Lab, lab_for
from vmsniff.lab.traffic import make_traffic

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def ovn_lab() -> Iterator[Lab]:
    """A two-chassis OVN lab for this module, removed even when tests fail."""
    _require_lab_tools()
    for tool in ("ovn-northd", "ovn-controller", "ovn-nbctl"):
        if shutil.which(tool) is None:
            skip_or_fail(
                f"{tool} is not installed (scripts/install.sh installs ovn-central, ovn-host)"
            )
    the_lab = lab_for(unique_prefix("ovn"), hosts=2, ovn=True)
    try:
        build(the_lab)
        yield the_lab
    finally:
        teardown(the_lab)


def _wait(predicate: object, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _geneve_ports(lab: Lab, host: str) -> list[str]:
    hv = lab.hypervisor(host)
    out = vsctl(hv, "--columns=name,type", "--format=csv", "--no-headings", "list", "Interface")
    return [row.split(",")[0].strip('"') for row in out.split() if row.endswith(",geneve")]


def test_status_shows_ovn_central_and_the_chassis(ovn_lab: Lab) -> None:
    argv = [sys.executable, "-m", "vmsniff", "lab", "status", "--prefix", ovn_lab.prefix, "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "running" and data["ovn"] is True and data["hosts"] == 2
    central = data["ovn_central"]
    assert central["nb"] == ovn_lab.ovn_nb_remote and central["sb"] == ovn_lab.ovn_sb_remote
    assert all(d["pid"] for d in central["daemons"].values()), central
    assert {vm["name"]: vm["host"] for vm in data["vms"]} == {
        "c-private": "compute-1",
        "c-native": "compute-2",
        "c-multi": "compute-1",
    }
    assert {nic["tag"] for vm in data["vms"] for nic in vm["nics"]} == {None}
    assert {nic["plug"] for vm in data["vms"] for nic in vm["nics"]} == {"ovs"}
    assert data["env"]["OVN_NB_DB"] == ovn_lab.ovn_nb_remote


def test_neutron_ports_are_logical_switch_ports_bound_on_their_chassis(ovn_lab: Lab) -> None:
    lsps = set(nbctl(ovn_lab, "lsp-list", ovn_lab.logical_switch).split())
    chassis = {
        row.split(",")[1].strip('"'): row.split(",")[0].strip('"')
        for row in sbctl(
            ovn_lab, "--columns=name,_uuid", "--format=csv", "--no-headings", "list", "Chassis"
        ).split()
    }  # uuid -> name
    assert set(chassis.values()) == {"compute-1", "compute-2"}
    for vm in ovn_lab.vms:
        for nic in vm.nics:
            assert f"({nic.port_id})" in lsps or nic.port_id in lsps
            bound = sbctl(ovn_lab, "--bare", "--columns=chassis", "find", "Port_Binding",
                          f"logical_port={nic.port_id}").strip()  # fmt: skip
            assert chassis[bound] == ovn_lab.host_of(vm).name, (vm.name, nic.port_id)


def test_vms_on_different_chassis_talk_through_geneve(ovn_lab: Lab) -> None:
    ports = {host: _geneve_ports(ovn_lab, host) for host in ("compute-1", "compute-2")}
    assert all(len(p) == 1 for p in ports.values()), ports
    hv1 = ovn_lab.hypervisor("compute-1")
    options = vsctl(hv1, "get", "Interface", ports["compute-1"][0], "options")
    assert ovn_lab.hypervisor("compute-2").tunnel_ip in options

    def tx(host: str) -> int:
        # The tunnel port's own counters see only slow-path packets in the userspace
        # datapath; what leaves the host goes out of phy0 on br-phy.
        out = ofctl(ovn_lab.hypervisor(host), "dump-ports", "br-phy", "phy0")
        return int(re.search(r"tx pkts=(\d+)", out).group(1))  # type: ignore[union-attr]

    before = {host: tx(host) for host in ports}
    result = make_traffic(ovn_lab, "c-private", "c-native", count=3)
    assert all(c["replies"] == 3 for c in result["traffic"].values()), result
    for host in ports:  # both directions crossed the underlay, encapsulated in Geneve
        assert tx(host) >= before[host] + 12, host
        flows = appctl(ovn_lab.hypervisor(host), "ovs-vswitchd", "dpctl/dump-flows")
        assert "tnl_pop(" in flows and re.search(r"tnl_push\(.*geneve\(", flows), host


def test_an_nb_mirror_is_realised_on_the_vms_chassis_and_reaches_the_receiver(
    ovn_lab: Lab,
) -> None:
    native = ovn_lab.vm("c-native")  # on compute-2
    hv1, hv2 = ovn_lab.hypervisor("compute-1"), ovn_lab.hypervisor("compute-2")
    nbctl(ovn_lab, "mirror-add", "vmst-m", "gre", "4242", "from-lport", RECEIVER_IP,
          "--", "lsp-attach-mirror", native.port_id, "vmst-m")  # fmt: skip
    try:

        def realised() -> bool:
            out = vsctl(hv2, "--columns=name", "--format=csv", "--no-headings", "list", "Mirror")
            return '"vmst-m"' in out.split() or "vmst-m" in out.split()

        _wait(realised, "ovn-controller to create the Mirror on compute-2")
        iface = "ovn-vmst-m"
        assert vsctl(hv2, "get", "Interface", iface, "type").strip() == "gre"
        options = vsctl(hv2, "get", "Interface", iface, "options")
        assert 'key="4242"' in options and f'remote_ip="{RECEIVER_IP}"' in options
        ids = vsctl(hv2, "get", "Mirror", "vmst-m", "external_ids")
        assert 'ovn-owned="true"' in ids
        selected = vsctl(hv2, "get", "Mirror", "vmst-m", "select_src_port").strip("[]\n ")
        assert selected == vsctl(hv2, "get", "Port", native.ovs_port, "_uuid").strip()
        # Not on the chassis that does not host the port.
        assert "vmst-m" not in vsctl(hv1, "--columns=name", "list", "Mirror")
        with collector(ovn_lab) as got:
            make_traffic(ovn_lab, "c-native", "c-private", count=2)
        keys = [k for k, _, _ in got]
        # from-lport: what c-native sends, 4 kinds x 2 at least.
        assert keys.count(4242) >= 8 and set(keys) == {4242}, keys
        macs = {bytes.fromhex(frame)[6:12].hex(":") for _, frame, _ in got}
        assert macs == {native.mac}
    finally:
        nbctl(ovn_lab, "mirror-del", "vmst-m")
    _wait(lambda: "ovn-vmst-m" not in vsctl(hv2, "list-ports", "br-int").split(),
          "ovn-controller to remove the mirror's port")  # fmt: skip
    assert "vmst-m" not in vsctl(hv2, "--columns=name", "list", "Mirror")


def test_down_removes_every_ovn_process_and_file(fresh_lab_prefix: str) -> None:
    the_lab = lab_for(fresh_lab_prefix, hosts=2, ovn=True)
    build(the_lab)
    from vmsniff.lab.ovn import ovn_daemons

    pids = [d["pid"] for d in ovn_daemons(the_lab).values()]
    assert len(pids) == 5 and all(pids)  # nb, sb, northd, two controllers
    # `lab down` with no --hosts/--ovn, as after a lost state file.
    the_lab.state_file.unlink()
    argv = [sys.executable, "-m", "vmsniff", "lab", "down", "--prefix", fresh_lab_prefix, "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    stopped = json.loads(proc.stdout)["processes_stopped"]
    assert {"ovn-northd", "ovnnb-server", "ovnsb-server", "ovn-controller/compute-1",
            "ovn-controller/compute-2"} <= set(stopped)  # fmt: skip
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split(") ", 1)[1].startswith("Z"), pid
    assert not the_lab.rundir.exists()
