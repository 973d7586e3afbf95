"""The sans-IO TCP synthesis, without sockets: frames checked by struct and by tshark."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.snoop import tshark
from vmsniff.pcap import file_header, record
from vmsniff.snoop.synth import (
    CLIENT,
    SERVER,
    Segment,
    State,
    TcpSynth,
    checksum,
    describe,
    payload_sums,
)

V4 = (("192.0.2.10", 40001), ("192.0.2.20", 6653))
RANDOM_PORT = 7001  # random payloads: not on an OpenFlow port, or tshark decodes them
V6 = (("2001:db8::10", 40002), ("2001:db8::20", 6653))
HELLO = bytes.fromhex("0400000800000001")


def write(path: Path, segments: list[Segment]) -> Path:
    with path.open("wb") as f:
        f.write(file_header(65535, 1, nanosecond=True))
        for seg in segments:
            f.write(record(seg.ts_ns, seg.frame, nanosecond=True))
    return path


def _slow_checksum(data: bytes) -> int:
    """RFC 1071 section 4.1, word by word, as the reference."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@given(st.binary(min_size=1, max_size=3000))
def test_checksum_matches_rfc1071(data: bytes) -> None:
    if not any(data):
        return  # all zero: the reference gives 0xFFFF, a value TCP never needs (see checksum)
    assert checksum(data) == _slow_checksum(data)


@given(st.binary(max_size=4000), st.sampled_from([1, 2, 4, 7, 8, 536, 1440, 1460, 1000]))
def test_vectorised_payload_sums_match_the_reference_piece_by_piece(data: bytes, size: int) -> None:
    """numpy's pass (even sizes, long payloads) and the per-piece one agree with RFC 1071."""
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    sums = payload_sums(data, size)
    assert len(sums) == len(pieces)
    for piece, got in zip(pieces, sums, strict=True):
        if any(piece):
            assert checksum(piece) == _slow_checksum(piece)
            assert (0xFFFF - got if got else 0) == checksum(piece)


def test_checksum_of_split_parts_is_the_whole() -> None:
    data = os.urandom(101)
    assert checksum(data[:40], data[40:60], data[60:]) == _slow_checksum(data)


def test_handshake_numbers_and_options() -> None:
    synth = TcpSynth(*V4, isn=(1000, 5000), mtu=1500)
    syn, synack, ack = synth.open(1)
    assert describe(syn.frame) == "40001 > 6653 [S] seq 1000 ack 0 len 0"
    assert describe(synack.frame) == "6653 > 40001 [S.] seq 5000 ack 1001 len 0"
    assert describe(ack.frame) == "40001 > 6653 [.] seq 1001 ack 5001 len 0"
    assert [s.side for s in (syn, synack, ack)] == [CLIENT, SERVER, CLIENT]
    # MSS option of a 1500-byte MTU, then window scale 7 (RFC 9293 3.7.1, RFC 7323 2.2)
    assert syn.frame[14 + 40 : 14 + 48] == bytes.fromhex("020405b401030307")
    assert synth.state is State.ESTABLISHED


def test_data_segments_carry_seq_and_ack() -> None:
    synth = TcpSynth(*V4, isn=(1000, 5000))
    synth.open(1)
    (c,) = synth.data(CLIENT, HELLO, 2)
    (s,) = synth.data(SERVER, HELLO, 3)
    assert describe(c.frame) == "40001 > 6653 [P.] seq 1001 ack 5001 len 8"
    assert describe(s.frame) == "6653 > 40001 [P.] seq 5001 ack 1009 len 8"
    assert c.frame.endswith(HELLO) and (c.ts_ns, s.ts_ns) == (2, 3)
    assert synth.row()["client_bytes"] == 8 and synth.row()["server_seq"] == 9


@pytest.mark.parametrize(
    ("ends", "mtu"), [(V4, 1500), (V6, 1500), (V4, 9000), (V6, 576), (V4, 65535), (V6, 65535)]
)
def test_segments_never_exceed_the_mtu(ends: tuple, mtu: int) -> None:  # type: ignore[type-arg]
    synth = TcpSynth(*ends, mtu=mtu)
    synth.open(1)
    payload = os.urandom(100_000)
    segs = synth.data(CLIENT, payload, 2)
    data = [s for s in segs if s.side == CLIENT]
    assert all(len(s.frame) - 14 <= mtu for s in segs)
    assert mtu - 3 <= max(len(s.frame) - 14 for s in data) <= mtu  # the MSS is a multiple of 4
    assert b"".join(s.frame[14 + (20 if ends is V4 else 40) + 20 :] for s in data) == payload


@pytest.mark.parametrize("mtu", [1500, 65535])
def test_receiver_acks_before_the_window_fills(mtu: int) -> None:
    synth = TcpSynth(*V4, mtu=mtu)
    synth.open(1)
    segs = synth.data(CLIENT, bytes(1_000_000), 2)
    acks = [s for s in segs if s.side == SERVER]
    assert 8 <= len(acks) <= 16  # one once 64 KiB are outstanding


