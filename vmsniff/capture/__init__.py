"""``vmsniff capture``: a local VM's traffic, read on this host, as pcap/pcapng (issue #7).

:mod:`.plan` (pure) picks each NIC's capture point (its tap, or a local OVS mirror port) and
builds the kernel socket filter; :mod:`.live` opens the points (and the ``--at ovs`` rows,
owned and removed like ``vmsniff mirror``'s); :mod:`.source` reads the TPACKET_V3 rings shared
with ``receive``; :mod:`.stage` (sans-IO) names and marks the frames. ``receive``'s
:func:`~vmsniff.pipeline.run.drive`, sinks and stats do the rest. Nothing heavy is imported
here: pcapy and ovsdbapp load only when a capture opens.
"""

from vmsniff.capture.plan import (
    AT_CHOICES,
    CaptureOptions,
    CapturePoint,
    kernel_program,
    plan_points,
    require_local,
)
from vmsniff.capture.stage import CaptureStage, StagePoint

__all__ = [
    "AT_CHOICES",
    "CaptureOptions",
    "CapturePoint",
    "CaptureStage",
    "StagePoint",
    "kernel_program",
    "plan_points",
    "require_local",
]
