"""``lab down``: remove every trace of a lab, idempotently, also after a crashed ``lab up``.

Everything is found from the prefix alone (names are computed, daemons by pidfile), so no
state needs to have survived: processes first (they keep namespaces alive), then
namespaces (their devices go with them, the management veth's root end too; it is removed
by name should it have outlived them), then the run directory.

A lab may have had up to :data:`MAX_HOSTS` hypervisors and OVN's daemons: ``lab down`` looks
for all of them (a pidfile, namespace or device that is not there costs a lookup), so it
needs neither the state file nor the ``--hosts`` the lab was built with.
"""

from __future__ import annotations

import shutil
from typing import Any

from vmsniff.lab import links
from vmsniff.lab.ovn import stop_ovn
from vmsniff.lab.switch import DAEMONS, stop_pidfile
from vmsniff.lab.topology import MAX_HOSTS, Hypervisor, Lab

__all__ = ["EXTRA_DAEMONS", "teardown"]

#: Daemons other parts of the lab start (pidfile name -> word their command line holds).
EXTRA_DAEMONS: dict[str, str] = {"cloud": "vmsniff.lab.cloud"}


def teardown(lab: Lab) -> dict[str, Any]:
    """Stop the lab's processes, remove its namespaces and run directory; report what went."""
    stopped: list[str] = []
    rundir = f"{lab.rundir}/"
    for name, word in EXTRA_DAEMONS.items():
        if stop_pidfile(lab.pidfile(name), [word, rundir]):
            stopped.append(name)
    stopped += stop_ovn(lab)
    hosts = [Hypervisor(lab.prefix, n) for n in range(1, MAX_HOSTS + 1)]
    for hv in hosts:
        for daemon in DAEMONS:
            if stop_pidfile(hv.pidfile(daemon), [daemon, rundir]):
                stopped.append(daemon if hv.number == 1 else f"{hv.name}/{daemon}")
    removed = [ns for ns in lab.possible_namespaces if links.remove_namespace(ns)]
    gone_links = [
        hv.mgmt_root_device for hv in hosts if links.remove_link(None, hv.mgmt_root_device)
    ]
    had_rundir = lab.rundir.exists()
    shutil.rmtree(lab.rundir, ignore_errors=True)
    return {
        "prefix": lab.prefix,
        "processes_stopped": stopped,
        "namespaces_removed": removed,
        "links_removed": gone_links,
        "rundir_removed": str(lab.rundir) if had_rundir else None,
    }
