"""Open vSwitch: the OVSDB connection, pure mirror planning, applying and ownership."""
