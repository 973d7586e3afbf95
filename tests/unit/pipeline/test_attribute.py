"""receive --manifest: frames filed under their VM NIC (pure pipeline, crafted GRE)."""

from __future__ import annotations

import json

import pytest

from vmsniff.errors import UsageError
from vmsniff.formats.capture import EPB_FROM_VM, EPB_TO_VM, LINKTYPE_ETHERNET
from vmsniff.manifest import Manifest, ManifestNic, Stream, parse_manifest
from vmsniff.model import Direction
from vmsniff.pipeline.core import Pipeline, PipelineConfig

A, B, C = "fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b", "fa:16:3e:00:00:0c"
PEER = "fa:16:3e:00:00:99"
NICS = (
    ManifestNic("a/eth0", "a", "a-id", A, "compute-1", tag=1),
    ManifestNic("b/eth0", "b", "b-id", B, "compute-2", tag=None),
    ManifestNic("c/eth0", "c", "c-id", C, "compute-2", tag=None),
)
MANIFEST = Manifest(
    session="s", to="10.0.0.2", encap="gre", expires="2026-12-04T00:00:00Z", nics=NICS,
    streams=(
        Stream(100, Direction.FROM_VM, "compute-1", ("a/eth0",)),
        Stream(101, Direction.TO_VM, "compute-1", ("a/eth0",)),
        Stream(102, Direction.FROM_VM, "compute-2", ("b/eth0", "c/eth0")),
        Stream(103, Direction.TO_VM, "compute-2", ("b/eth0", "c/eth0")),
    ),
)  # fmt: skip


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def inner(dst: str, src: str, *, tag: int | None = None, body: bytes = b"x" * 46) -> bytes:
    vlan = b"" if tag is None else b"\x81\x00" + tag.to_bytes(2, "big")
    return mac(dst) + mac(src) + vlan + b"\x08\x00" + body


def gre(key: int, frame: bytes) -> bytes:
    """An outer Ethernet/IPv4/GRE frame with ``key`` around ``frame``."""
    from scapy.layers.inet import IP
    from scapy.layers.l2 import GRE, Ether
    from scapy.packet import Raw

    gre = GRE(key_present=1, key=key, proto=0x6558)
    return bytes(Ether() / IP(src="10.250.0.11", dst="10.250.0.2") / gre / Raw(frame))


def run(*frames: tuple[int, bytes], expression: str = "") -> list[tuple[str | None, int, bytes]]:
    flt = None
    if expression:
        from vmsniff.filter import InnerFilter

        flt = InnerFilter(expression)
    pipe = Pipeline(PipelineConfig(manifest=MANIFEST, filter=flt))
    out = pipe.push([(i, gre(k, f)) for i, (k, f) in enumerate(frames)], LINKTYPE_ETHERNET)
    return [(p.interface, p.direction, p.data) for p in out]


def test_a_dedicated_stream_files_every_frame_under_its_nic_without_the_tag() -> None:
    got = run((100, inner(PEER, A, tag=1)), (101, inner(A, PEER, tag=1)))
    assert got == [
        ("a/eth0", EPB_FROM_VM, inner(PEER, A)),
        ("a/eth0", EPB_TO_VM, inner(A, PEER)),
    ]


def test_a_shared_stream_files_by_source_mac_from_vm_and_destination_mac_to_vm() -> None:
    got = run((102, inner(PEER, C)), (102, inner(PEER, B)), (103, inner(B, PEER)))
    assert [(n, d) for n, d, _ in got] == [
        ("c/eth0", EPB_FROM_VM), ("b/eth0", EPB_FROM_VM), ("b/eth0", EPB_TO_VM),
    ]  # fmt: skip


def test_a_to_vm_broadcast_goes_to_every_nic_of_the_stream_but_its_sender() -> None:
    bcast = inner("ff:ff:ff:ff:ff:ff", B)
    got = run((103, bcast), (103, inner("ff:ff:ff:ff:ff:ff", PEER)))
    assert [(n, d) for n, d, _ in got] == [
        ("c/eth0", EPB_TO_VM), ("b/eth0", EPB_TO_VM), ("c/eth0", EPB_TO_VM),
    ]  # fmt: skip


def test_an_unknown_mac_is_filed_as_unattributed_and_counted() -> None:
    pipe = Pipeline(PipelineConfig(manifest=MANIFEST))
    out = pipe.push([(0, gre(102, inner(PEER, "fa:16:3e:00:00:77")))], LINKTYPE_ETHERNET)
    assert [p.interface for p in out] == ["compute-2/unattributed"]
    assert pipe.attribution is not None and pipe.attribution.unattributed == 1


def test_keys_outside_the_manifest_are_filtered_out_and_the_filter_applies() -> None:
    assert run((7, inner(PEER, A))) == []
    ip = bytes.fromhex("4500001c0001000040010000c0000201c0000202")
    icmp = inner(PEER, A, tag=1, body=ip + b"\x08" + b"\x00" * 7)
    assert run((100, icmp), (100, inner(PEER, A, tag=1)), expression="icmp")[0][0] == "a/eth0"
    assert len(run((100, icmp), (100, inner(PEER, A, tag=1)), expression="icmp")) == 1


def test_manifest_and_key_do_not_go_together() -> None:
    with pytest.raises(UsageError, match="leave out --key"):
        PipelineConfig(manifest=MANIFEST, keys=(100,))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d.update(format="x"), "not a vmsniff session manifest"),
        (lambda d: d["streams"][0].update(key="1"), "key is missing or not a int"),
        (lambda d: d["streams"][1].update(key=d["streams"][0]["key"]), "same key"),
        (lambda d: d["streams"][0].update(nics=["nope"]), "unknown NICs"),
        (lambda d: d["streams"][0].update(direction="both"), "from-vm or to-vm"),
        (lambda d: d["nics"][1].update(name="a/eth0"), "same name"),
    ],
)
def test_a_bad_manifest_says_what_is_wrong(change, needle: str) -> None:  # type: ignore[no-untyped-def]
    data = MANIFEST.to_dict()
    change(data)
    with pytest.raises(UsageError, match=needle):
        parse_manifest(json.dumps(data))
    assert parse_manifest(MANIFEST.to_json()) == MANIFEST
    with pytest.raises(UsageError, match="not JSON"):
        parse_manifest("{")


def test_nic_in_w_writes_one_file_per_nic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from vmsniff.dissect import read_file
    from vmsniff.pipeline.sinks import open_sink

    pipe = Pipeline(PipelineConfig(manifest=MANIFEST))
    packets = pipe.push([(0, gre(100, inner(PEER, A, tag=1))), (1, gre(103, inner(C, PEER))),
                         (2, gre(101, inner(A, PEER, tag=1)))], LINKTYPE_ETHERNET)  # fmt: skip
    sink = open_sink(str(tmp_path / "vm-{nic}.pcap"), "pcap", 65535, application="test")
    sink.write(packets)
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vm-a_eth0.pcap", "vm-c_eth0.pcap"]
    frames = [bytes(f.data) for f in read_file(str(tmp_path / "vm-a_eth0.pcap"))]
    assert frames == [inner(PEER, A), inner(A, PEER)]
