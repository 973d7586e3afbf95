"""Which OVSDB and libvirt serve a given compute host: one place, one order of precedence.

flags > environment > config file > defaults. The environment (``VMSNIFF_OVSDB``,
``LIBVIRT_DEFAULT_URI``) and the defaults (``unix:/var/run/openvswitch/db.sock``,
``qemu:///system``) describe *this* machine, so they apply only when the VM's host is the
local one; a remote host needs a flag, a per-host entry or a template in the config file.
Asking the local switch about a VM on another host would give wrong answers, so vmsniff
refuses to guess.

Config file (``$VMSNIFF_CONFIG``, else ``~/.config/vmsniff/config.toml``, else
``/etc/vmsniff/config.toml``; one that exists but cannot be read is an error, never
skipped)::

    host = "compute-1"                    # this machine's name as Nova knows it
    [endpoints]                           # templates for other hosts
    ovsdb = "tcp:{host}:6640"
    libvirt = "qemu+ssh://{host}/system"
    [hosts."compute-2"]                   # per-host entries win over templates
    ovsdb = "ssl:192.0.2.12:6640"
    [ovn]                                 # an ML2/OVN cloud's Northbound database
    nb = "ssl:192.0.2.5:6641"
    [ssl]                                 # for every ssl: remote (as ovs-vsctl's options)
    private_key = "/etc/vmsniff/key.pem"
    certificate = "/etc/vmsniff/cert.pem"
    ca_cert = "/etc/vmsniff/cacert.pem"
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmsniff.errors import PermissionDenied, UsageError

__all__ = [
    "DEFAULT_LIBVIRT",
    "DEFAULT_OVSDB",
    "Endpoints",
    "config_paths",
    "endpoints_for",
    "load_config",
    "local_host",
    "SslFiles",
    "ovn_nb_endpoint",
    "ssl_files",
]

DEFAULT_OVSDB = "unix:/var/run/openvswitch/db.sock"
DEFAULT_LIBVIRT = "qemu:///system"


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where to reach one host's OVSDB and libvirt, and where each answer came from."""

    host: str
    local: bool
    ovsdb: str | None
    libvirt: str | None
    ovsdb_origin: str
    libvirt_origin: str


def config_paths(env: Mapping[str, str] = os.environ) -> list[Path]:
    """Candidate config files, first match wins."""
    if env.get("VMSNIFF_CONFIG"):
        return [Path(env["VMSNIFF_CONFIG"])]
    try:
        home = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    except (RuntimeError, KeyError):  # no HOME and no passwd entry (a bare uid): no user file
        return [Path("/etc/vmsniff/config.toml")]
    return [home / "vmsniff" / "config.toml", Path("/etc/vmsniff/config.toml")]


