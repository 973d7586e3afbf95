"""The receiver's kernel socket filter: the outer GRE check, then the user's inner filter.

libpcap compiles the user's expression for the *inner* frame (Ethernet); the packet socket
sees the *outer* IP packet. For the shape OVS sends, IPv4 without options or fragments around
GRE version 0 carrying transparent Ethernet bridging (0x6558), the inner frame starts at a
fixed offset (20 + the GRE header: 4, plus 4 for each of the C, K and S flags), so the inner
program is copied once per offset with every packet load moved by it (:func:`shift_program`)
and the outer shape selects the copy. Everything else (IPv6, fragments, ERSPAN, raw-IP GRE,
an Ethernet-padded packet) is let through whole, and userspace filters it as before.

:data:`FAST_GRE_FLAGS` and the checks in :func:`receive_program` define "the fast shape";
:mod:`vmsniff.pipeline.fastpath` skips the userspace filter for exactly those packets, so the
two must agree (tests compare them).

Classic BPF is ``linux/filter.h``; opcodes are ``(class | size | mode)``; ``jt``/``jf`` are
relative, 8-bit; a program is at most 4096 instructions (``BPF_MAXINSNS``).
"""

from __future__ import annotations

from collections.abc import Sequence

from vmsniff.formats.ethernet import (
    ETH_ADDRS_LEN,
    ETH_HEADER_LEN,
    ETHERTYPE_TEB,
    TPIDS,
    VLAN_TAG_LEN,
    VLAN_VID_MASK,
)
from vmsniff.formats.gre import FAST_FLAG_WORDS, GRE_PROTO_OFFSET, gre_header_len
from vmsniff.formats.ip import (
    IPV4_FLAGS_OFFSET,
    IPV4_FRAGMENT_MASK,
    IPV4_MIN_HEADER,
    IPV4_NO_OPTIONS,
    IPV4_TOTAL_LENGTH_OFFSET,
)
from vmsniff.formats.packet import MAX_SNAPLEN

__all__ = [
    "FAST_GRE_FLAGS",
    "Insn",
    "receive_program",
    "shift_program",
]

Insn = tuple[int, int, int, int]

#: GRE flag words (version 0, no routing) of the fast shape: any mix of C, K and S.
FAST_GRE_FLAGS = FAST_FLAG_WORDS
#: In the fast shape GRE follows an IPv4 header without options.
GRE_AT = IPV4_MIN_HEADER
_ACCEPT = MAX_SNAPLEN
_MAXINSNS = 4096

# opcode parts
_LD, _LDX, _JMP, _RET = 0x00, 0x01, 0x05, 0x06
_W, _H, _B = 0x00, 0x08, 0x10
_ABS, _IND, _LEN, _MSH = 0x20, 0x40, 0x80, 0xA0
_WIDTH = {_W: 4, _H: 2, _B: 1}
_JA, _JEQ, _JGT, _JGE, _JSET = 0x05, 0x15, 0x25, 0x35, 0x45
_JGT_X = 0x2D
_TAX = 0x07
_AND_K = 0x54


def _moved(k: int, width: int | None, shift: int, strip: bool) -> int | None:
    """Where a load at inner offset ``k`` reads in the outer packet; None when it cannot be
    known (an indirect load that may straddle a stripped VLAN tag)."""
    if k >= 0x80000000:  # negative: Linux ancillary data (SKF_AD_OFF), not packet bytes
        return None
    if strip:
        if width is None:  # indirect: X + k, X unknown (>= 0)
            if k < ETH_ADDRS_LEN:
                return None
            k += VLAN_TAG_LEN
        elif k + width <= ETH_ADDRS_LEN:
            pass
        elif k >= ETH_ADDRS_LEN:
            k += VLAN_TAG_LEN
        else:
            return None
    return k + shift


def shift_program(program: Sequence[Insn], shift: int, *, strip: bool = False) -> list[Insn] | None:
    """``program`` (compiled for an Ethernet frame) run on that frame when it sits ``shift``
    bytes into the packet; with ``strip``, on the frame as it would be with its first VLAN tag
    (bytes 12..15) taken out. None when the program cannot be moved: it reads the packet
    length (``len``, ``greater``, ``less``) or ancillary data, or an indirect load could
    straddle the tag."""
    out: list[Insn] = []
    for code, jt, jf, k in program:
        cls = code & 0x07
        mode = code & 0xE0
        if cls == _LD and mode in (_ABS, _IND):
            width = _WIDTH[code & 0x18] if mode == _ABS else None
            moved = _moved(k, width, shift, strip)
            if moved is None:
                return None
            k = moved
        elif cls == _LD and mode == _LEN:
            return None
        elif cls == _LDX and mode == _MSH:
            moved = _moved(k, 1, shift, strip)
            if moved is None:
                return None
            k = moved
        elif cls == _LDX and mode == _LEN:
            return None
        out.append((code, jt, jf, k))
    return out


