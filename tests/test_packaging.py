"""A regular (non-editable) install carries every subpackage and the prompt files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_all_packages_and_prompts(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(REPO)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {result.stderr.strip()[-200:]}")
    names = set(zipfile.ZipFile(next(tmp_path.glob("ffaa-*.whl"))).namelist())
    for needed in (
        "ffaa/prompt_files/inference.yaml",
        "ffaa/prompt_files/answer_format.yaml",
        "ffaa/prompt_files/data_generation.yaml",
        "ffaa/prompt_files/judge.yaml",
        "ffaa/prompt_files/chat_templates/vicuna_v1.jinja",
        "ffaa/commands/analyze.py",
        "ffaa/backends/hf_llava.py",
        "ffaa/mids/net.py",
        "ffaa/eval/detection.py",
        "ffaa/batch/runner.py",
        "ffaa/app/ui.py",
    ):
        assert needed in names, needed
    assert not any(n.startswith(("tests/", "mids/", "eval/")) for n in names)
