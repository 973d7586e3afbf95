"""``vmsniff snoop``: relay a TCP control channel (OpenFlow, OVSDB) and record it to pcap.

Modules: :mod:`.synth` (sans-IO TCP synthesis), :mod:`.relay` (the pure per-connection relay),
:mod:`.loop` (the one socket loop), :mod:`.openflow` (message framing for ``--print``),
:mod:`.ovs` (``--ovs``: a bridge's controllers pointed through the relay, and restored).
Nothing heavy is imported here.
"""

__all__: list[str] = []
