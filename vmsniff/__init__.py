"""vmsniff: see an OpenStack VM's traffic from the hypervisor side in one command.

The package is a library first; :mod:`vmsniff.cli` is a thin shell over it.
Importing this package imports nothing heavy (no click, rich, openstacksdk, libvirt,
ovsdbapp or scapy).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
