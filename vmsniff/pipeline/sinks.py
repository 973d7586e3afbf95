"""Where inner packets go: capture files (with tcpdump's rotation), stdout, a text summary.

Files hold tenant traffic, so they are created mode 0600 with ``O_EXCL``; an existing regular
file is truncated in place only with ``force`` (its owner and mode are not ours to change), a
FIFO or character device is written as tcpdump would, and a symbolic link is never followed
(:func:`open_capture_file`). Bytes reach the file in whole records only, so the file is a valid
pcap/pcapng at every flush (DESIGN.md contract 6). Records are batched in memory and written
with one ``write`` per flush; ``flush_each`` (``-U``) flushes after every packet.

Rotation follows tcpdump(8):

* ``-C size``: before a record would take the file past ``size`` bytes, start a new file. Names
  are FILE, FILE1, FILE2, …; with ``-W N`` they are FILE0 … FILE(N-1) (zero-padded to the width
  of N-1) and the numbering wraps, overwriting our own oldest file;
* ``-G seconds``: a new file each interval, its name FILE passed through ``strftime``; time is
  the packets' timestamps (so that ``-r`` rotates as the capture did). With ``-W N`` and no
  ``-C`` the run ends after N files (:attr:`FileSink.finished`).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, NoReturn

from vmsniff.dissect.frame import Frame, decode
from vmsniff.dissect.printer import Printer, PrintOptions
from vmsniff.errors import FileError, NotFound, PermissionDenied, UsageError
from vmsniff.formats.capture import direction_from_epb
from vmsniff.pcap.encoder import Encoder, interface_name, new_encoder, whole_prefix
from vmsniff.pipeline.core import Packet
from vmsniff.pipeline.run import Records
from vmsniff.pipeline.scatter import IOV_MAX, Scatter, joined, write_scatter

__all__ = [
    "FileSink",
    "FlowsSink",
    "KeyedSink",
    "PrintSink",
    "Rotation",
    "Sink",
    "TeeSink",
    "open_capture_file",
    "OutputOptions",
    "dissect",
    "flow_table",
    "open_sink",
    "summary",
    "written_files",
]

_BUFFER = 256 * 1024


@dataclass(frozen=True, slots=True)
class Rotation:
    """tcpdump's ``-C`` (bytes, already multiplied), ``-G`` (seconds) and ``-W`` (files)."""

    size: int | None = None
    seconds: int | None = None
    files: int | None = None

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 1:
            raise UsageError("-C must be positive")
        if self.seconds is not None and self.seconds < 1:
            raise UsageError("-G must be at least 1 second")
        if self.files is not None and (
            self.files < 1 or (self.size is None and self.seconds is None)
        ):
            raise UsageError("-W needs -C or -G, and at least 1 file")

    @property
    def active(self) -> bool:
        return self.size is not None or self.seconds is not None


