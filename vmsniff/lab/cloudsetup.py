"""The lab's stand-in cloud: an inventory made from the topology, the server process, clouds.yaml.

Clouds written to ``/run/PREFIX/clouds.yaml`` (mode 0600):

- ``vmsniff-lab``: user ``admin`` with the admin role (sees hosts and instance names);
- ``vmsniff-lab-demo``: user ``demo``, a member of project ``demo`` (does not).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from vmsniff.lab._run import LabError
from vmsniff.lab.cloud import (
    Inventory,
    Network,
    Port,
    Project,
    Server,
    User,
    build_inventory,
    save_inventory,
    write_clouds_yaml,
)
from vmsniff.lab.topology import HOST, OTHER_PROJECT, PROJECT_NAME, TENANT_NET, Lab, Plug

__all__ = ["ADMIN_CLOUD", "MEMBER_CLOUD", "lab_inventory", "start_cloud"]

ADMIN_CLOUD = "vmsniff-lab"
MEMBER_CLOUD = "vmsniff-lab-demo"
_PASSWORDS = {"admin": "lab-admin-secret", "demo": "lab-demo-secret"}


def lab_inventory(lab: Lab) -> Inventory:
    """The cloud as Nova and Neutron would describe the lab's VMs (same ids, MACs, IPs)."""
    servers = [
        Server(
            name=vm.name,
            project=PROJECT_NAME,
            host=lab.host_of(vm).name,
            hypervisor_hostname=lab.host_of(vm).name,
            instance_name=vm.instance_name,
            user="demo",
            id=vm.server_id,
            ports=tuple(
                Port(
                    network="private",
                    mac=nic.mac,
                    ips=(nic.address,),
                    hybrid_plug=nic.plug is Plug.HYBRID,
                    id=nic.port_id,
                )
                for nic in vm.nics
            ),
        )
        for vm in lab.vms
    ]
    servers += [
        Server(
            name=g.name,
            project=g.project,
            status="ACTIVE" if g.state == "running" else "SHUTOFF",
            host=HOST,
            hypervisor_hostname=HOST,
            instance_name=g.instance_name,
            id=g.server_id,
            ports=(
                Port(
                    network="private",
                    mac=g.mac,
                    ips=(g.address,),
                    vnic_type="direct" if g.nic == "sriov" else "normal",
                    id=g.port_id,
                ),
            ),
        )
        for g in lab.ghosts
    ]
    return build_inventory(
        projects=[
            Project(PROJECT_NAME, lab.project_uuid(PROJECT_NAME)),
            Project(OTHER_PROJECT, lab.project_uuid(OTHER_PROJECT)),
            Project("admin", lab.project_uuid("admin")),
        ],
        users=[
            User("admin", _PASSWORDS["admin"], "admin", roles=("admin", "member")),
            User("demo", _PASSWORDS["demo"], PROJECT_NAME, id=lab.user_id),
        ],
        networks=[
            Network(
                "private",
                TENANT_NET,
                PROJECT_NAME,
                network_type="geneve" if lab.ovn else "vxlan",
                segmentation_id=1001,
                id=lab.network_id,
            )
        ],
        servers=servers,
    )


def start_cloud(lab: Lab, timeout: float = 15.0) -> int:
    """Start the stand-in on the management address (any free port), write clouds.yaml.

    Return the port. The stand-in listens on the root end of the management veth, which
    both the root namespace and the hypervisor namespace reach; clouds.yaml's auth_url
    names that address, and the catalog's endpoints follow the address the client used.
    """
    rd = lab.rundir
    inventory = rd / "cloud-inventory.json"
    port_file = rd / "cloud.port"
    save_inventory(lab_inventory(lab), inventory)
    with open(rd / "cloud.err", "wb") as err:
        # `setsid --fork` detaches the server like OVS's --detach: it outlives `lab up`, is
        # out of reach of the terminal's Ctrl-C, and is stopped by pidfile in `lab down`.
        subprocess.run(
            [
                "setsid", "--fork", sys.executable, "-m", "vmsniff.lab.cloud",
                "--inventory", str(inventory), "--host", lab.mgmt_root_ip, "--port", "0",
                "--port-file", str(port_file), "--pidfile", str(lab.pidfile("cloud")),
                "--log", str(rd / "cloud.log"),
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, check=True,
        )  # fmt: skip
    port = _wait_port(port_file, rd / "cloud.err", timeout)
    write_clouds_yaml(
        rd / "clouds.yaml", ADMIN_CLOUD, port, "admin", _PASSWORDS["admin"], "admin",
        host=lab.mgmt_root_ip, more=[(MEMBER_CLOUD, "demo", _PASSWORDS["demo"], PROJECT_NAME)],
    )  # fmt: skip
    return port


def _wait_port(port_file: Path, err: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(port_file.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.02)
    raise LabError(f"the stand-in cloud did not start: {err.read_text()[-2000:]}")
