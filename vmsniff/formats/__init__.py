"""Every wire and file format vmsniff reads or writes, defined once.

Header layouts, field offsets and constants only: no code that parses or encodes. The
per-packet decoder (:mod:`vmsniff.wire.decap`), the reference codecs (:mod:`vmsniff.wire`),
the kernel filter builder (:mod:`vmsniff.filter.kernel`), the numpy fast paths
(:mod:`vmsniff.pipeline`) and the encoders (:mod:`vmsniff.pcap`) all take their numbers from
here, so that two paths cannot disagree on what a byte means.

=================  ====================================================================
module             what it defines
=================  ====================================================================
:mod:`.ethernet`   Ethernet II and 802.1Q/802.1ad: header sizes, EtherTypes, TPIDs
:mod:`.ip`         IPv4/IPv6 fixed headers as a tunnel's outer header: offsets, protocols
:mod:`.gre`        GRE (RFC 2784/2890) flags, protocols, optional words, header length
:mod:`.erspan`     ERSPAN types I-III (draft-foschiano-erspan-03): sizes, frame types, D bit
:mod:`.packet`     Linux packet sockets: packet types, TPACKET_V3 ring layouts
:mod:`.capture`    pcap and pcapng files: magics, block types, options, link types, and the
                   one mapping between :class:`~vmsniff.model.Direction` and ``epb_flags``
=================  ====================================================================
"""
