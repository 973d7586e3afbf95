"""ovsdbapp's real API object and the fake both have every member of OvsBackend."""

from __future__ import annotations

import inspect

import pytest

from vmsniff.ovs.backend import OvsBackend
from vmsniff.ovs.fake import FakeOvs

#: How vmsniff calls each method (positional args, keyword args): the signatures must bind.
CALLS: dict[str, tuple[tuple[object, ...], dict[str, object]]] = {
    "lookup": (("Port", "p"), {"default": None}),
    "transaction": ((), {"check_error": True, "log_errors": False}),
    "db_create": (("Mirror",), {"name": "m", "external_ids": {}}),
    "db_add": (("Bridge", "br-int", "mirrors", object()), {}),
    "db_remove": (("Bridge", "br-int", "mirrors", object()), {"if_exists": True}),
    "del_port": (("p", "br-int"), {"if_exists": True}),
}


def protocol_members() -> set[str]:
    return {
        name
        for name in vars(OvsBackend)
        if not name.startswith("_") and name not in ("tables", "idl")
    }


def test_calls_cover_every_method_of_the_protocol() -> None:
    assert protocol_members() == set(CALLS)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_ovsdbapp_and_the_fake_accept_our_calls(name: str) -> None:
    from ovsdbapp.schema.open_vswitch.impl_idl import OvsdbIdl

    args, kwargs = CALLS[name]
    for cls in (OvsdbIdl, FakeOvs):
        inspect.signature(getattr(cls, name)).bind(None, *args, **kwargs)


def test_ovsdbapp_has_the_properties() -> None:
    from ovs.db.idl import Idl
    from ovsdbapp.schema.open_vswitch.impl_idl import OvsdbIdl

    assert isinstance(OvsdbIdl.tables, property) and isinstance(OvsdbIdl.idl, property)
    assert isinstance(Idl.IDL_S_MONITORING, int)
    fake = FakeOvs()
    assert set(fake.tables) >= {"Open_vSwitch", "Bridge", "Port", "Interface", "Mirror"}
    assert fake.idl._session.is_connected() and fake.idl.state == fake.idl.IDL_S_MONITORING
