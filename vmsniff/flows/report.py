"""A flow table as rows, totals and JSON: sorting, ``--top``, names for protocols and ends."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from vmsniff.flows.table import Flow
from vmsniff.formats.ethernet import ETHERTYPE_NAMES
from vmsniff.formats.ip import IP_PROTOCOL_NAMES

__all__ = ["SORT_KEYS", "Report", "address", "protocol_name", "report"]

SORT_KEYS = ("bytes", "packets", "duration", "start")


def protocol_name(flow: Flow) -> str:
    """``TCP``, ``UDP``, ``ICMP``…, ``ARP`` or ``ethertype 0x88cc``."""
    if flow.ip:
        return IP_PROTOCOL_NAMES.get(flow.proto, f"proto {flow.proto}")
    return ETHERTYPE_NAMES.get(flow.proto, f"ethertype 0x{flow.proto:04x}")


def address(raw: bytes) -> str:
    """An IPv4/IPv6 address, or a MAC address for a non-IP flow."""
    if len(raw) in (4, 16):
        return str(ipaddress.ip_address(raw))
    return raw.hex(":")


def _end(raw: bytes, port: int, flow: Flow) -> str:
    host = address(raw)
    if not flow.ip or flow.proto not in (6, 17, 132):
        return host
    return f"[{host}]:{port}" if len(raw) == 16 else f"{host}:{port}"


@dataclass
class Report:
    """The rows (sorted, cut to ``top``), totals per protocol, and counts of the input."""

    rows: list[Flow]
    flows: int
    packets: int
    not_flows: int
    totals: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The ``--json`` document (docs/flows.md)."""
        return {
            "flows": self.flows,
            "packets": self.packets,
            "not_flows": self.not_flows,
            "totals": self.totals,
            "rows": [row_dict(f) for f in self.rows],
        }


def row_dict(flow: Flow) -> dict[str, object]:
    """One flow as JSON: ends, counts each way, times in nanoseconds, Zeek's state/history."""
    icmp = flow.ip and flow.proto in (1, 58)
    return {
        "protocol": protocol_name(flow),
        "orig": address(flow.orig),
        "orig_port": flow.orig_port if flow.ip and not icmp else None,
        "resp": address(flow.resp),
        "resp_port": flow.resp_port if flow.ip and not icmp else None,
        "icmp_id": flow.orig_port if icmp else None,
        "vlan": flow.vlan,
        "vni": flow.vni,
        "mirror_keys": list(flow.mirror_keys),
        "orig_packets": flow.orig_packets,
        "orig_bytes": flow.orig_bytes,
        "resp_packets": flow.resp_packets,
        "resp_bytes": flow.resp_bytes,
        "first_ns": flow.first_ns,
        "last_ns": flow.last_ns,
        "duration_s": flow.duration_ns / 1e9,
        "conn_state": flow.state,
        "history": flow.history,
    }


def ends(flow: Flow) -> tuple[str, str]:
    """The two ends as printed: ``addr:port`` for TCP/UDP/SCTP, the address otherwise."""
    return _end(flow.orig, flow.orig_port, flow), _end(flow.resp, flow.resp_port, flow)


def report(
    flows: Iterable[Flow],
    *,
    packets: int,
    not_flows: int,
    sort: str = "bytes",
    top: int | None = None,
) -> Report:
    """Sort by ``sort`` (largest first; ``start``: earliest first), keep the first ``top``."""
    rows = list(flows)
    totals: dict[str, dict[str, int]] = {}
    for f in rows:
        t = totals.setdefault(protocol_name(f), {"flows": 0, "packets": 0, "bytes": 0})
        t["flows"] += 1
        t["packets"] += f.packets
        t["bytes"] += f.bytes
    order = {
        "bytes": lambda f: -f.bytes,
        "packets": lambda f: -f.packets,
        "duration": lambda f: -f.duration_ns,
        "start": lambda f: f.first_ns,
    }[sort]
    rows.sort(key=order)
    count = len(rows)
    if top is not None:
        rows = rows[:top]
    return Report(rows, count, packets, not_flows, dict(sorted(totals.items())))
