"""Namespaces, veth pairs, Linux bridges and addresses of the lab, through pyroute2.

A ``namespace`` of None means the root namespace: the lab puts exactly one device there,
its management veth end (see :mod:`vmsniff.lab.topology`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vmsniff.lab._run import LabError, run, run_in

__all__ = [
    "add_address",
    "add_bridge",
    "add_route",
    "addresses",
    "create_namespace",
    "existing_namespaces",
    "link_info",
    "remove_link",
    "remove_namespace",
    "set_link",
    "source_route",
    "sysctl",
    "veth",
]

#: linux/if_addr.h: an address without the kernel's connected route to its subnet.
_IFA_F_NOPREFIXROUTE = 0x200
_RT_SCOPE_LINK = 253


def existing_namespaces() -> set[str]:
    """Names of the network namespaces that exist now (``ip netns list``)."""
    from pyroute2 import netns

    return set(netns.listnetns())


def create_namespace(name: str) -> None:
    """Create a namespace with loopback up and IPv6 off.

    IPv6 is off so that the kernel's own router solicitations and MLD reports do not mix
    with the traffic tests count; the lab is IPv4 only.
    """
    from pyroute2 import netns

    netns.create(name)
    sysctl(name, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
    with _ns(name) as ipr:
        ipr.link("set", index=_index(ipr, "lo"), state="up")


def sysctl(namespace: str | None, *settings: str) -> None:
    """Set ``key=value`` kernel settings inside a namespace (None: the root namespace)."""
    argv = ["sysctl", "-qw", *settings]
    if namespace is None:
        run(argv)
    else:
        run_in(namespace, argv)


def remove_namespace(name: str) -> bool:
    """Remove a namespace if it exists (its veths go with it). True if it existed."""
    from pyroute2 import netns

    if name not in existing_namespaces():
        return False
    netns.remove(name)
    return True


@contextmanager
def _ns(name: str | None) -> Iterator[Any]:
    from pyroute2 import IPRoute, NetNS

    try:
        ipr = IPRoute() if name is None else NetNS(name)
    except OSError as exc:
        raise LabError(f"cannot open network namespace {name}: {exc}") from exc
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: Any, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"device {ifname} not found")
    return int(found[0])


def veth(namespace: str | None, name: str, peer_namespace: str, peer: str) -> None:
    """Create a veth pair: ``name`` in ``namespace``, ``peer`` in ``peer_namespace``."""
    with _ns(namespace) as ipr:
        peer_spec: dict[str, Any] = {"ifname": peer}
        if peer_namespace != namespace:
            peer_spec["net_ns_fd"] = peer_namespace
        ipr.link("add", ifname=name, kind="veth", peer=peer_spec)


def add_bridge(namespace: str, name: str) -> None:
    """Create a Linux bridge (the hybrid plug's ``qbr``)."""
    with _ns(namespace) as ipr:
        ipr.link("add", ifname=name, kind="bridge")


def set_link(
    namespace: str | None,
    name: str,
    *,
    up: bool = True,
    mtu: int | None = None,
    mac: str | None = None,
    master: str | None = None,
) -> None:
    """Set a device's MTU, MAC, bridge master and state."""
    with _ns(namespace) as ipr:
        index = _index(ipr, name)
        changes: dict[str, Any] = {}
        if mtu is not None:
            changes["mtu"] = mtu
        if mac is not None:
            changes["address"] = mac
        if master is not None:
            changes["master"] = _index(ipr, master)
        if changes:
            ipr.link("set", index=index, **changes)
        ipr.link("set", index=index, state="up" if up else "down")


def add_address(
    namespace: str | None, name: str, address: str, prefixlen: int, *, prefix_route: bool = True
) -> None:
    """Add an IPv4 address to a device; without ``prefix_route``, the kernel adds no route to
    its subnet (``ip addr add … noprefixroute``)."""
    flags = {} if prefix_route else {"IFA_FLAGS": _IFA_F_NOPREFIXROUTE}
    with _ns(namespace) as ipr:
        ipr.addr("add", index=_index(ipr, name), address=address, prefixlen=prefixlen, **flags)


def add_route(namespace: str, destination: str, gateway: str) -> None:
    """Route ``destination`` (``a.b.c.d/len``) via ``gateway`` in a namespace."""
    with _ns(namespace) as ipr:
        ipr.route("add", dst=destination, gateway=gateway)


def source_route(namespace: str, name: str, address: str, subnet: str, table: int) -> None:
    """Send what leaves from ``address`` out of device ``name``: ``subnet`` on-link in its
    own routing ``table``, and the rule ``from ADDRESS lookup TABLE`` (priority ``table``)."""
    with _ns(namespace) as ipr:
        ipr.route(
            "add", dst=subnet, oif=_index(ipr, name), prefsrc=address, table=table,
            scope=_RT_SCOPE_LINK,
        )  # fmt: skip
        ipr.rule("add", src=address, src_len=32, table=table, priority=table)


def link_info(namespace: str | None, name: str) -> dict[str, Any]:
    """MAC, MTU, state and addresses of a device (for ``lab status``)."""
    with _ns(namespace) as ipr:
        index = _index(ipr, name)
        link = ipr.get_links(index)[0]
        addrs = [
            f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(index=index)
            if a.get("IFA_ADDRESS")
        ]
        return {
            "mac": link.get("IFLA_ADDRESS"),
            "mtu": link.get("IFLA_MTU"),
            "state": link.get("IFLA_OPERSTATE"),
            "addresses": addrs,
        }


def remove_link(namespace: str | None, name: str) -> bool:
    """Delete a device if it exists (a veth takes its peer along). True if it existed."""
    with _ns(namespace) as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return False
        ipr.link("del", index=found[0])
        return True


def addresses(namespace: str | None) -> list[tuple[str, str]]:
    """Every IPv4 address of a namespace as (device, ``address/prefixlen``)."""
    with _ns(namespace) as ipr:
        names = {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}
        return [
            (str(names.get(a["index"])), f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
            for a in ipr.get_addr(family=2)
            if a.get("IFA_ADDRESS")
        ]


#: Offloads that let a veth hand half-finished packets (no checksum, 64 KiB TCP segments)
#: to whoever reads it. OVS's userspace datapath reads the VM ports through packet sockets
#: and forwards what it got as is, so the peer drops TCP/UDP with bad checksums (seen in
#: the lab: UDP and TCP between VMs timed out while ICMP worked). A real NIC of a VM does
#: the same work in its own driver; here the sending side must finish its packets.
_OFFLOADS = (
    "tx-checksum-ip-generic",
    "tx-checksum-ipv4",
    "tx-checksum-ipv6",
    "tx-checksum-sctp",
    "tx-tcp-segmentation",
    "tx-tcp6-segmentation",
    "tx-generic-segmentation",
    "tx-udp-segmentation",
    "rx-gro",
)


def disable_offloads(namespace: str, name: str) -> None:
    """Turn off checksum and segmentation offloads on a device (see ``_OFFLOADS``)."""
    from pyroute2 import netns
    from pyroute2.ethtool import Ethtool

    netns.pushns(namespace)
    try:
        ethtool = Ethtool()
        try:
            features = ethtool.get_features(name)
            for feature in _OFFLOADS:
                if feature in features.features:
                    features.features[feature].enable = False
            ethtool.set_features(name, features)
        finally:
            ethtool.close()
    finally:
        netns.popns()
