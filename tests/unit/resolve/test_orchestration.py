"""``resolve()`` with fake Nova and libvirt sources: which sources are asked, and what it says."""

from __future__ import annotations

from typing import Any

import pytest

import vmsniff.resolve as resolve_pkg
from vmsniff.errors import Ambiguous, InvalidState, NotFound, PermissionDenied, UsageError
from vmsniff.resolve import ResolveOptions, resolve
from vmsniff.resolve.libvirt import DomainIface, DomainInfo
from vmsniff.resolve.nova import CloudPort, CloudServer

SERVER = "11111111-2222-3333-4444-555555555555"
PORT = "abcdef01-2345-6789-abcd-ef0123456789"
MAC = "fa:16:3e:00:00:01"
TAP = f"tap{PORT[:11]}"
ENV = {"OS_CLOUD": "test", "VMSNIFF_HOST": "compute-1", "VMSNIFF_CONFIG": "/nonexistent.toml"}


def server(**kw: Any) -> CloudServer:
    base: dict[str, Any] = dict(
        id=SERVER, name="c-native", project_id="p1", status="ACTIVE", host="compute-1",
        instance_name="instance-00000002",
    )  # fmt: skip
    base.update(kw)
    return CloudServer(**base)


class FakeNova:
    """Stands in for NovaSource; records the calls (``all_projects`` of each find)."""

    servers: list[CloudServer] = []
    own_project: list[CloudServer] = []
    admin = True
    calls: list[tuple[str, bool]] = []

    def __init__(self, cloud: str | None = None) -> None:
        self.cloud = cloud

    def find(self, query: str, *, all_projects: bool = False) -> list[CloudServer]:
        FakeNova.calls.append((query, all_projects))
        if all_projects and not self.admin:
            raise PermissionDenied("403")
        pool = self.servers if all_projects else self.own_project
        return [s for s in pool if query in (s.id, s.name)]

    def names(self, *, all_projects: bool = False) -> list[str]:
        return [s.name for s in (self.servers if all_projects else self.own_project)]

    def ports(self, server_id: str) -> list[CloudPort]:
        return [CloudPort(PORT, MAC, "n1", "private", ("10.0.0.5",), "normal", "ovs", False, None)]

    def close(self) -> None:
        pass


class FakeLibvirt:
    uris: list[str] = []

    def __init__(self, uri: str) -> None:
        FakeLibvirt.uris.append(uri)

    def domains(self) -> list[DomainInfo]:
        iface = DomainIface(MAC, "ethernet", TAP, None, None, 1500)
        return [DomainInfo("instance-00000002", SERVER, "running", "c-native", "p1", "demo",
                           (iface,))]  # fmt: skip

    def find(self, query: str) -> list[DomainInfo]:
        return [d for d in self.domains() if query in (d.name, d.uuid, d.display_name)]

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNova.servers = [server()]
    FakeNova.own_project = []
    FakeNova.admin = True
    FakeNova.calls = []
    FakeLibvirt.uris = []
    monkeypatch.setattr(resolve_pkg, "NovaSource", FakeNova)
    monkeypatch.setattr(resolve_pkg, "LibvirtSource", FakeLibvirt)
    monkeypatch.setattr(resolve_pkg, "_ovs", lambda opts, ep: (None, False))


def test_admin_miss_in_own_project_is_retried_in_every_project() -> None:
    target = resolve(ResolveOptions("c-native"), ENV)
    assert FakeNova.calls == [("c-native", False), ("c-native", True)]
    assert target.sources == ("nova", "libvirt") and target.local
    assert target.nics[0].tap == TAP and target.nics[0].sources == ("nova", "libvirt")


def test_all_projects_asks_once() -> None:
    resolve(ResolveOptions("c-native", all_projects=True), ENV)
    assert FakeNova.calls == [("c-native", True)]


def test_member_miss_stays_in_its_project_and_suggests_names() -> None:
    FakeNova.admin = False
    FakeNova.own_project = [server(name="c-natives", id="x")]
    with pytest.raises(NotFound) as info:
        resolve(ResolveOptions("c-native"), ENV)
    assert "in your project" in info.value.message
    assert info.value.hint == "did you mean: c-natives?"


def test_twins_and_inactive_and_hidden_host() -> None:
    FakeNova.servers = [server(), server(id="other", project_id="p2", host="compute-2")]
    with pytest.raises(Ambiguous) as amb:
        resolve(ResolveOptions("c-native"), ENV)
    assert any("project p2  host compute-2" in c for c in amb.value.candidates)
    FakeNova.servers = [server(status="SHUTOFF")]
    with pytest.raises(InvalidState, match="SHUTOFF"):
        resolve(ResolveOptions("c-native"), ENV)
    FakeNova.servers = [server(host=None, instance_name=None)]
    with pytest.raises(PermissionDenied) as denied:
        resolve(ResolveOptions("c-native"), ENV)
    assert denied.value.hint is not None and "--host" in denied.value.hint
    target = resolve(ResolveOptions("c-native", host="compute-1"), ENV)
    assert target.server.instance_name == "instance-00000002"  # from libvirt
    assert target.warnings == ()


def test_host_flag_against_nova_is_warned_and_remote_host_uses_no_local_endpoint() -> None:
    env = {**ENV, "LIBVIRT_DEFAULT_URI": "test:///local.xml", "VMSNIFF_OVSDB": "unix:/x.sock"}
    target = resolve(ResolveOptions("c-native", host="compute-9"), env)
    assert FakeLibvirt.uris == []  # the local libvirt was not asked
    assert target.sources == ("nova",) and not target.local
    assert target.ovsdb is None and target.libvirt_uri is None
    assert (
        target.warnings[0]
        == "Nova says c-native runs on compute-1; using --host compute-9 as given"
    )
    assert "no libvirt endpoint" in target.warnings[1]
    assert "no OVSDB endpoint" in target.warnings[2]


def test_offline_does_not_touch_the_cloud() -> None:
    target = resolve(ResolveOptions("c-native", offline=True), ENV)
    assert FakeNova.calls == []
    assert target.sources == ("libvirt",) and target.server.project_name == "demo"


def test_offline_for_another_host_without_its_libvirt_says_so() -> None:
    with pytest.raises(UsageError, match="none is configured for compute-9") as err:
        resolve(ResolveOptions("c-native", offline=True, host="compute-9"), ENV)
    assert "--libvirt" in (err.value.hint or "")
    assert FakeNova.calls == []
