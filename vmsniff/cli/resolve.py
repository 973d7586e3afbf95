"""``vmsniff resolve``: VM -> host, libvirt domain, tap, OVS port, bridge."""

from __future__ import annotations

from typing import Any

import click

from vmsniff.cli._context import Env
from vmsniff.cli._options import json_option, resolve_options, resolve_options_from


@click.command()
@click.argument("vm")
@resolve_options
@json_option
@click.pass_obj
def resolve(env: Env, /, vm: str, as_json: bool, **kwargs: Any) -> None:
    """Find where VM runs: host, libvirt domain, and per NIC its tap, OVS port and bridge.

    VM is a display name or a server UUID. With a cloud configured (clouds.yaml and
    OS_CLOUD or --os-cloud) Nova and Neutron are asked first; without one (or with
    --offline) the Nova metadata in libvirt's domain XML names the VM on this host.
    OVSDB's Interface external_ids (iface-id, attached-mac) give the OVS port.
    """
    from vmsniff.cli._render import target_table
    from vmsniff.resolve import resolve as do_resolve

    target = do_resolve(resolve_options_from(vm, kwargs))
    if as_json:
        env.json(target.to_dict())
        return
    target_table(env, target)
