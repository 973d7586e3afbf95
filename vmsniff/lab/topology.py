"""The lab's topology as data: every name, address and identifier, computed from the prefix.

Pure: nothing here touches the system. :mod:`vmsniff.lab.build` creates what this
describes and :mod:`vmsniff.lab.teardown` removes it, both from the same :class:`Lab`, so
that ``lab down`` knows every name even after a ``lab up`` that crashed half-way.

Naming follows os-vif: a device name is a prefix (``tap``, ``qbr``, ``qvb``, ``qvo``) plus
the first 11 characters of the Neutron port UUID, 14 characters in all (Linux allows 15).
Every host-side device lives inside the lab's own hypervisor namespace, so two labs with
different prefixes never collide; only namespaces and the run directory carry the prefix.

The one exception is the management network: a veth from the root namespace into the
hypervisor namespace, as a compute node has a management NIC on which it reaches the
cloud's APIs. Its root-side name and its /30 are derived from a hash of the prefix, so that
labs side by side get their own (``lab up`` refuses a collision), and ``lab down`` finds it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = [
    "DEFAULT_PREFIX",
    "GhostVm",
    "Lab",
    "LabNic",
    "LabVm",
    "Plug",
    "lab_for",
    "validate_prefix",
]

DEFAULT_PREFIX = "vmsniff-lab"
RUN_ROOT = Path("/run")
#: Every address the lab uses lies in this block, inside the lab's own namespaces.
LAB_BLOCK = "10.250.0.0/16"
UNDERLAY_NET = "10.250.0.0/24"
TENANT_NET = "10.250.1.0/24"
TENANT_PREFIXLEN = 24
UNDERLAY_PREFIXLEN = 24
TUNNEL_IP = "10.250.0.1"  #: on br-phy in the hypervisor namespace
#: Management networks (one /30 per lab, picked by the prefix's hash) live in this block,
#: apart from the underlay (10.250.0.0/24) and the tenant network (10.250.1.0/24).
MGMT_BLOCK = "10.250.128.0/17"
MGMT_PREFIXLEN = 30
MGMT_HV_DEVICE = "mgmt0"  #: the management NIC inside the hypervisor namespace
RECEIVER_IP = "10.250.0.2"  #: eth0 of the receiver namespace
LOCAL_VLAN = 1  #: the bridge-local tag the Neutron OVS agent gives the tenant network
VM_MTU = 1500
DEFAULT_UNDERLAY_MTU = 9000  #: jumbo, as tunnel networks in production usually are
HOST = "compute-1"  #: the hypervisor's host name as Nova knows it
PROJECT_NAME = "demo"
OTHER_PROJECT = "ops"
USER_NAME = "demo"

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,23}$")


class Plug(StrEnum):
    """How a VM's tap is wired to br-int (as os-vif plugs it)."""

    HYBRID = "hybrid"  #: tap -> qbr Linux bridge -> qvb/qvo veth -> qvo on br-int
    OVS = "ovs"  #: tap directly on br-int (OVS firewall driver, ML2/OVS native)


@dataclass(frozen=True, slots=True)
class LabNic:
    """One NIC of a lab VM: its Neutron port, and the devices os-vif makes for it."""

    port_id: str
    mac: str
    address: str  #: tenant IPv4 address (no prefix length)
    plug: Plug
    device: str  #: the guest side, inside the VM namespace: ``eth0``, ``eth1``, ...
    table: int  #: routing table (and rule priority) of the NIC's source route in the VM

    @property
    def _suffix(self) -> str:
        return self.port_id[:11]

    @property
    def tap(self) -> str:
        """Host side of the NIC (the guest side is :attr:`device` in the VM namespace)."""
        return f"tap{self._suffix}"

    @property
    def qbr(self) -> str | None:
        """Linux bridge of the hybrid plug, None for a native OVS plug."""
        return f"qbr{self._suffix}" if self.plug is Plug.HYBRID else None

    @property
    def qvb(self) -> str | None:
        """The veth end inside qbr (hybrid plug only)."""
        return f"qvb{self._suffix}" if self.plug is Plug.HYBRID else None

    @property
    def ovs_port(self) -> str:
        """The port on br-int: ``qvo…`` for hybrid, the tap itself for native OVS."""
        return f"qvo{self._suffix}" if self.plug is Plug.HYBRID else self.tap


