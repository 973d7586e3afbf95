"""Human-readable rendering (rich tables) of library results; imported only when needed."""

from __future__ import annotations

from typing import Any

from vmsniff.cli._context import Env, plain

__all__ = ["lab_status_table", "sessions_table", "target_table", "traffic_table"]


def lab_status_table(env: Env, data: dict[str, Any]) -> None:
    """The lab's topology as a few compact tables."""
    from rich.table import Table

    colour = {"running": "green", "absent": "dim"}.get(data["status"], "yellow")
    env.out.print(f"lab [bold]{data['prefix']}[/bold]: [{colour}]{data['status']}[/{colour}]")
    if data["status"] == "absent":
        env.out.print("  not running; start it with `vmsniff lab up`")
        return
    hv = data["hypervisor"]
    env.out.print(
        f"  hypervisor ns {hv['namespace']} (host {data['host']}), OVSDB {data['ovsdb']}\n"
        f"  tunnel IP {hv['tunnel_ip']} on br-phy, underlay MTU {hv['underlay_mtu']}; "
        f"receiver {data['receiver']['namespace']} at {data['receiver']['address']}\n"
        f"  libvirt {data['libvirt_uri']}"
    )
    table = Table(title="VMs (a row per NIC)", title_justify="left")
    for col in ("name", "instance", "nic", "address", "mac", "tap", "ovs port", "plug", "tag"):
        table.add_column(col)
    for vm in data["vms"]:
        for i, nic in enumerate(vm.get("nics") or [dict(vm, device="eth0")]):
            table.add_row(*map(plain, (
                vm["name"] if i == 0 else "", vm["instance_name"] if i == 0 else "",
                nic["device"], nic["address"], nic["mac"], nic["tap"], nic["ovs_port"],
                nic["plug"], str(nic["tag"]),
            )))  # fmt: skip
    env.out.print(table)
    daemons = Table(title="processes", title_justify="left")
    for col in ("daemon", "pid", "pidfile"):
        daemons.add_column(col)
    for name, info in hv["daemons"].items():
        daemons.add_row(name, str(info["pid"] or "-"), info["pidfile"])
    env.out.print(daemons)


def traffic_table(env: Env, result: dict[str, Any]) -> None:
    """What ``lab traffic`` sent and what came back."""
    from rich.table import Table

    table = Table(
        title=f"{result['from']['name']} ({result['from']['address']}) -> "
        f"{result['to']['name']} ({result['to']['address']})",
        title_justify="left",
    )
    for col in ("kind", "sent", "answered", "size"):
        table.add_column(col)
    sizes = {"icmp": "84 B IP", "udp": "128 B IP", "tcp": "200 B writes", "icmp_full": "1500 B IP"}
    for kind, counts in result["traffic"].items():
        ok = counts["replies"] == counts["sent"]
        answered = f"[{'green' if ok else 'red'}]{counts['replies']}[/]"
        table.add_row(kind, str(counts["sent"]), answered, sizes.get(kind, ""))
    env.out.print(table)


def target_table(env: Env, target: Any) -> None:
    """A resolved VM: identity, then one row per NIC, then warnings."""
    from rich.table import Table

    s = target.server
    where = "this host" if target.local else "another host"
    env.out.print(
        f"[bold]{plain(s.name)}[/bold]  {plain(s.id)}  {plain(s.status)}\n"
        + plain(
            f"  project {s.project_name or s.project_id or '?'}, host {s.host or '?'} ({where}), "
            f"domain {s.instance_name or '?'}\n"
            f"  sources: {', '.join(target.sources) or 'none'};  OVSDB {target.ovsdb or '-'}; "
            f"libvirt {target.libvirt_uri or '-'}"
        )
    )
    table = Table()
    for col in (
        "mac",
        "port",
        "network / ips",
        "tap",
        "ovs port",
        "bridge",
        "tag",
        "plug",
        "agreed",
    ):
        table.add_column(col)
    for nic in target.nics:
        net = nic.network_name or nic.network_id or "-"
        table.add_row(
            *map(
                plain,
                (
                    nic.mac,
                    nic.port_id or "-",
                    f"{net} {' '.join(nic.fixed_ips)}".strip(),
                    nic.tap or "-",
                    nic.ovs_port or "-",
                    nic.bridge or "-",
                    "-" if nic.tag is None else str(nic.tag),
                ),
            ),
            nic.plug.value if nic.plug.on_ovs else f"[red]{nic.plug.value}[/red]",
            "+".join(nic.sources) or "-",
        )
    env.out.print(table)
    for nic in target.nics:
        for note in nic.notes:
            env.out.print(f"  [dim]{plain(f'{nic.mac}: {note}')}[/dim]")
    for warning in target.warnings:
        env.warn(warning)