def load_config(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The parsed config file, or {} when there is none.

    A file that exists but cannot be read is an error naming it, never skipped: skipping
    ``~/.config/vmsniff/config.toml`` for ``/etc/vmsniff/config.toml`` would quietly point
    vmsniff at other endpoints. Permission problems (the file, or a directory on its way,
    belongs to another user) are PermissionDenied (exit 7).
    """
    explicit = bool(env.get("VMSNIFF_CONFIG"))
    for path in config_paths(env):
        origin = f"config file {path}" + (" ($VMSNIFF_CONFIG)" if explicit else "")
        try:
            with path.open("rb") as fh:
                return tomllib.load(fh)
        except (FileNotFoundError, NotADirectoryError):
            continue  # no file there (also for $VMSNIFF_CONFIG: tests point it nowhere)
        except PermissionError:
            raise PermissionDenied(
                f"cannot read {origin}: permission denied",
                hint="run vmsniff as the user the file belongs to (or root), make it "
                "readable, or point VMSNIFF_CONFIG at a readable file",
            ) from None
        except IsADirectoryError:
            raise UsageError(f"{origin} is a directory", hint="remove it or fix its path") from None
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(
                f"cannot read {origin}: {exc}", hint="fix or remove the file"
            ) from None
    return {}


def local_host(env: Mapping[str, str] = os.environ, config: Mapping[str, Any] | None = None) -> str:
    """This machine's compute host name: VMSNIFF_HOST > config ``host`` > hostname."""
    if env.get("VMSNIFF_HOST"):
        return env["VMSNIFF_HOST"]
    config = load_config(env) if config is None else config
    if isinstance(config.get("host"), str):
        return str(config["host"])
    return socket.gethostname()


def _is_local(host: str, me: str) -> bool:
    return host == me or host.split(".")[0] == me.split(".")[0]


def _template(value: object, host: str, what: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"config: {what} must be a string")
    try:
        return value.format(host=host)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(f"config: bad template for {what}: {value!r} ({exc})") from None


def endpoints_for(
    host: str | None,
    *,
    ovsdb_flag: str | None = None,
    libvirt_flag: str | None = None,
    env: Mapping[str, str] = os.environ,
    config: Mapping[str, Any] | None = None,
) -> Endpoints:
    """Resolve the endpoints for ``host`` (None = this machine)."""
    config = load_config(env) if config is None else config
    me = local_host(env, config)
    target = host or me
    local = _is_local(target, me)
    hosts = config.get("hosts", {})
    per_host = hosts.get(target, {}) if isinstance(hosts, dict) else {}
    templates = config.get("endpoints", {})

    def pick(flag: str | None, env_key: str, key: str, default: str) -> tuple[str | None, str]:
        if flag:
            return flag, "flag"
        if local and env.get(env_key):
            return env[env_key], f"environment {env_key}"
        if key in per_host:
            return _template(per_host[key], target, f"hosts.{target}.{key}"), "config host entry"
        if not local and isinstance(templates, dict) and key in templates:
            return _template(templates[key], target, f"endpoints.{key}"), "config template"
        if local:
            return default, "default"
        return None, "none configured"

    ovsdb, ovsdb_origin = pick(ovsdb_flag, "VMSNIFF_OVSDB", "ovsdb", DEFAULT_OVSDB)
    libvirt, libvirt_origin = pick(libvirt_flag, "LIBVIRT_DEFAULT_URI", "libvirt", DEFAULT_LIBVIRT)
    return Endpoints(target, local, ovsdb, libvirt, ovsdb_origin, libvirt_origin)


def ovn_nb_endpoint(
    flag: str | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    config: Mapping[str, Any] | None = None,
) -> tuple[str | None, str]:
    """The OVN Northbound database of the cloud, and where that answer came from.

    ``--ovn-nb`` > ``OVN_NB_DB`` (what ``ovn-nbctl`` reads) > config ``[ovn] nb`` > none: the
    NB database is one for the whole cloud, not per host, so there is no default.
    """
    if flag:
        return flag, "flag"
    if env.get("OVN_NB_DB"):
        return env["OVN_NB_DB"], "environment OVN_NB_DB"
    config = load_config(env) if config is None else config
    ovn = config.get("ovn", {})
    if isinstance(ovn, dict) and ovn.get("nb"):
        if not isinstance(ovn["nb"], str):
            raise UsageError("config: ovn.nb must be a string")
        return ovn["nb"], "config [ovn] nb"
    return None, "none configured"


@dataclass(frozen=True, slots=True)
class SslFiles:
    """The files an ``ssl:`` OVSDB or Northbound remote needs (config ``[ssl]``)."""

    private_key: str
    certificate: str
    ca_cert: str


def ssl_files(
    env: Mapping[str, str] = os.environ, config: Mapping[str, Any] | None = None
) -> SslFiles:
    """``[ssl] private_key, certificate, ca_cert`` of the config file, as ovs-vsctl's
    ``--private-key``, ``--certificate`` and ``--ca-cert``: one set for every ``ssl:`` remote
    (Open vSwitch's Python library keeps them per process). Missing or unreadable: a
    UsageError naming what."""
    config = load_config(env) if config is None else config
    table = config.get("ssl", {})
    hint = (
        'add to config.toml:  [ssl]  private_key = "/etc/vmsniff/key.pem"  certificate = '
        '"/etc/vmsniff/cert.pem"  ca_cert = "/etc/vmsniff/cacert.pem"'
    )
    if not isinstance(table, dict):
        raise UsageError("config: [ssl] must be a table", hint=hint)
    values = {}
    for key in ("private_key", "certificate", "ca_cert"):
        value = table.get(key)
        if not isinstance(value, str) or not value:
            raise UsageError(f"an ssl: remote needs [ssl] {key} in config.toml", hint=hint)
        if not os.access(value, os.R_OK):
            raise UsageError(f"config [ssl] {key}: {value} is missing or not readable", hint=hint)
        values[key] = value
    return SslFiles(**values)
