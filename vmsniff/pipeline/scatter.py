"""Records written straight from the ring: ``struct iovec`` lists for ``writev(2)``.

The block fast paths (:mod:`.inplace`) build each record where its packet lies, inside the
ring block. Copying every record into a Python object to hand it to ``os.writev`` costs about
0.1 µs a record; instead a :class:`Scatter` describes a stretch of records as ``(address,
length)`` pairs (built with numpy over the whole block), and :func:`write_scatter` hands the
kernel ``IOV_MAX`` of them per ``writev`` call (through ctypes: the os module wants one Python
buffer per record). The kernel then copies each record from the ring into the file.

A Scatter points into the ring: it is valid only until its block is handed back to the
kernel. :func:`~.run.drive` writes a block's records before it asks for the next block.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

import numpy as np

__all__ = ["IOV_MAX", "Scatter", "joined", "write_scatter"]

IOV_MAX = 1024  # UIO_MAXIOV, linux/uio.h


class Scatter:
    """``iov``: a C-contiguous ``(n, 2)`` uint64 array of ``struct iovec`` (address, length),
    one per record, in file order; ``nbytes``: their total length; ``owners``: the buffers
    the addresses point into, when they are not the ring (kept alive with the Scatter)."""

    __slots__ = ("iov", "nbytes", "owners")

    def __init__(self, iov: Any, nbytes: int, owners: Any = None) -> None:
        self.iov = iov
        self.nbytes = nbytes
        self.owners = owners

    def __len__(self) -> int:
        """Bytes, as for the ``bytes`` records this stands for."""
        return self.nbytes

    def tobytes(self) -> bytes:
        """The records copied out (for tests, and for writers that cannot take an iovec)."""
        return b"".join(ctypes.string_at(addr, size) for addr, size in self.iov.tolist())


def joined(pieces: list[Any]) -> bytes:
    """Bytes-like pieces and :class:`Scatter` stretches as one bytes object, in order."""
    return b"".join(p.tobytes() if isinstance(p, Scatter) else p for p in pieces)


_writev: Any = None


def _libc_writev() -> Any:
    global _writev
    if _writev is None:
        fn = ctypes.CDLL(None, use_errno=True).writev
        fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        fn.restype = ctypes.c_ssize_t
        _writev = fn
    return _writev


IOVEC_64 = ctypes.sizeof(ctypes.c_void_p) == 8 and ctypes.sizeof(ctypes.c_size_t) == 8


def write_scatter(fd: int, scatter: Scatter) -> None:
    """Write every byte ``scatter`` describes to ``fd``, in order (a short write, to a pipe
    say, resumes where it stopped; EINTR is retried). The iovec layout is 64-bit Linux's;
    elsewhere the records are copied out and written with ``os.write``."""
    if not IOVEC_64:
        data = memoryview(scatter.tobytes())
        while data:
            try:
                data = data[os.write(fd, data) :]
            except InterruptedError:
                continue
        return
    writev = _libc_writev()
    iov = scatter.iov
    base = iov.ctypes.data
    i, n = 0, len(iov)
    while i < n:
        count = min(IOV_MAX, n - i)
        done = writev(fd, base + 16 * i, count)
        if done < 0:
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            raise OSError(err, os.strerror(err))
        sizes = iov[i : i + count, 1]
        if done == int(sizes.sum()):
            i += count
            continue
        # a short write: resume inside the first record not written whole, on a copy of the
        # iovecs left (rare: a pipe, a full disk), so that the caller's still say what was to be
        # written (FileSink reads them back to cut a failed write at a whole record)
        ends = np.cumsum(sizes)
        j = int(np.searchsorted(ends, done, side="right"))
        written = done - (int(ends[j - 1]) if j else 0)
        iov = iov[i + j :].copy()
        base = iov.ctypes.data
        iov[0, 0] += written
        iov[0, 1] -= written
        i, n = 0, len(iov)
