"""``open_capture_file``: tcpdump's ``-w`` semantics without following links or chmodding
what vmsniff did not create (issue #13). Decisions are taken on the open descriptor."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vmsniff.errors import NotFound, PermissionDenied, UsageError
from vmsniff.pipeline.sinks import FileSink, Rotation, open_capture_file

from .test_sinks import pkt


def _write(fd: int, data: bytes = b"new") -> None:
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_new_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        _write(open_capture_file(str(tmp_path / "n.pcap"), force=False))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "n.pcap").stat().st_mode) == 0o600


@pytest.mark.parametrize("force", [False, True])
def test_symlink_is_refused_and_its_target_untouched(tmp_path: Path, force: bool) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    target.chmod(0o644)
    link = tmp_path / "link.pcap"
    link.symlink_to(target)
    with pytest.raises(UsageError, match="symbolic link"):
        open_capture_file(str(link), force=force)
    assert target.read_bytes() == b"precious"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_dangling_symlink_is_refused_and_nothing_created(tmp_path: Path) -> None:
    link = tmp_path / "link.pcap"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="symbolic link"):
        open_capture_file(str(link), force=True)
    assert not (tmp_path / "elsewhere").exists()


def test_existing_file_refused_then_truncated_in_place_keeping_owner_and_mode(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(b"precious")
    os.chown(path, 65534, 65534)
    path.chmod(0o640)
    inode = path.stat().st_ino
    with pytest.raises(UsageError, match="exists; not overwriting"):
        open_capture_file(str(path), force=False)
    assert path.read_bytes() == b"precious"
    _write(open_capture_file(str(path), force=True))
    st = path.stat()
    assert path.read_bytes() == b"new"
    assert (st.st_ino, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
        inode,
        65534,
        65534,
        0o640,
    )


def test_character_device_needs_no_force_and_keeps_its_mode(tmp_path: Path) -> None:
    """A private twin of /dev/null (char 1:3): the old code made /dev/null 0600 with --force."""
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    null.chmod(0o666)
    for force in (False, True):
        _write(open_capture_file(str(null), force=force))
        assert stat.S_IMODE(null.stat().st_mode) == 0o666


def test_fifo_needs_no_force(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o644)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so the writer's open cannot block
    try:
        _write(open_capture_file(str(fifo), force=False), b"through")
        assert os.read(reader, 100) == b"through"
    finally:
        os.close(reader)
    assert stat.S_IMODE(fifo.stat().st_mode) == 0o644


def test_directory_and_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        open_capture_file(str(tmp_path), force=True)
    with pytest.raises(NotFound, match="no such directory"):
        open_capture_file(str(tmp_path / "no" / "x.pcap"), force=False)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotFound, match="not a directory"):
        open_capture_file(str(tmp_path / "file" / "x.pcap"), force=False)


def test_permission_denied_names_the_path(tmp_path: Path) -> None:
    # As nobody in a directory only root may write (the CLI test does it across a process).
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            open_capture_file(str(tmp_path / "x.pcap"), force=False)
        except PermissionDenied as exc:
            code = 0 if str(tmp_path / "x.pcap") in exc.message else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not (tmp_path / "x.pcap").exists()


def test_rotation_wraps_over_its_own_files_only(tmp_path: Path) -> None:
    base = tmp_path / "r.pcap"
    sink = FileSink(str(base), "pcap", 65535, rotation=Rotation(size=200, files=2))
    sink.write([pkt(n, size=100) for n in range(3)])  # r.pcap0, r.pcap1, r.pcap0 again
    sink.close()
    assert sink.files == [f"{base}0", f"{base}1", f"{base}0"]
    # A second run did not create them: they are refused without --force.
    with pytest.raises(UsageError, match="exists"):
        FileSink(str(base), "pcap", 65535, rotation=Rotation(size=200, files=2))


def test_rotation_refuses_a_file_swapped_in_under_its_name(tmp_path: Path) -> None:
    base = tmp_path / "r.pcap"
    sink = FileSink(str(base), "pcap", 65535, rotation=Rotation(size=200, files=2))
    sink.write([pkt(0, size=100), pkt(1, size=100)])  # r.pcap0 done, r.pcap1 open
    first = Path(f"{base}0")
    first.rename(tmp_path / "kept")  # (kept: a freed inode number could be reused at once)
    first.write_bytes(b"someone else's")
    with pytest.raises(UsageError, match="replaced"):
        sink.write([pkt(2, size=100)])
    sink.close()
    assert first.read_bytes() == b"someone else's"
