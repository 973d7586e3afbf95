"""What one captured frame says about its flow: :func:`observe`, the dissector's
:func:`~vmsniff.dissect.flow_key` under the name the flow table's callers know.

The header walk is the dissector's (:mod:`vmsniff.dissect._walk`), one definition for
:func:`~vmsniff.dissect.decode` and for flows; this module only keeps the name for
``--flows`` (:class:`vmsniff.pipeline.sinks.FlowsSink`), which may call ``flow_key``
directly.
"""

from __future__ import annotations

from vmsniff.dissect.flow import flow_key as observe

__all__ = ["observe"]