class Sink:
    """A destination for packets: :meth:`write` batches, :meth:`close` at the end.

    A batch is what a stage made (:mod:`.run`): :class:`Packet` values, or, for a plain
    :class:`FileSink` only, :class:`~.run.Records` already encoded by its encoder."""

    finished = False

    def write(self, batch: list[Packet] | Records) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Push buffered whole records to the OS."""

    def close(self) -> None:
        raise NotImplementedError


def open_capture_file(path: str, *, force: bool, ours: bool = False) -> int:
    """Open ``path`` for writing a capture and return its descriptor, as tcpdump's ``-w`` would
    but never following a symbolic link and never changing what vmsniff did not create.

    * A new file is created mode 0600 (``O_EXCL``: nothing is there to follow or replace).
    * A FIFO or a character device (``/dev/null``, a pipe to Wireshark) is written as is,
      without ``force``: writing to it destroys nothing.
    * An existing regular file is refused unless ``force`` (or ``ours``: a file this run
      created, reached again when rotation wraps round); then it is truncated in place, its
      owner and mode untouched.
    * A symbolic link at the last component is refused (``O_NOFOLLOW``), dangling or not;
      anything else (a directory, a block device, a socket) is refused too.

    The decision is taken on the opened descriptor (``fstat``), never on the path, so nothing
    can be swapped in between a check and the open.
    """
    return _open_file(path, force=force or ours)


Identity = tuple[int, int]  # (st_dev, st_ino)


def _open_file(
    path: str,
    *,
    force: bool,
    mine: Identity | None = None,
    keep: frozenset[Identity] = frozenset(),
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """:func:`open_capture_file`; ``mine`` is the (device, inode) of a file this run created
    under ``path``: that file, and only it, is truncated without ``force``. Files in ``keep``
    (the ``-r`` input) are never truncated, even with ``force``.

    A FIFO nobody reads yet is waited for, as tcpdump does, but never blindly: a blocking
    ``open`` would outlast Ctrl-C (vmsniff's signal handlers only set a flag) while a session
    it serves holds switch rows or controllers. It is opened non-blocking and retried until a
    reader comes or ``stop()`` says so (:class:`FileError`)."""
    base = os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY
    for _ in range(8):  # only a file that keeps appearing and vanishing loops here
        try:
            # O_CREAT|O_EXCL never follows a link: a link (even dangling) is "exists".
            return _translate_open(path, base | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        try:
            fd = _open_existing(path, base, stop)
        except FileNotFoundError:
            continue  # removed between the two opens: create it after all
        try:
            _check_existing(fd, path, force=force, mine=mine, keep=keep)
        except BaseException:
            os.close(fd)
            raise
        return fd
    raise FileError(f"cannot create {path}: it keeps appearing and vanishing")


_READER_POLL_S = 0.05


def _open_existing(path: str, flags: int, stop: Callable[[], bool]) -> int:
    """Open an existing ``path`` without blocking (a FIFO without a reader is ENXIO then),
    waiting for a FIFO's reader while ``stop()`` is false; the descriptor is made blocking
    again for the writes."""
    while True:
        try:
            fd = _translate_open(path, flags | os.O_NONBLOCK, 0)
        except _NoReader:
            if not _is_fifo(path):
                raise UsageError(f"cannot write {path}: not a file") from None
            if stop():
                raise FileError(
                    f"not writing {path}: nobody opened the FIFO for reading before the stop",
                    hint="start the reader first (wireshark -k -i FIFO, or cat FIFO > file)",
                ) from None
            time.sleep(_READER_POLL_S)
            continue
        os.set_blocking(fd, True)
        return fd


class _NoReader(Exception):
    """ENXIO from a non-blocking open: a FIFO with no reader yet (or a socket)."""


def _is_fifo(path: str) -> bool:
    # Only decides whether to wait; what is written to is decided on the descriptor.
    try:
        return stat.S_ISFIFO(os.lstat(path).st_mode)
    except OSError:
        return False


def _translate_open(path: str, flags: int, mode: int) -> int:
    """``os.open``, with every refusal turned into a vmsniff error that names ``path``.
    ``FileExistsError`` and ``FileNotFoundError`` of a second open pass through: the caller
    retries those."""
    try:
        return os.open(path, flags, mode)
    except FileExistsError:
        raise
    except FileNotFoundError:
        if flags & os.O_CREAT:
            raise NotFound(f"cannot create {path}: no such directory") from None
        raise
    except PermissionError:
        raise PermissionDenied(
            f"cannot write {path}: permission denied",
            hint="pick a directory you may write to (after -Z, the new user's)",
        ) from None
    except IsADirectoryError:
        raise UsageError(f"cannot write {path}: it is a directory") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(
                f"not writing {path}: it is a symbolic link, and vmsniff does not follow links",
                hint="give the link's target itself, or another name",
            ) from None
        if exc.errno == errno.ENXIO:  # a FIFO with no reader under O_NONBLOCK, or a socket
            raise _NoReader from None
        if exc.errno == errno.ENOTDIR:
            raise NotFound(f"cannot create {path}: a part of the path is not a directory") from None
        raise FileError(f"cannot write {path}: {exc.strerror}") from None


def _check_existing(
    fd: int, path: str, *, force: bool, mine: Identity | None, keep: frozenset[Identity]
) -> None:
    """Decide on an existing file by what the descriptor is; truncate a regular one only when
    allowed to."""
    st = os.fstat(fd)
    mode = st.st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return
    if not stat.S_ISREG(mode):
        raise UsageError(f"not writing {path}: not a regular file, FIFO or character device")
    if (st.st_dev, st.st_ino) in keep:
        # `-r x.pcap -w x.pcap --force` would truncate the input before reading it.
        raise UsageError(f"not writing {path}: it is the file being read (-r)")
    if mine is not None and mine != (st.st_dev, st.st_ino) and not force:
        # Someone put another file under our name since we closed ours: leave it alone.
        raise UsageError(f"{path} was replaced while rotating; not overwriting it")
    if not force and mine is None:
        raise UsageError(
            f"{path} exists; not overwriting it",
            hint="pick another name, or pass --force to truncate it (its owner and mode stay)",
        )
    try:
        os.ftruncate(fd, 0)
    except OSError as exc:
        raise FileError(f"cannot truncate {path}: {exc.strerror}") from None


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise
        view = view[n:]


_SMALL_RECORDS = 256  # average bytes per record below which write_records joins them


def _writev_all(fd: int, parts: list[Any]) -> None:
    """Write every byte of ``parts``, in order, with as few ``writev`` calls as the kernel
    allows (at most IOV_MAX buffers each; a short write resumes where it stopped)."""
    i = 0
    while i < len(parts):
        chunk = parts[i : i + IOV_MAX]
        try:
            n = os.writev(fd, chunk)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise
        for part in chunk:
            if n < len(part):
                parts = [memoryview(part)[n:], *parts[i + 1 :]]
                i = 0
                break
            n -= len(part)
            i += 1


def _whole_landed(fd: int, on_disk: int, fmt: str, pieces: list[Any]) -> int:
    """After a failed write of ``pieces`` at offset ``on_disk``: how many of their bytes form
    whole records on disk. The file is truncated to that length (a record cut by a short
    write would make every reader stop with an error). Scatter stretches are read back from
    the ring block they point into, which is not handed back before this returns."""
    try:
        landed = os.fstat(fd).st_size - on_disk
        keep = 0
        if landed > 0:
            keep = whole_prefix(fmt, joined(pieces), landed, file_header=on_disk == 0)
        os.ftruncate(fd, on_disk + keep)
    except OSError:
        return 0
    return keep


class FileSink(Sink):
    """One capture file (or stdout for ``-``), rotated like tcpdump's -C/-G/-W."""

    def __init__(
        self,
        path: str,
        fmt: str,
        snaplen: int,
        *,
        rotation: Rotation = Rotation(),
        flush_each: bool = False,
        force: bool = False,
        application: str = "vmsniff receive",
        keep: frozenset[Identity] = frozenset(),
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """``keep``: (device, inode) of files never to write, whatever ``force`` says (the
        ``-r`` input). ``stop``: ends the wait for a FIFO's reader (the run's stop flag)."""
        if path == "-" and rotation.active:
            raise UsageError("-C and -G need a file name, not -w -")
        self.path = path
        self.fmt = fmt
        self.snaplen = snaplen
        self.rotation = rotation
        self.flush_each = flush_each
        self.force = force
        self.application = application
        self.files: list[str] = []
        self.keep = keep
        self.stop = stop
        self._created: dict[str, Identity] = {}  # name -> (st_dev, st_ino)
        self._fd = -1
        self._buf = bytearray()
        self._size = 0
        self._on_disk: int | None = None  # whole-record bytes in our file (None: stdout)
        self._packets_in_file = 0
        self._count = 0  # -C file number
        self._interval: int | None = None  # -G interval number of the open file
        self._generations = 0
        self._encoder: Encoder = new_encoder(fmt, snaplen, application)
        self._digits = len(str(rotation.files - 1)) if rotation.files else 0
        if path == "-":
            self._fd = 1
            self._start_file()
        elif rotation.seconds is None:
            self._open(self._name(None))

    # -- naming and opening -----------------------------------------------------------------

    def _name(self, ts_ns: int | None) -> str:
        base = self.path
        if self.rotation.seconds is not None and ts_ns is not None:
            base = time.strftime(base, time.localtime(ts_ns // 1_000_000_000))
        if self.rotation.size is not None and (self._count or self._digits):
            return f"{base}{self._count:0{self._digits}d}"
        return base

    def _open(self, name: str) -> None:
        fd = _open_file(name, force=self.force, mine=self._created.get(name), keep=self.keep,
                        stop=self.stop)  # fmt: skip
        st = os.fstat(fd)
        self._fd = fd
        self._created[name] = (st.st_dev, st.st_ino)
        self._on_disk = 0 if stat.S_ISREG(st.st_mode) else None
        self.files.append(name)
        self._encoder = new_encoder(self.fmt, self.snaplen, self.application)
        self._start_file()

    def _start_file(self) -> None:
        header = self._encoder.header()
        self._buf += header
        self._size = len(header)
        self._packets_in_file = 0
        self.flush()  # an empty capture is still a valid file

    def _rotate(self, ts_ns: int, new_interval: bool) -> None:
        self.flush()
        os.close(self._fd)
        self._fd = -1
        if new_interval:
            self._count = 0
            self._generations += 1
            files = self.rotation.files
            if files is not None and self.rotation.size is None and self._generations >= files:
                self.finished = True
                return
        else:
            self._count += 1
            if self.rotation.files is not None:
                self._count %= self.rotation.files
        self._open(self._name(ts_ns))

    # -- writing ------------------------------------------------------------------------------

    def write(self, batch: list[Packet] | Records) -> None:
        if isinstance(batch, Records):
            self._write_records(batch.pieces, batch.packets)
            return
        rot = self.rotation
        encode = self._encoder.encode
        for pkt in batch:
            if self.finished:
                return
            if rot.seconds is not None:
                interval = pkt.ts_ns // (rot.seconds * 1_000_000_000)
                if self._interval is None:
                    self._interval = interval
                    self._open(self._name(pkt.ts_ns))
                    encode = self._encoder.encode
                elif interval != self._interval:
                    self._interval = interval
                    self._rotate(pkt.ts_ns, True)
                    if self.finished:
                        return
                    encode = self._encoder.encode
            rec = encode(pkt)
            if rot.size is not None and self._packets_in_file and self._size + len(rec) > rot.size:
                self._rotate(pkt.ts_ns, False)
                encode = self._encoder.encode
                rec = encode(pkt)  # pcapng: the new file needs the interface block again
            self._buf += rec
            self._size += len(rec)
            self._packets_in_file += 1
            if self.flush_each or len(self._buf) >= _BUFFER:
                self.flush()

    @property
    def encoder(self) -> Encoder:
        """The encoder of the open file (a new one per rotated file)."""
        return self._encoder

    def _write_records(self, records: list[Any], packets: int) -> None:
        """Records already encoded by :attr:`encoder` (the fast paths), ``packets`` of them
        packets, in order: bytes-like pieces (a record each, or a run of them) and
        :class:`~.scatter.Scatter` stretches, written by ``writev`` straight from the ring
        before this returns. Small bytes records are joined into the buffer. Only without
        rotation: a record batch cannot be split across files."""
        if self.rotation.active:
            raise ValueError("encoded records cannot be rotated")
        if not records:
            return
        size = sum(map(len, records))
        self._size += size
        self._packets_in_file += packets
        if not any(isinstance(r, Scatter) for r in records):
            if size < _SMALL_RECORDS * len(records):
                # Small records: one copy into the buffer beats the kernel walking iovecs.
                self._buf += b"".join(records)
                if self.flush_each or len(self._buf) >= _BUFFER:
                    self.flush()
                return
            self.flush()
            try:
                _writev_all(self._fd, records)
            except OSError as exc:
                self._failed_write(exc, records)
            if self._on_disk is not None:
                self._on_disk += size
            return
        for piece in records:
            if isinstance(piece, Scatter) or len(piece) >= _BUFFER:
                self.flush()
                try:
                    if isinstance(piece, Scatter):
                        write_scatter(self._fd, piece)
                    else:
                        _write_all(self._fd, piece)
                except OSError as exc:
                    self._failed_write(exc, [piece])
                if self._on_disk is not None:
                    self._on_disk += len(piece)
            else:
                self._buf += piece
        if self.flush_each or len(self._buf) >= _BUFFER:
            self.flush()

    def flush(self) -> None:
        if self._buf and self._fd >= 0:
            try:
                _write_all(self._fd, self._buf)
            except OSError as exc:
                self._failed_write(exc, [self._buf])
            if self._on_disk is not None:
                self._on_disk += len(self._buf)
            self._buf.clear()

    def _failed_write(self, exc: OSError, pieces: list[Any]) -> NoReturn:
        """A write failed part way (disk full, quota, I/O error, a closed pipe): cut our file
        back to its last whole record, so that it stays readable, and stop writing to it.

        A closed pipe is re-raised as is (the CLI makes it a quiet exit). Only a regular file
        vmsniff opened itself is cut: stdout may be someone's file opened for appending.
        """
        fd, self._fd = self._fd, -1
        try:
            if isinstance(exc, BrokenPipeError):
                raise exc
            where = "stdout" if fd == 1 else self.files[-1]
            hint = None
            if self._on_disk is not None:
                self._on_disk += _whole_landed(fd, self._on_disk, self.fmt, pieces)
                hint = f"{where} keeps the whole records before it ({self._on_disk} bytes)"
            raise FileError(f"writing {where}: {exc.strerror or exc}", hint=hint) from None
        finally:
            self._buf = bytearray()  # (not clear(): the failed write's view may still hold it)
            if fd > 2:
                os.close(fd)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._fd > 2:
                os.close(self._fd)
            self._fd = -1


class KeyedSink(Sink):
    """``-w`` with ``{key}``: one :class:`FileSink` per session (GRE key or ERSPAN session id;
    ``none`` when the envelope has neither); with ``{nic}``, one per interface the packets are
    filed under (``receive --manifest``: ``c-private/eth0`` becomes ``c-private_eth0``)."""

    def __init__(self, template: str, factory: Callable[[str], FileSink]) -> None:
        self.field = "{nic}" if "{nic}" in template else "{key}"
        if self.field not in template:
            raise UsageError("a per-session -w template needs {key} or {nic}")
        self.template = template
        self._factory = factory
        self.sinks: dict[object, FileSink] = {}

    def _path(self, value: object) -> str:
        text = "none" if value is None else str(value).replace("/", "_")
        return self.template.replace(self.field, text)

    def write(self, batch: list[Packet] | Records) -> None:
        assert not isinstance(batch, Records), "records go to a plain FileSink only"
        groups: dict[object, list[Packet]] = {}
        by_nic = self.field == "{nic}"
        for pkt in batch:
            groups.setdefault(pkt.interface if by_nic else pkt.session, []).append(pkt)
        for session, group in groups.items():
            sink = self.sinks.get(session)
            if sink is None:
                sink = self.sinks[session] = self._factory(self._path(session))
            sink.write(group)

    @property
    def files(self) -> list[str]:
        return [f for s in self.sinks.values() for f in s.files]

    def flush(self) -> None:
        for sink in self.sinks.values():
            sink.flush()

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.close()


def dissect(pkt: Packet) -> Frame:
    """The packet dissected (:mod:`vmsniff.dissect`), filed under its pcapng interface (the
    NIC, or ``gre-key-100`` for receive) and marked with its direction."""
    name = pkt.interface
    if name is None and pkt.session is not None:
        name = interface_name(pkt.session, 0, pkt.erspan)
    return decode(pkt.data, pkt.linktype, ts_ns=pkt.ts_ns, length=pkt.origlen, interface=name,
                  direction=direction_from_epb(pkt.direction))  # fmt: skip


def summary(pkt: Packet, printer: Printer | None = None, *, json_lines: bool = False) -> str:
    """One line for ``--print``: the packet dissected (:func:`dissect`) and laid out as
    tcpdump does; with ``json_lines`` the packet API's JSON instead."""
    frame = dissect(pkt)
    printer = printer if printer is not None else Printer()
    return printer.json_line(frame) if json_lines else printer.line(frame)


class PrintSink(Sink):
    """``--print`` (and no ``-w``): one line per packet on a text stream, as tcpdump prints
    (:mod:`vmsniff.dissect.printer`), or JSON Lines."""

    def __init__(
        self,
        stream: IO[str],
        *,
        flush_each: bool = True,
        options: PrintOptions | None = None,
        json_lines: bool = False,
    ) -> None:
        self.stream = stream
        self.flush_each = flush_each
        self.printer = Printer(options or PrintOptions())
        self.json_lines = json_lines

    def write(self, batch: list[Packet] | Records) -> None:
        assert not isinstance(batch, Records), "records go to a plain FileSink only"
        if batch:
            printer, json_lines = self.printer, self.json_lines
            self.stream.write("".join(summary(p, printer, json_lines=json_lines) + "\n"
                                      for p in batch))  # fmt: skip
            if self.flush_each:
                self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class TeeSink(Sink):
    """Several sinks fed the same packets (``-w FILE --print``)."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks

    @property
    def finished(self) -> bool:  # type: ignore[override]
        return any(s.finished for s in self.sinks)

    def write(self, batch: list[Packet] | Records) -> None:
        for s in self.sinks:
            s.write(batch)

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()

    def close(self) -> None:
        for s in self.sinks:
            s.close()


class FlowsSink(Sink):
    """``--flows``: every packet counted into a flow table (:mod:`vmsniff.flows`), read at
    the end (:func:`flow_table`)."""

    def __init__(self) -> None:
        from vmsniff.flows.table import FlowTable

        self.table = FlowTable()

    def write(self, batch: list[Packet] | Records) -> None:
        from vmsniff.dissect.flow import flow_key as observe

        assert not isinstance(batch, Records), "records go to a plain FileSink only"
        add = self.table.add
        for pkt in batch:
            add(pkt.ts_ns, observe(pkt.data, pkt.linktype, pkt.origlen))

    def close(self) -> None:
        pass


def flow_table(sink: Sink) -> Any:
    """The :class:`~vmsniff.flows.table.FlowTable` of ``--flows`` in ``sink``, or None."""
    sinks = sink.sinks if isinstance(sink, TeeSink) else [sink]
    return next((s.table for s in sinks if isinstance(s, FlowsSink)), None)


def written_files(sink: Sink) -> list[str]:
    """The capture files ``sink`` (a file sink, a per-session one, or a tee of them) wrote."""
    sinks = sink.sinks if isinstance(sink, TeeSink) else [sink]
    return [f for s in sinks for f in getattr(s, "files", [])]


@dataclass(frozen=True, slots=True)
class OutputOptions:
    """Where a run's packets go, as ``receive``, ``capture`` and ``snoop`` take it: ``-w``
    (FILE, ``-`` for stdout, a ``{key}`` template), ``--print`` (the stream its lines go to),
    ``--format``, ``--force``, tcpdump's ``-C``/``-G``/``-W`` and ``-U``, ``--flows``, and a
    library's own sinks. Checked when made."""

    write: str | None = None
    print_to: IO[str] | None = None
    fmt: str | None = None  #: pcap or pcapng; None: the command's default
    force: bool = False
    rotation: Rotation = Rotation()
    packet_buffered: bool = False
    print_options: Any = None  #: PrintOptions for the printed lines (None: tcpdump's default)
    json_lines: bool = False  #: printed lines as JSON Lines (with --json)
    flows: bool = False  #: --flows: count the packets into a flow table too
    #: more sinks fed the same packets: a library's own (:class:`vmsniff.frames.FrameSink`)
    sinks: tuple[Sink, ...] = ()

    def __post_init__(self) -> None:
        # No output at all is refused when the sink is opened (open_sink): a library adds its
        # own sinks to an empty OutputOptions() (vmsniff.frames).
        if self.write == "-" and self.print_to is not None:
            raise UsageError("-w - and --print both want stdout; pick one")
        if self.write is None and self.rotation.active:
            raise UsageError("-C/-G/-W need -w FILE")

    def open(
        self,
        default_fmt: str,
        snaplen: int,
        *,
        application: str,
        keep: frozenset[Identity] = frozenset(),
        stop: Callable[[], bool] = lambda: False,
    ) -> Sink:
        """The sink (see :func:`open_sink`)."""
        return open_sink(
            self.write,
            self.fmt or default_fmt,
            snaplen,
            application=application,
            rotation=self.rotation,
            flush_each=self.packet_buffered,
            force=self.force,
            print_to=self.print_to,
            keep=keep,
            stop=stop,
            print_options=self.print_options,
            json_lines=self.json_lines,
            flows=self.flows,
            extra=self.sinks,
        )


def open_sink(
    write: str | None,
    fmt: str,
    snaplen: int,
    *,
    application: str,
    rotation: Rotation = Rotation(),
    flush_each: bool = False,
    force: bool = False,
    print_to: IO[str] | None = None,
    keep: frozenset[Identity] = frozenset(),
    stop: Callable[[], bool] = lambda: False,
    print_options: Any = None,
    json_lines: bool = False,
    flows: bool = False,
    extra: tuple[Sink, ...] = (),
) -> Sink:
    """The sink for ``-w``/``--print`` as ``receive``, ``capture`` and ``snoop`` take them:
    a :class:`FileSink` (a :class:`KeyedSink` when ``write`` holds ``{key}``), a
    :class:`PrintSink` on ``print_to``, a :class:`FlowsSink`, the ``extra`` sinks, or several
    (:class:`TeeSink`). The file is created (or a FIFO's reader waited for) here, so call this
    before creating anything a failure would leave behind."""
    if write is None and print_to is None and not flows and not extra:
        raise UsageError("nothing to do: give -w FILE, -w - or --print")
    if write is None and rotation.active:
        raise UsageError("-C/-G/-W need -w FILE")
    sinks: list[Sink] = []
    if write is not None:

        def factory(path: str) -> FileSink:
            return FileSink(path, fmt, snaplen, rotation=rotation, flush_each=flush_each,
                            force=force, application=application, keep=keep, stop=stop)  # fmt: skip

        keyed = "{key}" in write or "{nic}" in write
        sinks.append(KeyedSink(write, factory) if keyed else factory(write))
    if print_to is not None:
        sinks.append(PrintSink(print_to, flush_each=True, options=print_options,
                               json_lines=json_lines))  # fmt: skip
    if flows:
        sinks.append(FlowsSink())
    sinks.extend(extra)
    return sinks[0] if len(sinks) == 1 else TeeSink(sinks)