class _Asm:
    """A tiny assembler: instructions may name labels in jt/jf (conditional) or k (``ja``)."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int | str, int | str, int | str]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def emit(self, code: int, jt: int | str = 0, jf: int | str = 0, k: int | str = 0) -> None:
        self.code.append((code, jt, jf, k))

    def extend(self, program: Sequence[Insn]) -> None:
        self.code.extend(program)

    def assemble(self) -> list[Insn]:
        out: list[Insn] = []
        for pc, (code, jt, jf, k) in enumerate(self.code):

            def rel(target: int | str, pc: int = pc) -> int:
                return target if isinstance(target, int) else self.labels[target] - pc - 1

            if code == _JA:
                out.append((code, 0, 0, rel(k)))
                continue
            jt_, jf_ = rel(jt), rel(jf)
            if not (0 <= jt_ <= 255 and 0 <= jf_ <= 255):
                raise ValueError("conditional jump out of range")
            out.append((code, jt_, jf_, int(k)))
        return out


def receive_program(
    outer: Sequence[Insn],
    inner: Sequence[Insn] | None,
    *,
    strip_vlan: bool = False,
    vlan_id: int | None = None,
) -> tuple[list[Insn], bool]:
    """The receiver's socket filter and whether the inner filter is in it.

    ``outer`` is libpcap's program for the outer packet (``ip proto 47 …``, raw IP link type);
    ``inner`` the user's filter compiled for Ethernet (None: no filter). ``strip_vlan`` and
    ``vlan_id`` mirror ``--strip-vlan``: the inner filter then sees the frame untagged, as the
    userspace pipeline does. When the inner program cannot be moved, or the result would be too
    long, the outer program is returned alone (with ``False``) and userspace filters everything.
    """
    outer = list(outer)
    if inner is None:
        return outer, False
    copies: dict[int, tuple[list[Insn], list[Insn] | None]] = {}
    for flags in FAST_GRE_FLAGS:
        shift = GRE_AT + gre_header_len(flags)
        if shift in copies:
            continue
        plain = shift_program(inner, shift)
        stripped = shift_program(inner, shift, strip=True) if strip_vlan else None
        if plain is None or (strip_vlan and stripped is None):
            return outer, False
        copies[shift] = (plain, stripped)

    asm = _Asm()
    for code, jt, jf, k in outer:
        if code & 0x07 == _RET:
            if code != _RET or k == 0:  # RET A, or a reject: keep as it is
                if code != _RET:
                    return outer, False
                asm.emit(code, jt, jf, k)
            else:
                asm.emit(_JA, k="dispatch")
            continue
        asm.emit(code, jt, jf, k)
    asm.label("dispatch")
    asm.emit(_LD | _B | _ABS, k=0)
    asm.emit(_JEQ, 0, "user", IPV4_NO_OPTIONS)  # IPv4, 20-byte header
    asm.emit(_LD | _H | _ABS, k=IPV4_FLAGS_OFFSET)
    asm.emit(_JSET, "user", 0, IPV4_FRAGMENT_MASK)  # a fragment
    asm.emit(_LD | _H | _ABS, k=IPV4_TOTAL_LENGTH_OFFSET)
    asm.emit(_TAX)
    asm.emit(_LD | _W | _LEN)
    asm.emit(_JGT_X, "user", 0)  # longer than the IP total length: link padding
    asm.emit(_LD | _H | _ABS, k=GRE_AT + GRE_PROTO_OFFSET)
    asm.emit(_JEQ, 0, "user", ETHERTYPE_TEB)  # transparent Ethernet bridging
    asm.emit(_LD | _H | _ABS, k=GRE_AT)
    for flags in FAST_GRE_FLAGS:
        asm.emit(_JEQ, 0, 1, flags)
        asm.emit(_JA, k=f"copy{GRE_AT + gre_header_len(flags)}")
    asm.label("user")
    asm.emit(_RET, k=_ACCEPT)
    for shift, (plain, stripped) in copies.items():
        asm.label(f"copy{shift}")
        if stripped is not None:
            asm.emit(_LD | _W | _LEN)
            asm.emit(_JGE, 0, f"plain{shift}", shift + ETH_HEADER_LEN + VLAN_TAG_LEN)
            asm.emit(_LD | _H | _ABS, k=shift + ETH_ADDRS_LEN)
            for i, tpid in enumerate(TPIDS):
                last = i == len(TPIDS) - 1
                asm.emit(_JEQ, f"tag{shift}", f"plain{shift}" if last else 0, tpid)
            asm.label(f"tag{shift}")
            if vlan_id is not None:
                asm.emit(_LD | _H | _ABS, k=shift + ETH_ADDRS_LEN + 2)
                asm.emit(_AND_K, k=VLAN_VID_MASK)
                asm.emit(_JEQ, 0, f"plain{shift}", vlan_id)
            asm.emit(_JA, k=f"stripped{shift}")
            asm.label(f"plain{shift}")
            asm.extend(plain)
            asm.label(f"stripped{shift}")
            asm.extend(stripped)
        else:
            asm.extend(plain)
    program = asm.assemble()
    if len(program) > _MAXINSNS:
        return outer, False
    return program, True