def conversation(ends: tuple, tmp_path: Path, mtu: int) -> tuple[Path, bytes, bytes]:  # type: ignore[type-arg]
    synth = TcpSynth(ends[0], (ends[1][0], RANDOM_PORT), mtu=mtu)
    sent = {CLIENT: bytearray(), SERVER: bytearray()}
    segs = synth.open(1_000_000_000)
    t = 1_000_000_000
    for i, (side, size) in enumerate(
        [(CLIENT, 8), (SERVER, 8), (CLIENT, 300_000), (SERVER, 5), (SERVER, 70_001), (CLIENT, 1)]
    ):
        payload = os.urandom(size)
        sent[side] += payload
        segs += synth.data(side, payload, t + i * 1000)
    segs += synth.fin(CLIENT, t + 10_000)
    tail = os.urandom(3000)
    sent[SERVER] += tail
    segs += synth.data(SERVER, tail, t + 11_000)  # half-closed: the server still sends
    segs += synth.fin(SERVER, t + 12_000)
    assert synth.state is State.CLOSED
    return write(tmp_path / "c.pcap", segs), bytes(sent[CLIENT]), bytes(sent[SERVER])


@pytest.mark.parametrize("mtu", [1500, 65535])
@pytest.mark.parametrize("ends", [V4, V6], ids=["ipv4", "ipv6"])
def test_tshark_finds_nothing_wrong_and_reassembles_both_ways(
    ends: tuple,  # type: ignore[type-arg]
    mtu: int,
    tmp_path: Path,
) -> None:
    path, client_sent, server_sent = conversation(ends, tmp_path, mtu)
    assert tshark.problems(path) == []
    nodes, got_client, got_server = tshark.follow(path, 0)
    (c_addr, c_port), (s_addr, s_port) = ends[0], (ends[1][0], RANDOM_PORT)
    fmt = "[{}]:{}" if ":" in c_addr else "{}:{}"
    assert nodes == (fmt.format(c_addr, c_port), fmt.format(s_addr, s_port))
    assert got_client == client_sent and got_server == server_sent
    flags = [row[0] for row in tshark.fields(path, "tcp.flags.str")]
    assert flags[:3] == ["··········S·", "·······A··S·", "·······A····"]
    assert sum("F" in f for f in flags) == 2


def test_reset_is_one_rst_and_tshark_only_notes_the_reset(tmp_path: Path) -> None:
    synth = TcpSynth(*V6)
    segs = synth.open(1) + synth.data(CLIENT, HELLO, 2) + synth.reset(SERVER, 3)
    assert describe(segs[-1].frame).startswith("6653 > 40002 [R.]")
    assert synth.state is State.RESET
    path = write(tmp_path / "r.pcap", segs)
    assert tshark.problems(path, allow=("Connection reset",)) == []
    assert len(tshark.problems(path)) == 1


def test_refused_is_syn_then_rst_ack(tmp_path: Path) -> None:
    synth = TcpSynth(*V4, isn=(7, 9))
    syn, rst = synth.refused(5)
    assert describe(syn.frame) == "40001 > 6653 [S] seq 7 ack 0 len 0"
    assert describe(rst.frame) == "6653 > 40001 [R.] seq 0 ack 8 len 0"
    path = write(tmp_path / "x.pcap", [syn, rst])
    assert tshark.problems(path, allow=("Connection reset",)) == []


def test_mixed_families_become_one_ipv6_conversation() -> None:
    synth = TcpSynth(("192.0.2.1", 1), ("2001:db8::1", 2))
    (syn, *_rest) = synth.open(1)
    assert struct.unpack_from("!H", syn.frame, 12)[0] == 0x86DD
    assert syn.frame[22:38] == bytes.fromhex("00000000000000000000ffffc0000201")


@pytest.mark.parametrize(
    "steps",
    [
        ["data"],  # before the handshake
        ["open", "open"],
        ["open", "fin-client", "data-client"],  # after its own FIN
        ["open", "reset", "data-server"],
        ["open", "fin-client", "fin-server", "reset"],
        ["refused", "data-client"],
    ],
)
def test_impossible_events_are_the_callers_bug(steps: list[str]) -> None:
    synth = TcpSynth(*V4)
    actions = {
        "open": lambda: synth.open(1),
        "refused": lambda: synth.refused(1),
        "data": lambda: synth.data(CLIENT, b"x", 1),
        "data-client": lambda: synth.data(CLIENT, b"x", 1),
        "data-server": lambda: synth.data(SERVER, b"x", 1),
        "fin-client": lambda: synth.fin(CLIENT, 1),
        "fin-server": lambda: synth.fin(SERVER, 1),
        "reset": lambda: synth.reset(CLIENT, 1),
    }
    for step in steps[:-1]:
        actions[step]()
    with pytest.raises(ValueError, match="not possible"):
        actions[steps[-1]]()


def test_bad_mtu_is_refused() -> None:
    with pytest.raises(ValueError, match="MTU"):
        TcpSynth(*V4, mtu=40)