def sessions_table(env: Env, sessions: Any) -> None:
    """vmsniff's sessions on a switch; ``state`` says which are dead, expired or orphaned."""
    from rich.table import Table

    if not sessions:
        env.out.print("no vmsniff sessions on this switch")
        return
    table = Table()
    cols = ("session", "vm", "nic", "dir", "encap", "remote", "keys", "owner", "reason",
            "created", "expires", "packets", "bytes", "state")  # fmt: skip
    for col in cols:
        table.add_column(col)
    for s in sessions:
        d = s.to_dict()
        state = s.state  # orphaned, dead (its owner on this host is gone), expired, active
        if state == "active" and s.detached:
            state = "active (detached)"
        colour = {"active": "green", "active (detached)": "green", "dead": "red"}.get(
            state, "yellow"
        )
        table.add_row(
            *map(plain, (
                s.id[:8], s.vm, s.nic, d["direction"], s.encap or "-", s.remote_ip or "-",
                ",".join(str(k) for k in s.keys.values()), s.owner, s.reason or "-",
                s.created or "-", s.expires or "-", str(s.packets), str(s.bytes),
            )),
            f"[{colour}]{state}[/{colour}]",
        )  # fmt: skip
    env.out.print(table)
    for s in sessions:
        for problem in s.problems:
            env.warn(f"session {s.id[:8]}: {problem}")


def flows_table(env: Env, result: Any) -> None:
    """``vmsniff flows``: one row per flow (originator first), then totals per protocol."""
    from rich.table import Table

    env.out.print(flow_rows(result))
    totals = Table(title="totals")
    for col in ("protocol", "flows", "packets", "bytes"):
        totals.add_column(col, justify="left" if col == "protocol" else "right")
    for name, t in result.totals.items():
        totals.add_row(plain(name), str(t["flows"]), str(t["packets"]), str(t["bytes"]))
    env.out.print(totals)
    if result.not_flows:
        env.warn(f"{result.not_flows} packets were cut short or malformed: in no flow")


def flow_rows(result: Any, caption: str | None = None) -> Any:
    """A :class:`~vmsniff.flows.report.Report`'s rows as a rich ``Table`` (``--flows`` draws
    it live as well as at the end)."""
    import time

    from rich.table import Table

    from vmsniff.flows.report import ends, protocol_name

    title = f"{result.flows} flows, {result.packets} packets"
    if len(result.rows) < result.flows:
        title += f" (showing {len(result.rows)})"
    table = Table(title=title, caption=None if caption is None else plain(caption))
    for col, right in (("proto", False), ("orig", False), ("resp", False), ("vlan", True),
                       ("net/key", True), ("pkts >", True), ("bytes >", True), ("pkts <", True),
                       ("bytes <", True), ("first", False), ("duration", True),
                       ("state", False), ("history", False)):  # fmt: skip
        table.add_column(col, justify="right" if right else "left")
    for f in result.rows:
        orig, resp = ends(f)
        sec, ns = divmod(f.first_ns, 1_000_000_000)
        first = time.strftime("%H:%M:%S", time.localtime(sec)) + f".{ns // 1000:06d}"
        table.add_row(*map(plain, (
            protocol_name(f), orig, resp, "-" if f.vlan is None else str(f.vlan),
            _net(f), str(f.orig_packets), str(f.orig_bytes),
            str(f.resp_packets), str(f.resp_bytes), first, f"{f.duration_ns / 1e9:.3f}",
            f.state, f.history or "-",
        )))  # fmt: skip
    return table


def _net(flow: Any) -> str:
    """The flow's overlay network (``vni 42``) and mirror keys (``key 100,101``), or ``-``."""
    parts = []
    if flow.vni is not None:
        parts.append(f"vni {flow.vni}")
    if flow.mirror_keys:
        parts.append("key " + ",".join(map(str, flow.mirror_keys)))
    return " ".join(parts) or "-"
