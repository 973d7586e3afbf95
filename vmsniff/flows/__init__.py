"""``vmsniff flows``: bidirectional flow tables of captures, streaming (issue #16).

:mod:`.table` aggregates per-packet observations into flows (sans-IO; memory grows with the
number of flows, not of packets) and names each TCP connection's state and history the way
Zeek's conn.log does; :func:`vmsniff.dissect.flow_key` extracts what a packet says about its flow;
:mod:`.files` feeds capture files through both.
"""

from vmsniff.flows.table import Flow, FlowTable, Observation

__all__ = ["Flow", "FlowTable", "Observation"]
