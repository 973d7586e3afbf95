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

A lab may have several hypervisors (``--hosts N``, :class:`Hypervisor`): ``compute-1`` keeps
every name the one-host lab always had (``PREFIX-hv``, ``/run/PREFIX``, 10.250.0.1), host
``compute-K`` lives in ``PREFIX-hvK`` with its run directory ``/run/PREFIX/compute-K``, its
own management veth (hash of prefix and K) and tunnel IP 10.250.0.(10+K); the hosts and the
receiver then share one underlay, a Linux bridge in ``PREFIX-ul``. VMs are spread over the
hosts in order. With ``ovn`` the same cloud runs on OVN: NB/SB databases and ovn-northd in
``/run/PREFIX/ovn`` (processes in the first hypervisor's namespace), an ovn-controller per
chassis, every NIC plugged straight into br-int with no local VLAN tag.
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
    "Hypervisor",
    "LabVm",
    "MAX_HOSTS",
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
HOST = "compute-1"  #: the (first) hypervisor's host name as Nova knows it
MAX_HOSTS = 8  #: ``lab down`` looks for this many hypervisors whatever the lab had
MAX_EXTRA_VMS = 60  #: ``--extra-vms`` (addresses 10.250.1.101-160; ``lab down`` looks for all)
EXTRA_INDEX = 16  #: c-extra-K is instance-(16+K): clear of the VMs' and the paper VMs' indexes
UNDERLAY_BRIDGE = "br-ul"  #: the Linux bridge of a multi-host underlay (in PREFIX-ul)
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


def _mgmt_digest(prefix: str, number: int) -> bytes:
    # Host 1 hashes what the one-host lab always hashed, so its /30 and device stay put.
    key = f"vmsniff-lab-mgmt/{prefix}" + (f"/{number}" if number > 1 else "")
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True, slots=True)
class Hypervisor:
    """One compute node of the lab: a namespace with its own ovsdb-server and ovs-vswitchd."""

    prefix: str
    number: int  #: 1..N; host 1 keeps the names of the one-host lab
    underlay_mtu: int = DEFAULT_UNDERLAY_MTU

    @property
    def name(self) -> str:
        """The host name as Nova reports it (``OS-EXT-SRV-ATTR:host``)."""
        return f"compute-{self.number}"

    @property
    def namespace(self) -> str:
        return f"{self.prefix}-hv" if self.number == 1 else f"{self.prefix}-hv{self.number}"

    @property
    def rundir(self) -> Path:
        """OVS's run directory for this host (OVS_RUNDIR: sockets, pidfiles, logs)."""
        base = RUN_ROOT / self.prefix
        return base if self.number == 1 else base / self.name

    @property
    def ovsdb_socket(self) -> Path:
        return self.rundir / "db.sock"

    @property
    def ovsdb_remote(self) -> str:
        return f"unix:{self.ovsdb_socket}"

    def pidfile(self, daemon: str) -> Path:
        return self.rundir / f"{daemon}.pid"

    @property
    def libvirt_xml(self) -> Path:
        return self.rundir / "libvirt-node.xml"

    @property
    def libvirt_uri(self) -> str:
        return f"test://{self.libvirt_xml}"

    @property
    def tunnel_ip(self) -> str:
        """The host's address on br-phy (underlay): .1 for host 1, .(10+K) for host K."""
        if self.number == 1:
            return TUNNEL_IP
        return str(ipaddress.ip_network(UNDERLAY_NET).network_address + 10 + self.number)

    @property
    def br_phy_mac(self) -> str:
        """br-phy's MAC on a multi-host underlay (set, so peers' ARP entries are known)."""
        return f"02:fa:00:00:00:{self.number:02x}"

    @property
    def underlay_port(self) -> str:
        """The underlay bridge's end of this host's phy0 veth (in PREFIX-ul)."""
        return f"hv{self.number}"

    @property
    def mgmt_net(self) -> str:
        """This host's management /30 (inside :data:`MGMT_BLOCK`)."""
        block = ipaddress.ip_network(MGMT_BLOCK)
        count = block.num_addresses >> (32 - MGMT_PREFIXLEN)
        index = int.from_bytes(_mgmt_digest(self.prefix, self.number)[:4], "big") % count
        base = block.network_address + (index << (32 - MGMT_PREFIXLEN))
        return f"{base}/{MGMT_PREFIXLEN}"

    @property
    def mgmt_root_ip(self) -> str:
        return str(ipaddress.ip_network(self.mgmt_net).network_address + 1)

    @property
    def mgmt_hv_ip(self) -> str:
        return str(ipaddress.ip_network(self.mgmt_net).network_address + 2)

    @property
    def mgmt_root_device(self) -> str:
        """Root-namespace end of the management veth: ``vmlab`` + 10 hex digits (15 chars)."""
        return "vmlab" + _mgmt_digest(self.prefix, self.number)[4:9].hex()[:10]


