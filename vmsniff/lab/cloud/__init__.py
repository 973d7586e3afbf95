"""A local stand-in for the Keystone v3, Nova and Neutron APIs (stdlib only).

openstacksdk (and python-openstackclient) talk to it over real HTTP on 127.0.0.1, so vmsniff's
resolver runs unchanged against the lab. It serves: Keystone version discovery and password
authentication with a service catalog pointing back at itself; Nova's version documents,
server list/detail/show (``name`` as a regular expression, ``all_tenants`` for admins,
``status``, ``limit``/``marker``), ``os-interface`` and microversions up to 2.96; Neutron's
version document, ports and networks (list with filters, and show). Admin-only attributes
(``OS-EXT-SRV-ATTR:*``, ``binding:*`` details, ``provider:*``) are omitted for other callers,
as the services' default policies do. ``GET /_stand-in/requests`` returns request counts by
path template, ``DELETE`` resets them.

Modules: :mod:`.inventory` (the data), :mod:`.routes` and the private service modules (pure
handlers: a request in, a response out), :mod:`.server` (the HTTP shell), :mod:`.clouds`
(clouds.yaml), ``python -m vmsniff.lab.cloud`` (the runner).

The inventory file (JSON; every key marked * may be left out and is then derived, see
:func:`build_inventory`)::

    {
      "region": "RegionOne",                                          *
      "projects": [{"name": "demo", "id": "<32 hex>"*}],
      "users": [{"name": "admin", "password": "pw", "project": "admin",
                 "roles": ["admin"]*  (default ["member"]), "id": "<32 hex>"*}],
      "networks": [{"name": "private", "cidr": "10.0.0.0/24", "project": "demo",
                    "network_type": "vxlan"*, "segmentation_id": 1001*,
                    "physical_network": null*, "shared": false*, "mtu": 1450*, "id": "<uuid>"*}],
      "servers": [{"name": "c-private", "project": "demo", "status": "ACTIVE"*,
                   "host": "hv1"*, "hypervisor_hostname": "hv1"*,
                   "instance_name": "instance-00000001"*, "flavor": "m1.tiny"*,
                   "image": "<image uuid>"* ("" = volume-backed), "created": "<RFC 3339>"*,
                   "user": "<user name>"*, "id": "<uuid>"*,
                   "ports": [{"network": "<network name or id>", "mac": "fa:16:3e:.."*,
                              "ips": ["10.0.0.5"]*, "vnic_type": "normal"* (or "direct",
                              "macvtap"), "hybrid_plug": false*, "id": "<uuid>"*}]}]
    }

There is one domain, ``Default`` (id ``default``); each user has one project. Statuses are
those of :data:`SERVER_STATES`; ports of ACTIVE and PAUSED servers are ``ACTIVE``, others
``DOWN``.
"""

from vmsniff.lab.cloud.clouds import write_clouds_yaml
from vmsniff.lab.cloud.inventory import (
    SERVER_STATES,
    Inventory,
    InventoryError,
    Network,
    Port,
    Project,
    Server,
    User,
    build_inventory,
    inventory_from_dict,
    inventory_to_dict,
    load_inventory,
    save_inventory,
)
from vmsniff.lab.cloud.server import StandInServer, start_in_thread

__all__ = [
    "SERVER_STATES",
    "Inventory",
    "InventoryError",
    "Network",
    "Port",
    "Project",
    "Server",
    "StandInServer",
    "User",
    "build_inventory",
    "inventory_from_dict",
    "inventory_to_dict",
    "load_inventory",
    "save_inventory",
    "start_in_thread",
    "write_clouds_yaml",
]
