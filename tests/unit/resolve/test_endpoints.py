from __future__ import annotations

from pathlib import Path

import pytest

from vmsniff.errors import PermissionDenied, UsageError
from vmsniff.resolve.endpoints import (
    DEFAULT_LIBVIRT,
    DEFAULT_OVSDB,
    endpoints_for,
    load_config,
    local_host,
)

CONFIG = {
    "host": "compute-1",
    "endpoints": {"ovsdb": "tcp:{host}:6640", "libvirt": "qemu+ssh://{host}/system"},
    "hosts": {"compute-3": {"ovsdb": "ssl:192.0.2.3:6640"}},
}


def test_local_host_defaults_and_environment_apply_only_locally() -> None:
    env = {"VMSNIFF_OVSDB": "unix:/tmp/x.sock", "VMSNIFF_HOST": "compute-1"}
    local = endpoints_for("compute-1", env=env, config={})
    assert local.local and local.ovsdb == "unix:/tmp/x.sock" and local.libvirt == DEFAULT_LIBVIRT
    assert local.ovsdb_origin == "environment VMSNIFF_OVSDB"
    remote = endpoints_for("compute-2", env=env, config={})
    assert not remote.local
    assert remote.ovsdb is None and remote.libvirt is None  # never the local socket


def test_precedence_flag_env_host_entry_template_default() -> None:
    env = {"VMSNIFF_HOST": "compute-1"}
    assert endpoints_for(None, env=env, config={}).ovsdb == DEFAULT_OVSDB
    ep = endpoints_for("compute-2", env=env, config=CONFIG)
    assert (ep.ovsdb, ep.libvirt) == ("tcp:compute-2:6640", "qemu+ssh://compute-2/system")
    ep = endpoints_for("compute-3", env=env, config=CONFIG)
    assert ep.ovsdb == "ssl:192.0.2.3:6640" and ep.ovsdb_origin == "config host entry"
    ep = endpoints_for("compute-3", ovsdb_flag="tcp:127.0.0.1:1", env=env, config=CONFIG)
    assert ep.ovsdb == "tcp:127.0.0.1:1" and ep.ovsdb_origin == "flag"


def test_local_host_recognised_by_short_name() -> None:
    assert endpoints_for(
        "compute-1.example.org", env={"VMSNIFF_HOST": "compute-1"}, config={}
    ).local
    assert local_host({}, {"host": "cfg-host"}) == "cfg-host"
    assert local_host({"VMSNIFF_HOST": "env-host"}, {"host": "cfg-host"}) == "env-host"


def test_config_file_is_read_and_bad_one_is_a_usage_error(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('host = "h1"\n[endpoints]\novsdb = "tcp:{host}:6640"\n')
    assert load_config({"VMSNIFF_CONFIG": str(good)})["host"] == "h1"
    bad = tmp_path / "bad.toml"
    bad.write_text("host = \n")
    with pytest.raises(UsageError, match="cannot read config file"):
        load_config({"VMSNIFF_CONFIG": str(bad)})
    assert load_config({"VMSNIFF_CONFIG": str(tmp_path / "absent.toml")}) == {}
    with pytest.raises(UsageError, match="bad template"):
        endpoints_for("h2", env={"VMSNIFF_HOST": "h1"}, config={"endpoints": {"ovsdb": "{nope}"}})


def test_unreadable_config_is_permission_denied_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # root reads every file, so EACCES is faked here; tests/functional/test_validation.py
    # meets the real one as user 65534.
    config = tmp_path / "config.toml"
    config.write_text('host = "h1"\n')

    def denied(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(PermissionDenied, match=f"cannot read config file {config}"):
        load_config({"VMSNIFF_CONFIG": str(config)})


def test_a_directory_where_the_config_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "vmsniff" / "config.toml").mkdir(parents=True)
    with pytest.raises(UsageError, match="is a directory"):
        load_config({"XDG_CONFIG_HOME": str(tmp_path)})