@dataclass(frozen=True, slots=True)
class Lab:
    """Everything that names the lab with a given prefix."""

    prefix: str
    underlay_mtu: int = DEFAULT_UNDERLAY_MTU
    hosts: int = 1  #: how many hypervisors (compute-1 ... compute-N)
    ovn: bool = False  #: plug into OVN (NB/SB, northd, ovn-controller) instead of ML2/OVS
    extra_vms: int = 0  #: ``--extra-vms N``: c-extra-1 ... c-extra-N, one native NIC each

    @property
    def hypervisors(self) -> list[Hypervisor]:
        return [Hypervisor(self.prefix, n, self.underlay_mtu) for n in range(1, self.hosts + 1)]

    def hypervisor(self, name: str) -> Hypervisor:
        """The hypervisor with this host name (``compute-2``); KeyError if there is none."""
        for hv in self.hypervisors:
            if hv.name == name:
                return hv
        raise KeyError(name)

    def host_of(self, vm: LabVm) -> Hypervisor:
        """Where a VM runs: the lab's VMs are dealt out over the hosts in order."""
        position = [v.name for v in self.vms].index(vm.name)
        return self.hypervisors[position % self.hosts]

    def vms_on(self, hv: Hypervisor) -> list[LabVm]:
        return [vm for vm in self.vms if self.host_of(vm).number == hv.number]

    @property
    def shared_underlay(self) -> bool:
        """True when the hosts and the receiver meet on a Linux bridge (PREFIX-ul)."""
        return self.hosts > 1

    @property
    def underlay_ns(self) -> str:
        return f"{self.prefix}-ul"

    @property
    def endpoints_config(self) -> Path:
        """vmsniff's config file (VMSNIFF_CONFIG) naming every host's OVSDB and libvirt."""
        return self.rundir / "vmsniff.toml"

    @property
    def ovn_rundir(self) -> Path:
        """NB and SB databases, their sockets, ovn-northd's pidfile and logs."""
        return self.rundir / "ovn"

    @property
    def ovn_nb_remote(self) -> str:
        return f"unix:{self.ovn_rundir / 'ovnnb_db.sock'}"

    @property
    def ovn_sb_remote(self) -> str:
        return f"unix:{self.ovn_rundir / 'ovnsb_db.sock'}"

    @property
    def logical_switch(self) -> str:
        """The tenant network's OVN logical switch, named as networking-ovn names it."""
        return f"neutron-{self.network_id}"

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
        """Every namespace of the lab, the VMs' first (they hang off the hypervisors)."""
        extra = [hv.namespace for hv in self.hypervisors[1:]]
        if self.shared_underlay:
            extra.append(self.underlay_ns)
        return [vm.namespace for vm in self.vms] + [self.hypervisor_ns, self.receiver_ns, *extra]

    @property
    def possible_namespaces(self) -> list[str]:
        """What ``lab down`` looks for: any lab of this prefix, whatever its ``--hosts`` and
        ``--extra-vms``."""
        more = [Hypervisor(self.prefix, n).namespace for n in range(2, MAX_HOSTS + 1)]
        extra = [f"{self.prefix}-c-extra-{k}" for k in range(1, MAX_EXTRA_VMS + 1)]
        return list(dict.fromkeys([*self.namespaces, *more, *extra, self.underlay_ns]))

    @property
    def mgmt_net(self) -> str:
        """The (first host's) management /30 (inside :data:`MGMT_BLOCK`)."""
        return self.hypervisors[0].mgmt_net

    @property
    def mgmt_root_ip(self) -> str:
        """Root-namespace end of the management veth: where the stand-in cloud listens."""
        return self.hypervisors[0].mgmt_root_ip

    @property
    def mgmt_hv_ip(self) -> str:
        """The hypervisor's management address (on :data:`MGMT_HV_DEVICE`)."""
        return self.hypervisors[0].mgmt_hv_ip

    @property
    def mgmt_root_device(self) -> str:
        """Root-namespace end of the management veth: ``vmlab`` + 10 hex digits (15 chars)."""
        return self.hypervisors[0].mgmt_root_device

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
            *(
                self._vm(f"c-extra-{k}", EXTRA_INDEX + k, (Plug.OVS, f"10.250.1.{100 + k}"))
                for k in range(1, self.extra_vms + 1)
            ),
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
            # OVN has no hybrid plug: os-vif puts every tap straight into br-int.
            nics=tuple(
                self._nic(name, i, Plug.OVS if self.ovn else plug, address)
                for i, (plug, address) in enumerate(nics)
            ),
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


def lab_for(
    prefix: str = DEFAULT_PREFIX,
    underlay_mtu: int = DEFAULT_UNDERLAY_MTU,
    *,
    hosts: int = 1,
    ovn: bool = False,
    extra_vms: int = 0,
) -> Lab:
    """The :class:`Lab` for ``prefix`` (validated)."""
    if not 1 <= hosts <= MAX_HOSTS:
        raise ValueError(f"a lab has 1 to {MAX_HOSTS} hosts, not {hosts}")
    if not 0 <= extra_vms <= MAX_EXTRA_VMS:
        raise ValueError(f"a lab has 0 to {MAX_EXTRA_VMS} extra VMs, not {extra_vms}")
    return Lab(prefix=validate_prefix(prefix), underlay_mtu=underlay_mtu, hosts=hosts, ovn=ovn,
               extra_vms=extra_vms)  # fmt: skip
