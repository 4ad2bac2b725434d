"""The output folder: an append-only, fsynced `reports.jsonl`, and atomic writes of the rest.

Crash safety rests on three rules. Each item's block of records goes to the file in one
`write` followed by `fsync`, so a kill leaves at most one block cut short. On resume the file
is cut back to the end of its last committed block (see `records.py`), so nothing half
written survives and no item is written twice. Every other file (summaries, thumbnails) is
written to a temporary name and renamed into place, so a reader sees the old or the new
version, never a mix. A full disk or a read-only folder stops the run with one clear message
and the log rolled back to its last complete block.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FfaaError
from .records import FINAL_RECORDS, Block

log = logging.getLogger(__name__)

LOG_NAME = "reports.jsonl"
THUMBS = "thumbs"


class OutputError(FfaaError):
    """The output folder cannot be used or written (exists, read-only, disk full, damaged log).

    `says_how_to_go_on`: the message already tells the user what to rerun, so callers add nothing.
    """

    def __init__(self, message: str, says_how_to_go_on: bool = False):
        super().__init__(message)
        self.says_how_to_go_on = says_how_to_go_on


def describe_os_error(exc: OSError) -> str:
    """A short human reason for an OSError, naming the common cases of an output folder."""
    if exc.errno == errno.ENOSPC:
        return "disk full"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    return exc.strerror or str(exc)


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogScan:
    """What a `reports.jsonl` holds: complete blocks, and where the complete part ends.

    good_size: byte length of the committed prefix (up to the last final record); dropped:
    lines after it (a torn line and/or the records of an item cut short by a crash).
    """

    blocks: tuple[tuple[dict[str, Any], ...], ...]
    good_size: int
    dropped: int

    def items(self) -> Iterator[dict[str, Any]]:
        """The `item` records (one per committed item)."""
        return (b[-1] for b in self.blocks if b[-1].get("record") == "item")

    def done(self) -> set[tuple[str, str]]:
        """(item key, mode) of every committed item."""
        return {(r["batch"]["key"], r["batch"]["mode"]) for r in self.items()}

    def failed(self) -> set[tuple[str, str]]:
        """(item key, mode) of the items whose latest committed analysis ended in an error."""
        latest = {(r["batch"]["key"], r["batch"]["mode"]): r.get("status") for r in self.items()}
        return {key for key, status in latest.items() if status == "error"}

    def records(self) -> Iterator[dict[str, Any]]:
        for block in self.blocks:
            yield from block


def scan_log(path: Path) -> LogScan:
    """Read a log written by `ReportLog`, tolerating what a killed writer leaves behind.

    A line that is not JSON is accepted only as the last line (a torn write); anywhere else
    the file was damaged by something else and we refuse to guess.
    """
    try:
        data = path.read_bytes() if path.exists() else b""
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {describe_os_error(exc)}") from exc
    lines = data.split(b"\n")
    last = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
    blocks, pending, good_size, offset = [], [], 0, 0
    for i, raw in enumerate(lines):
        end = offset + len(raw) + (1 if i < len(lines) - 1 else 0)
        if raw.strip():
            record = _parse_line(path, raw, i + 1, torn_ok=i == last)
            if record is None:
                break
            pending.append(record)
            if record.get("record") in FINAL_RECORDS:
                blocks.append(tuple(pending))
                pending, good_size = [], end
        offset = end
    dropped = sum(1 for raw in data[good_size:].split(b"\n") if raw.strip())
    return LogScan(tuple(blocks), good_size, dropped)


def _parse_line(path: Path, raw: bytes, number: int, torn_ok: bool) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        if torn_ok:
            return None
        raise OutputError(f"{path}:{number}: not valid JSON, and not at the end of the file "
                          "(the log was damaged or edited)") from None
    if not isinstance(record, dict) or "record" not in record:
        raise OutputError(f"{path}:{number}: not an ffaa batch record")
    return record


# -- writing -----------------------------------------------------------------------------------


class ReportLog:
    """The append-only log of one output folder; one instance per run, in one process."""

    def __init__(self, folder: Path, fd: int, size: int):
        self.folder = folder
        self.path = folder / LOG_NAME
        self._fd = fd
        self._size = size

    @classmethod
    def open(cls, folder: Path, resume: bool) -> tuple[ReportLog, LogScan]:
        """Open (or create) the folder's log. Refuses a non-empty folder unless resuming;
        when resuming, cuts the file back to its last complete block first.
        """
        prepare_folder(folder, resume)
        path = folder / LOG_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {describe_os_error(exc)}") from exc
        try:
            _lock(fd, folder)  # before the scan: another run may be appending
            scan = scan_log(path)
            if os.fstat(fd).st_size != scan.good_size:
                os.ftruncate(fd, scan.good_size)
            os.fsync(fd)
            _fsync_dir(folder)
        except OSError as exc:
            os.close(fd)
            raise OutputError(f"cannot write {path}: {describe_os_error(exc)}") from exc
        except BaseException:
            os.close(fd)
            raise
        return cls(folder, fd, scan.good_size), scan

    def append(self, block: Block) -> None:
        """Write the block's thumbnails, then its records in one append + fsync.

        On any write error the log is cut back to its size before this block, so the file
        never holds half a block, and the error is raised as an OutputError.
        """
        for name, data in block.thumbs:
            atomic_write(self.folder / THUMBS / name, data, sync=False)
        self._write(block.encode())

    def _write(self, data: bytes) -> None:
        before = self._size
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except OSError as exc:
            self._rollback(before)
            raise OutputError(
                f"cannot write {self.path}: {describe_os_error(exc)}; the last item was not saved, "
                "earlier items are; fix this and rerun with --resume", says_how_to_go_on=True,
            ) from exc
        self._size = before + len(data)

    def _rollback(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
        except OSError:
            pass  # resume cuts the file back to its last complete block anyway

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ReportLog:  # noqa: PYI034 -- typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _lock(fd: int, folder: Path) -> None:
    """Hold the log for this run: a second run resuming into the same folder at the same time
    would analyse the same items again and cut off the first one's appends."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks, one run at a time is up to the user
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputError(f"another ffaa batch is writing to {folder}; let it finish (or stop it), then "
                          "rerun with --resume", says_how_to_go_on=True) from None
    except OSError as exc:  # a file system without locks (NFS without lockd, some FUSE mounts)
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        log.warning("warning: %s cannot be locked (%s): make sure no other ffaa batch writes there at the "
                    "same time", folder, describe_os_error(exc))


def check_folder(folder: Path, resume: bool) -> None:
    """Refuse an output folder that may not be used; creates nothing."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {folder} exists and is not a folder")
    used = folder.is_dir() and any(folder.iterdir())
    if used and not resume:
        raise OutputError(
            f"output folder {folder} is not empty: add --resume to finish the run it holds, "
            "or choose a new --out folder"
        )
    if used and not (folder / LOG_NAME).is_file():
        raise OutputError(f"cannot resume in {folder}: it holds files but no {LOG_NAME}, so it is not a batch folder")


def prepare_folder(folder: Path, resume: bool) -> None:
    """Create the output folder, or check that an existing one may be used."""
    check_folder(folder, resume)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {folder}: {describe_os_error(exc)}") from exc


def atomic_write(path: Path, data: bytes, sync: bool = True) -> None:
    """Write `data` to `path` through a temporary file and a rename: old or new, never half."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own: a --summarize-only beside a running batch writes the same files.
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; reports are ordinary files
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {describe_os_error(exc)}") from exc


def _fsync_dir(folder: Path) -> None:
    """Make the log's directory entry durable too (a new file can vanish after a crash)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
