"""Open vSwitch: the OVSDB connection, pure mirror planning, applying and ownership.

Everything here that talks to the switch takes an :class:`~vmsniff.ovs.backend.OvsBackend`:
ovsdbapp's API in use, :class:`~vmsniff.ovs.fake.FakeOvs` in unit tests.
"""
