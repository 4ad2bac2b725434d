"""The batch log: one append + fsync per item, torn tails cut on resume, write errors rolled back."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ffaa.batch.journal import LOG_NAME, OutputError, ReportLog, atomic_write, scan_log
from ffaa.batch.records import BATCH_SCHEMA, Block


def block(key: str, faces: int = 2, mode: str = "full") -> Block:
    batch = {"key": key, "mode": mode}
    faces_ = [{"schema": BATCH_SCHEMA, "record": "face", "batch": batch, "n": i} for i in range(faces)]
    return Block((*faces_, {"schema": BATCH_SCHEMA, "record": "item", "batch": batch, "status": "ok"}))


def test_blocks_round_trip_and_mark_items_done(tmp_path):
    log, scan = ReportLog.open(tmp_path / "out", resume=False)
    with log:
        log.append(block("a"))
        log.append(block("b", mode="triage"))
    scan = scan_log(tmp_path / "out" / LOG_NAME)
    assert scan.done() == {("a", "full"), ("b", "triage")}
    assert [len(b) for b in scan.blocks] == [3, 3] and scan.dropped == 0


def test_resume_cuts_a_torn_line_and_an_unfinished_block(tmp_path):
    out = tmp_path / "out"
    with ReportLog.open(out, resume=False)[0] as log:
        log.append(block("a"))
    good = (out / LOG_NAME).stat().st_size
    partial = block("b").encode()
    with open(out / LOG_NAME, "ab") as fh:  # a kill in the middle of item b's block
        fh.write(partial[: partial.index(b"\n") + 1] + partial[partial.index(b"\n") + 1 :][:17])
    scan = scan_log(out / LOG_NAME)
    assert scan.done() == {("a", "full")} and scan.good_size == good and scan.dropped == 2
    with pytest.raises(OutputError, match="not empty: add --resume"):
        ReportLog.open(out, resume=False)
    log, scan = ReportLog.open(out, resume=True)
    with log:
        assert (out / LOG_NAME).stat().st_size == good
        log.append(block("b"))
    assert scan_log(out / LOG_NAME).done() == {("a", "full"), ("b", "full")}


def test_damage_in_the_middle_is_refused(tmp_path):
    path = tmp_path / LOG_NAME
    path.write_bytes(block("a").encode() + b"{not json\n" + block("b").encode())
    with pytest.raises(OutputError, match=r"reports.jsonl:4: not valid JSON, and not at the end"):
        scan_log(path)


def test_out_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        ReportLog.open(tmp_path / "file", resume=True)


def test_disk_full_rolls_the_log_back_to_the_last_complete_item(tmp_path, monkeypatch):
    log, _ = ReportLog.open(tmp_path, resume=False)
    log.append(block("a"))
    size = (tmp_path / LOG_NAME).stat().st_size
    real_write = os.write

    def half_then_full(fd, data):  # the disk fills up in the middle of the block
        if fd == log._fd and len(data) > 20:
            real_write(fd, bytes(data[:20]))
            return 20
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OutputError, match="disk full; the last item was not saved, earlier items are; .*--resume"):
        log.append(block("b"))
    monkeypatch.undo()
    log.close()
    assert (tmp_path / LOG_NAME).stat().st_size == size
    assert scan_log(tmp_path / LOG_NAME).done() == {("a", "full")}


def test_read_only_output_gives_one_clear_error(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(LOG_NAME):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(OutputError, match=r"cannot write .*reports.jsonl: read-only file system"):
        ReportLog.open(tmp_path / "out", resume=False)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "summary.md"
    atomic_write(target, b"old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OutputError, match="summary.md: disk full"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["summary.md"]


def test_a_second_run_cannot_resume_into_a_folder_another_run_is_writing(tmp_path):
    out = tmp_path / "out"
    with ReportLog.open(out, resume=False)[0] as first:
        first.append(block("a"))
        partial = block("b").encode()
        os.write(first._fd, partial[:20])  # the first run is in the middle of an append
        with pytest.raises(OutputError, match="another ffaa batch is writing to .*out"):
            ReportLog.open(out, resume=True)
        assert (out / LOG_NAME).read_bytes().endswith(partial[:20])  # not cut off under its feet
    with ReportLog.open(out, resume=True)[0]:  # once it has stopped, resuming works
        pass
    assert scan_log(out / LOG_NAME).done() == {("a", "full")}


def test_a_file_system_without_locks_is_used_with_a_warning(tmp_path, monkeypatch, caplog):
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with ReportLog.open(tmp_path / "out", resume=False)[0] as log:
        log.append(block("a"))
    # a log record now (the CLI prints it on stderr as before: tests/test_cli.py checks the handler)
    assert [r.levelname for r in caplog.records if "cannot be locked" in r.getMessage()] == ["WARNING"]
    monkeypatch.setattr(fcntl, "flock", lambda fd, op: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OutputError, match="cannot write .*reports.jsonl"):
        ReportLog.open(tmp_path / "out", resume=True)


def test_the_lock_warning_reads_on_stderr_as_it_always_did(tmp_path, monkeypatch, capsys):
    import fcntl

    from ffaa.cli import cli_logging

    monkeypatch.setattr(fcntl, "flock", lambda fd, op: (_ for _ in ()).throw(OSError(errno.ENOLCK, "no locks")))
    with cli_logging(), ReportLog.open(tmp_path / "out", resume=False)[0]:
        pass
    assert capsys.readouterr().err == (
        f"warning: {tmp_path / 'out'} cannot be locked (no locks): make sure no other ffaa batch "
        "writes there at the same time\n")


def test_concurrent_atomic_writes_use_their_own_temporary_files(tmp_path, monkeypatch):
    """A --summarize-only beside a running batch writes the same summaries: no shared temp name."""
    names = []
    real_replace = os.replace

    def spy(src, dst):
        names.append(Path(src).name)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write(tmp_path / "summary.md", b"a")
    atomic_write(tmp_path / "summary.md", b"b")
    assert len(set(names)) == 2 and all(n.startswith(".summary.md.") for n in names)
    assert (tmp_path / "summary.md").read_bytes() == b"b"
    assert oct((tmp_path / "summary.md").stat().st_mode & 0o777) == "0o644"
