"""A batch killed with SIGKILL mid-run and resumed loses and duplicates nothing; CLI errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from test_batch_support import by_record, noise_images, read_jsonl

from ffaa.batch.journal import LOG_NAME
from ffaa.cli import main

SCRIPTED = ["--backend", "scripted", "--whole-image", "--no-progress", "--group-faces", "1"]


def committed(log: Path) -> int:
    if not log.exists():
        return 0
    return log.read_bytes().count(b'"record": "item"')


def start(inputs: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ffaa.cli", "batch", str(inputs), "--out", str(out), *SCRIPTED,
           "--scripted-delay", "0.004", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_after(proc: subprocess.Popen, log: Path, items: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while committed(log) < items:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the batch made no progress"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path):
    images = noise_images(tmp_path / "in", 24)
    out, log = tmp_path / "out", tmp_path / "out" / LOG_NAME
    kill_after(start(tmp_path / "in", out), log, 4)
    kill_after(start(tmp_path / "in", out, "--resume"), log, 12)
    assert not (out / "report.html").exists()  # killed runs never got to the summaries
    done = subprocess.run([sys.executable, "-m", "ffaa.cli", "batch", str(tmp_path / "in"), "--out", str(out),
                           *SCRIPTED, "--resume"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]  # no torn line left
    items, faces = by_record(records, "item"), by_record(records, "face")
    assert len(items) == len(images) == len({r["batch"]["key"] for r in items})
    assert Counter(r["batch"]["key"] for r in faces) == Counter(r["batch"]["key"] for r in items)
    assert len(by_record(records, "run")) == 3
    resumed = int(done.stderr.split("already done")[0].split(", ")[-1])
    assert resumed >= 12 and f"{len(images) - resumed} item(s) analysed" in done.stderr
    assert "| items | 24 (image 24) |" in (out / "summary.md").read_text()


def test_cli_refuses_a_used_folder_and_bad_arguments(tmp_path, capsys):
    noise_images(tmp_path / "in", 1)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    cases = [
        (["--out", str(tmp_path / "used")], "is not empty: add --resume"),
        ([], "--out DIR is required"),
        (["--out", str(tmp_path / "o"), "--explain-flagged"], "--explain-flagged with inputs needs --triage"),
        (["--out", str(tmp_path / "o"), "--triage-threshold", "2"], "--triage-threshold must be between 0 and 1"),
    ]
    for extra, message in cases:
        assert main(["batch", str(tmp_path / "in"), *SCRIPTED, *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), *SCRIPTED]) == 2
    assert "input not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["batch", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), *SCRIPTED]) == 2
    assert "no input files found in" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["batch", "--summarize-only", str(tmp_path / "in")]) == 2
    assert "reports.jsonl not found: not a batch output folder" in capsys.readouterr().err


def test_summarize_only_rebuilds_the_summaries(tmp_path, capsys):
    noise_images(tmp_path / "in", 2)
    assert main(["batch", str(tmp_path / "in"), "--out", str(tmp_path / "out"), *SCRIPTED]) == 0
    for name in ("summary.md", "summary.csv", "report.html"):
        (tmp_path / "out" / name).unlink()
    assert main(["batch", "--summarize-only", str(tmp_path / "out")]) == 0
    assert "summaries of 2 items" in capsys.readouterr().out
    assert "| items | 2 (image 2) |" in (tmp_path / "out" / "summary.md").read_text()
    assert len(by_record(read_jsonl(tmp_path / "out" / LOG_NAME), "item")) == 2
