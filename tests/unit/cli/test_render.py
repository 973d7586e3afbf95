"""Rendering prints data as it is: no emoji codes, no markup from names tenants choose."""

from __future__ import annotations

import io

from vmsniff.cli._context import Env
from vmsniff.cli._render import sessions_table, target_table
from vmsniff.model import Nic, PlugKind, Server, Target
from vmsniff.ovs.sessions import Session

MAC = "fa:16:3e:cd:57:1b"  # ":cd:" is rich's CD emoji code
NAME = "web[/bold] [red]x :smile:"  # a VM name is whatever the tenant typed


def _env() -> tuple[Env, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Env(color="never", stdout=out, stderr=err), out, err


def test_target_table_prints_the_mac_and_the_name_as_they_are() -> None:
    env, out, _ = _env()
    nic = Nic(mac=MAC, tap="tap1", ovs_port="qvo1", bridge="br-int", plug=PlugKind.HYBRID)
    target_table(env, Target(server=Server(id="id-1", name=NAME), nics=(nic,), local=True))
    assert MAC in out.getvalue()
    assert NAME in out.getvalue()


def test_sessions_table_prints_reasons_as_they_are() -> None:
    env, out, _ = _env()
    session = Session("0123456789", vm=NAME, nic=MAC, reason="[/] ticket :cd:")
    sessions_table(env, [session])
    assert MAC in out.getvalue()
    assert "[/] ticket :cd:" in out.getvalue()


def test_info_and_warn_print_messages_as_they_are() -> None:
    env, _, err = _env()
    env.info(f"mirroring {NAME} {MAC}")
    env.warn(f"{NAME} [/yellow]")
    assert f"mirroring {NAME} {MAC}" in err.getvalue()
    assert f"warning: {NAME} [/yellow]" in err.getvalue()
