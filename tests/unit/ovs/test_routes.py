"""ovs-vswitchd's route table: this host's own addresses and subnet broadcasts are refused."""

from __future__ import annotations

from vmsniff.ovs.routes import parse_routes, unusable_receivers

# `ovs-appctl ovs/route/show` of the lab's hypervisor (userspace datapath), plus a gateway
# route and an IPv6 one as the kernel datapath's table shows them.
SHOW = """Route Table:
User: 10.250.0.2/32 dev br-phy SRC 10.250.0.1
Cached: 10.250.0.1/32 dev br-phy SRC 10.250.0.1 local
Cached: 10.250.243.50/32 dev mgmt0 SRC 10.250.243.50 local
Cached: 127.0.0.1/32 dev lo SRC 127.0.0.1 local
Cached: 127.0.0.0/8 dev lo SRC 127.0.0.1 local
Cached: 10.250.243.48/30 dev mgmt0 SRC 10.250.243.50
Cached: 10.250.0.0/24 dev br-phy SRC 10.250.0.1
Cached: 0.0.0.0/0 dev eth0 GW 192.0.2.1 SRC 192.0.2.7
Cached: 2001:db8::/64 dev eth0 SRC 2001:db8::7
garbage line
"""


def test_parse_routes_reads_every_route_line() -> None:
    routes = parse_routes(SHOW)
    assert len(routes) == 9
    default = [r for r in routes if r.gateway][0]
    assert (str(default.network), default.dev, default.gateway, default.src, default.local) == (
        "0.0.0.0/0", "eth0", "192.0.2.1", "192.0.2.7", False,
    )  # fmt: skip
    assert [r.local for r in routes[:3]] == [False, True, True]


def test_own_addresses_and_connected_broadcasts_are_refused() -> None:
    refused = unusable_receivers(parse_routes(SHOW))
    assert "an address of this hypervisor (br-phy" in refused["10.250.0.1"]
    assert "10.250.243.50" in refused
    assert "broadcast address of 10.250.0.0/24" in refused["10.250.0.255"]
    assert "10.250.243.51" in refused  # the /30's broadcast
    # receivers, gateways' networks and IPv6 (no broadcast) stay allowed
    for fine in ("10.250.0.2", "10.250.0.3", "192.0.2.255", "2001:db8::ffff"):
        assert fine not in refused


def test_nothing_is_refused_without_a_table() -> None:
    assert unusable_receivers(parse_routes("")) == {}
