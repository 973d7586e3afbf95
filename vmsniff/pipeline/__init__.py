"""The receive pipeline: sources (ring, file) -> decap -> select -> filter -> sinks.

``core`` is sans-IO (frames in, packets out, counted); ``encode`` makes pcap/pcapng bytes;
``sinks`` write files and text; ``sources`` and ``ring`` read the network or a file; ``run``
is the one loop joining them. Nothing heavy is imported here: pcapy is loaded by
:mod:`vmsniff.filter` only when a filter is compiled.
"""

from vmsniff.pcap.encoder import FORMATS, PcapEncoder, PcapngEncoder, interface_name
from vmsniff.pipeline.core import DIRECTIONS, Packet, Pipeline, PipelineConfig, Stats
from vmsniff.pipeline.sinks import FileSink, KeyedSink, PrintSink, Rotation, TeeSink

__all__ = [
    "DIRECTIONS",
    "FORMATS",
    "FileSink",
    "KeyedSink",
    "Packet",
    "PcapEncoder",
    "PcapngEncoder",
    "Pipeline",
    "PipelineConfig",
    "PrintSink",
    "Rotation",
    "Stats",
    "TeeSink",
    "interface_name",
]
