"""Byte mutations for the fuzzer: the classic set (AFL's "havoc" stage, simplified).

Bit flips, byte insertion and deletion, length-field boundary values written at random places
in both byte orders, truncation, duplication and splicing with another seed. Each input gets
one to four of them stacked. Deterministic for a given :class:`random.Random`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["INTERESTING_16", "INTERESTING_32", "INTERESTING_8", "Mutator"]

INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF, 0x40, 0x45, 0x46, 0x4F, 0x60, 0x0F, 0x10, 0x14, 47, 44)
INTERESTING_16 = (
    0, 1, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x3FFF, 0x2000, 0x1FFF, 0x7FFF, 0x8000, 0xFFF8, 0xFFFF,
    0xFFEB, 0xFFEC, 0x0800, 0x86DD, 0x6558, 0x88BE, 0x22EB, 0x8100, 0x88A8, 0xB000, 0x3000,
)  # fmt: skip
INTERESTING_32 = (
    0, 1, 4, 8, 12, 16, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFF8, 0x01000000, 0x00010000,
    0x1A2B3C4D, 0x4D3C2B1A, 16 * 1024 * 1024, 16 * 1024 * 1024 + 1, 0x0A0D0D0A,
)  # fmt: skip


class Mutator:
    """Mutates seeds drawn from ``corpus`` with the random source ``rng``."""

    def __init__(self, rng: random.Random, corpus: Sequence[bytes], max_len: int = 1 << 17):
        self.rng = rng
        self.corpus = corpus
        self.max_len = max_len
        self._ops = (
            self.flip_bit,
            self.flip_bit,
            self.set_byte,
            self.set_interesting,
            self.set_interesting,
            self.set_interesting,
            self.insert,
            self.delete,
            self.truncate,
            self.duplicate,
            self.splice,
            self.add_small,
        )

    def mutate(self, data: bytes) -> bytes:
        """``data`` with 1 to 4 mutations stacked (more often few than many)."""
        buf = bytearray(data)
        for _ in range(1 + int(self.rng.random() ** 2 * 4)):
            self.rng.choice(self._ops)(buf)
        if len(buf) > self.max_len:
            del buf[self.max_len :]
        return bytes(buf)

    def _pos(self, buf: bytearray, width: int = 1) -> int | None:
        if len(buf) < width:
            return None
        # favour the first 64 bytes: headers live there
        if self.rng.random() < 0.5:
            return self.rng.randrange(min(len(buf), 64) - width + 1) if len(buf) >= width else None
        return self.rng.randrange(len(buf) - width + 1)

    def flip_bit(self, buf: bytearray) -> None:
        p = self._pos(buf)
        if p is not None:
            buf[p] ^= 1 << self.rng.randrange(8)

    def set_byte(self, buf: bytearray) -> None:
        p = self._pos(buf)
        if p is not None:
            buf[p] = self.rng.randrange(256)

    def add_small(self, buf: bytearray) -> None:
        width = self.rng.choice((1, 2, 4))
        p = self._pos(buf, width)
        if p is None:
            return
        order = self.rng.choice(("big", "little"))
        v = int.from_bytes(buf[p : p + width], order) + self.rng.randint(-35, 35)
        buf[p : p + width] = (v % (1 << (8 * width))).to_bytes(width, order)

    def set_interesting(self, buf: bytearray) -> None:
        width = self.rng.choice((1, 2, 2, 4))
        table = {1: INTERESTING_8, 2: INTERESTING_16, 4: INTERESTING_32}[width]
        p = self._pos(buf, width)
        if p is None:
            return
        v = self.rng.choice(table)
        if self.rng.random() < 0.25:  # a length that is the buffer's own, or just off it
            v = (len(buf) - p + self.rng.randint(-4, 4)) % (1 << (8 * width))
        buf[p : p + width] = v.to_bytes(width, self.rng.choice(("big", "little")))

    def insert(self, buf: bytearray) -> None:
        p = self.rng.randrange(len(buf) + 1)
        n = self.rng.choice((1, 1, 2, 4, 8, self.rng.randrange(1, 64)))
        fill = self.rng.choice((b"\x00", b"\xff", None))
        buf[p:p] = fill * n if fill is not None else self.rng.randbytes(n)

    def delete(self, buf: bytearray) -> None:
        if not buf:
            return
        p = self.rng.randrange(len(buf))
        n = self.rng.choice((1, 1, 2, 4, 8, self.rng.randrange(1, 64)))
        del buf[p : p + n]

    def truncate(self, buf: bytearray) -> None:
        if buf:
            del buf[self.rng.randrange(len(buf)) :]

    def duplicate(self, buf: bytearray) -> None:
        if not buf:
            return
        p = self.rng.randrange(len(buf))
        n = self.rng.randrange(1, min(len(buf) - p, 256) + 1)
        q = self.rng.randrange(len(buf) + 1)
        buf[q:q] = buf[p : p + n]

    def splice(self, buf: bytearray) -> None:
        other = self.rng.choice(self.corpus)
        if not other:
            return
        cut = self.rng.randrange(len(buf) + 1)
        start = self.rng.randrange(len(other))
        buf[cut:] = other[start:]
