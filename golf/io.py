"""Crash-safe output: atomic writes, stale-temp clean-up, one lock per run directory and operation.

Every result golf writes (json reports, artifacts, checkpoints) goes through here:

* ``StagedFile`` / ``atomic_output``: write to ``.<name>.<host>.<pid>.golftmp`` beside the target, fsync it,
  rename it over the target, fsync the directory. Readers see the old file or the new one, never a mix; a
  failure (disk full included) removes the temp file and leaves the old target untouched. Files are created
  with the user's umask (0666 & ~umask), like ``open()`` would (``tempfile.mkstemp`` gives 0600).
* ``remove_stale_temps``: temp files of processes that died (SIGKILL, OOM, node loss) are removed by the next
  golf run in that directory (same host, pid no longer alive).
* ``run_lock``: an ``flock`` on ``<dir>/.golf-<operation>.lock`` holding the holder's pid; a second export (or
  training, or eval) into the same directory exits with one line naming that pid.
* ``DiskFullError``: ENOSPC / EDQUOT while writing becomes one line naming the file.

Hydra-free (part of the core).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from golf.errors import GolfError

TEMP_SUFFIX = ".golftmp"
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<host>[^.]+)\.(?P<pid>\d+)" + re.escape(TEMP_SUFFIX) + "$")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class OutputError(GolfError, OSError):
    """A result file cannot be written (disk full, permission denied, not a directory); one line."""


class DiskFullError(OutputError):
    """The disk (or quota) filled up while writing; the message names the file and its directory."""


class LockedError(GolfError):
    """Another golf process holds this run directory's lock for the same operation (message names its pid)."""


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "host"


def umask_mode(directory: bool = False) -> int:
    """Permission bits a plain ``open()`` / ``mkdir()`` gets under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def temp_path(path: str | os.PathLike) -> Path:
    """The temp file a write of ``path`` by this process uses: ``.<name>.<host>.<pid>.golftmp`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{_host()}.{os.getpid()}{TEMP_SUFFIX}")


def output_error(path: str | os.PathLike, exc: OSError) -> OutputError:
    """One-line error for an OSError raised while writing ``path``."""
    path = Path(path)
    if exc.errno in _DISK_FULL:
        return DiskFullError(f"disk full writing {path.name} in {path.parent} ({exc.strerror}); nothing was written")
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        return OutputError(f"cannot write {path}: {blocker} is not a directory")
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")


def fsync_dir(directory: str | os.PathLike) -> None:
    """fsync a directory so a rename inside it survives a power loss (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class StagedFile:
    """A file written to a temp path now and renamed over ``path`` later (``commit``) or dropped (``discard``).

    ``tmp`` is created empty with the umask's permissions; write it with ``write``/``write_bytes`` or hand
    ``tmp`` to a library (``torch.save``). ``commit`` fsyncs and renames; ``discard`` removes the temp file.
    OSErrors become ``OutputError`` / ``DiskFullError`` naming ``path``, with the temp file removed.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = temp_path(self.path)
        self.done = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp.unlink(missing_ok=True)
            os.close(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as exc:
            self.tmp.unlink(missing_ok=True)
            raise output_error(self.path, exc) from None

    def write_bytes(self, data: bytes | memoryview) -> None:
        """Replace the temp file's content with ``data``."""
        self.write([data])

    def write(self, chunks) -> None:
        """Replace the temp file's content with the concatenation of ``chunks`` (bytes-like)."""
        try:
            with open(self.tmp, "wb") as f:
                for c in chunks:
                    f.write(c)
        except OSError as exc:
            self.discard()
            raise output_error(self.path, exc) from None

    def commit(self) -> Path:
        """fsync the temp file, rename it over ``path``, fsync the directory. Returns ``path``."""
        try:
            fd = os.open(self.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.discard()
            raise output_error(self.path, exc) from None
        self.done = True
        fsync_dir(self.path.parent)
        return self.path

    def discard(self) -> None:
        """Remove the temp file (idempotent); the target is untouched."""
        if not self.done:
            self.tmp.unlink(missing_ok=True)
            self.done = True


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_output(p) as tmp: torch.save(obj, tmp)`` -> ``p`` replaced atomically on success only."""
    staged = StagedFile(path)
    try:
        yield staged.tmp
    except OSError as exc:
        staged.discard()
        raise output_error(path, exc) from None
    except BaseException:
        staged.discard()
        raise
    staged.commit()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see module docstring)."""
    staged = StagedFile(path)
    staged.write_bytes(data)
    return staged.commit()


def json_text(data: dict) -> str:
    """The JSON text golf writes for reports: indented, sorted keys, trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def atomic_write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write ``data`` as JSON to ``path`` atomically."""
    return atomic_write_bytes(path, json_text(data).encode("utf-8"))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line with a single write; on failure the file is cut back to its old size (no partial line)."""
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    except OSError as exc:
        raise output_error(path, exc) from None
    try:
        size = os.fstat(fd).st_size
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise output_error(path, exc) from None
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Remove temp files in ``directory`` left by dead golf processes of this host; return what was removed."""
    directory = Path(directory)
    removed: list[Path] = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    host = _host()
    for p in entries:
        m = _TEMP_RE.match(p.name)
        if not m or m["host"] != host or int(m["pid"]) == os.getpid() or _pid_alive(int(m["pid"])):
            continue
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def lock_path(directory: str | os.PathLike, operation: str) -> Path:
    return Path(directory) / f".golf-{operation}.lock"


@contextmanager
def run_lock(directory: str | os.PathLike, operation: str) -> Iterator[Path]:
    """Hold ``<directory>/.golf-<operation>.lock`` (flock) for the block, then remove stale temp files there.

    Raises LockedError (one line naming the holder's pid) when another process holds it, OutputError when the
    lock file cannot be created. The lock is released when the process exits, however it exits.
    """
    directory = Path(directory)
    path = lock_path(directory, operation)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise output_error(path, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 128, 0).decode("utf-8", "replace").split()
        os.close(fd)
        who = f"pid {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
        raise LockedError(f"{directory}: another {operation} ({who}) is running in this directory; "
                          f"wait for it to finish or use another directory") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {_host()}\n".encode(), 0)
        remove_stale_temps(directory)
        yield path
    finally:
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