@dataclass(frozen=True, slots=True)
class LabVm:
    """One lab VM: a network namespace standing in for the guest, plugged like Nova does.

    ``nics`` holds at least one NIC; the first is the primary one, and the single-NIC
    properties (``port_id``, ``mac``, ``address``, ``plug``, ``tap``, ...) are its.
    """

    name: str  #: Nova display name
    index: int  #: instance-0000000N
    server_id: str
    namespace: str
    nics: tuple[LabNic, ...]

    @property
    def instance_name(self) -> str:
        """libvirt domain name, as Nova's default ``instance_name_template`` makes it."""
        return f"instance-{self.index:08x}"

    @property
    def primary(self) -> LabNic:
        return self.nics[0]

    @property
    def plug(self) -> Plug:
        return self.primary.plug

    @property
    def port_id(self) -> str:
        return self.primary.port_id

    @property
    def mac(self) -> str:
        return self.primary.mac

    @property
    def address(self) -> str:
        return self.primary.address

    @property
    def tap(self) -> str:
        return self.primary.tap

    @property
    def qbr(self) -> str | None:
        return self.primary.qbr

    @property
    def qvb(self) -> str | None:
        return self.primary.qvb

    @property
    def ovs_port(self) -> str:
        return self.primary.ovs_port


@dataclass(frozen=True, slots=True)
class GhostVm:
    """A VM that exists only on paper (libvirt XML and the stand-in cloud), with no namespace.

    The lab uses these to exercise what resolve must refuse or explain: a VM that is not
    running, a NIC that is not on OVS (SR-IOV), two VMs with the same name.
    """

    name: str
    index: int
    server_id: str
    port_id: str
    mac: str
    address: str
    state: str  #: libvirt state: running or shutoff
    nic: str  #: "ovs" (tap on br-int, not plugged) or "sriov" (PCI passthrough)
    project: str

    @property
    def instance_name(self) -> str:
        return f"instance-{self.index:08x}"

    @property
    def tap(self) -> str:
        return f"tap{self.port_id[:11]}"


