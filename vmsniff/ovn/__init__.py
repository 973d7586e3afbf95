"""OVN's own distributed mirrors: a session as Northbound ``Mirror`` rows (``mirror --via ovn``).

OVN realises a Northbound Mirror attached to a logical switch port on whichever chassis binds
the port (ovn-controller makes the tunnel interface ``ovn-NAME`` and an OVS Mirror marked
``ovn-owned``), and follows the port when the VM moves. vmsniff writes only NB rows carrying its
ownership marks and never touches others' (Neutron TaaS and operators write them too).
"""
