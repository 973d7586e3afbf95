"""``lab down``: remove every trace of a lab, idempotently, also after a crashed ``lab up``.

Everything is found from the prefix alone (names are computed, daemons by pidfile), so no
state needs to have survived: processes first (they keep namespaces alive), then
namespaces (their devices go with them, the management veth's root end too; it is removed
by name should it have outlived them), then the run directory.
"""

from __future__ import annotations

import shutil
from typing import Any

from vmsniff.lab import links
from vmsniff.lab.switch import DAEMONS, stop_pidfile
from vmsniff.lab.topology import Lab

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
    for daemon in DAEMONS:
        if stop_pidfile(lab.pidfile(daemon), [daemon, rundir]):
            stopped.append(daemon)
    removed = [ns for ns in lab.namespaces if links.remove_namespace(ns)]
    gone_links = [lab.mgmt_root_device] if links.remove_link(None, lab.mgmt_root_device) else []
    had_rundir = lab.rundir.exists()
    shutil.rmtree(lab.rundir, ignore_errors=True)
    return {
        "prefix": lab.prefix,
        "processes_stopped": stopped,
        "namespaces_removed": removed,
        "links_removed": gone_links,
        "rundir_removed": str(lab.rundir) if had_rundir else None,
    }