@dataclass(frozen=True, slots=True)
class Lab:
    """Everything that names the lab with a given prefix."""

    prefix: str
    underlay_mtu: int = DEFAULT_UNDERLAY_MTU

    @property
    def rundir(self) -> Path:
        """Run directory: OVS database, sockets, pidfiles, logs, libvirt XML, state."""
        return RUN_ROOT / self.prefix

    @property
    def hypervisor_ns(self) -> str:
        return f"{self.prefix}-hv"

    @property
    def receiver_ns(self) -> str:
        return f"{self.prefix}-rx"

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of the lab, the VMs' first (they hang off the hypervisor)."""
        return [vm.namespace for vm in self.vms] + [self.hypervisor_ns, self.receiver_ns]

    @property
    def _mgmt_digest(self) -> bytes:
        return hashlib.sha256(f"vmsniff-lab-mgmt/{self.prefix}".encode()).digest()

    @property
    def mgmt_net(self) -> str:
        """The lab's management /30 (inside :data:`MGMT_BLOCK`)."""
        block = ipaddress.ip_network(MGMT_BLOCK)
        count = block.num_addresses >> (32 - MGMT_PREFIXLEN)
        index = int.from_bytes(self._mgmt_digest[:4], "big") % count
        base = block.network_address + (index << (32 - MGMT_PREFIXLEN))
        return f"{base}/{MGMT_PREFIXLEN}"

    @property
    def mgmt_root_ip(self) -> str:
        """Root-namespace end of the management veth: where the stand-in cloud listens."""
        return str(ipaddress.ip_network(self.mgmt_net).network_address + 1)

    @property
    def mgmt_hv_ip(self) -> str:
        """The hypervisor's management address (on :data:`MGMT_HV_DEVICE`)."""
        return str(ipaddress.ip_network(self.mgmt_net).network_address + 2)

    @property
    def mgmt_root_device(self) -> str:
        """Root-namespace end of the management veth: ``vmlab`` + 10 hex digits (15 chars)."""
        return "vmlab" + self._mgmt_digest[4:9].hex()[:10]

    @property
    def ovsdb_socket(self) -> Path:
        return self.rundir / "db.sock"

    @property
    def ovsdb_remote(self) -> str:
        """The OVSDB remote for ovs-vsctl ``--db`` and for vmsniff."""
        return f"unix:{self.ovsdb_socket}"

    @property
    def libvirt_xml(self) -> Path:
        return self.rundir / "libvirt-node.xml"

    @property
    def libvirt_uri(self) -> str:
        """libvirt's built-in test driver loading the lab's Nova-style domain XML."""
        return f"test://{self.libvirt_xml}"

    @property
    def state_file(self) -> Path:
        return self.rundir / "lab.json"

    def pidfile(self, daemon: str) -> Path:
        return self.rundir / f"{daemon}.pid"

    @property
    def project_id(self) -> str:
        return self.project_uuid(PROJECT_NAME)

    def project_uuid(self, project: str) -> str:
        """Keystone-style (32 hex digits) id of a lab project."""
        return _uuid(self.prefix, "project", project).hex

    @property
    def user_id(self) -> str:
        return _uuid(self.prefix, "user").hex

    @property
    def network_id(self) -> str:
        return str(_uuid(self.prefix, "network"))

    @property
    def vms(self) -> list[LabVm]:
        """The lab's VMs: ``c-private`` plugged the hybrid way, ``c-native`` natively, and
        ``c-multi`` with two NICs on the tenant network (eth0 native, eth1 hybrid)."""
        return [
            self._vm("c-private", 1, (Plug.HYBRID, "10.250.1.11")),
            self._vm("c-native", 2, (Plug.OVS, "10.250.1.12")),
            self._vm("c-multi", 7, (Plug.OVS, "10.250.1.17"), (Plug.HYBRID, "10.250.1.18")),
        ]

    @property
    def ghosts(self) -> list[GhostVm]:
        """Paper-only VMs: ``c-stopped`` (SHUTOFF), ``c-sriov`` (SR-IOV NIC), two ``c-twin``."""
        return [
            self._ghost("c-stopped", 3, "shutoff", "ovs", PROJECT_NAME, "10.250.1.13"),
            self._ghost("c-sriov", 4, "running", "sriov", PROJECT_NAME, "10.250.1.14"),
            self._ghost("c-twin", 5, "running", "ovs", PROJECT_NAME, "10.250.1.15"),
            self._ghost("c-twin", 6, "running", "ovs", OTHER_PROJECT, "10.250.1.16"),
        ]

    def _ghost(
        self, name: str, index: int, state: str, nic: str, project: str, address: str
    ) -> GhostVm:
        key = f"{name}/{index}"
        digest = hashlib.sha256(f"{self.prefix}/{key}/mac".encode()).digest()
        return GhostVm(
            name=name,
            index=index,
            server_id=str(_uuid(self.prefix, key, "server")),
            port_id=str(_uuid(self.prefix, key, "port")),
            mac="fa:16:3e:" + ":".join(f"{b:02x}" for b in digest[:3]),
            address=address,
            state=state,
            nic=nic,
            project=project,
        )

    def vm(self, name: str) -> LabVm:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise KeyError(name)

    def _vm(self, name: str, index: int, *nics: tuple[Plug, str]) -> LabVm:
        return LabVm(
            name=name,
            index=index,
            server_id=str(_uuid(self.prefix, name, "server")),
            namespace=f"{self.prefix}-{name}",
            nics=tuple(self._nic(name, i, plug, address) for i, (plug, address) in enumerate(nics)),
        )

    def _nic(self, vm: str, i: int, plug: Plug, address: str) -> LabNic:
        # The first NIC keeps the ids the single-NIC lab always had.
        key = vm if i == 0 else f"{vm}/nic{i}"
        digest = hashlib.sha256(f"{self.prefix}/{key}/mac".encode()).digest()
        return LabNic(
            port_id=str(_uuid(self.prefix, key, "port")),
            mac="fa:16:3e:" + ":".join(f"{b:02x}" for b in digest[:3]),
            address=address,
            plug=plug,
            device=f"eth{i}",
            table=100 + i,
        )


def _uuid(*parts: str) -> uuid.UUID:
    # Deterministic per prefix, so that `lab down` and the tests can recompute every id.
    return uuid.uuid5(uuid.NAMESPACE_URL, "vmsniff-lab:" + "/".join(parts))


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can name namespaces and a run directory, else raise ValueError."""
    if not _PREFIX_RE.match(prefix):
        raise ValueError(
            f"lab prefix {prefix!r} must be 1-24 characters of a-z, 0-9 and '-', "
            "starting with a letter"
        )
    return prefix


def lab_for(prefix: str = DEFAULT_PREFIX, underlay_mtu: int = DEFAULT_UNDERLAY_MTU) -> Lab:
    """The :class:`Lab` for ``prefix`` (validated)."""
    return Lab(prefix=validate_prefix(prefix), underlay_mtu=underlay_mtu)
