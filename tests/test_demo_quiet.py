"""The quick start (`bash scripts/demo.sh`) prints ffaa's banner and report, and no library noise."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from ffaa.spec import DEMO_BANNER

REPO = Path(__file__).resolve().parents[1]
# What third-party libraries print when nobody silenced them: warnings, deprecations, pip and
# setuptools notes, transformers' loading bars, torchao's kernel notes and torch's pytree notes.
NOISE = ("WARNING: ", "Warning:", "DeprecationWarning", "FutureWarning", "UserWarning", "setuptools",
         "Loading weights", "Writing model shards", "torchao", "pytree", "it/s]")
# ffaa's own progress lines, which may name a problem in its own words.
OWN_PREFIXES = ("installing ffaa", "training the demo model", "demo model ready", "heatmap:", "error:")


def test_building_the_demo_model_shows_no_progress_bars(tmp_path, capsys):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("mistral_common", reason="the demo model's tokenizer ships in mistral-common")
    from ffaa.backends import demo

    was_on = transformers.utils.logging.is_progress_bar_enabled()
    demo.build_demo_llava(tmp_path / "demo", steps=1)  # one step: only the loading and saving matter here
    err = capsys.readouterr().err
    assert "Writing model shards" not in err and "Loading weights" not in err, err
    assert transformers.utils.logging.is_progress_bar_enabled() == was_on


def _installed() -> bool:
    """scripts/setup.sh would install nothing: its stamp matches pyproject.toml."""
    stamp = REPO / ".venv" / ".ffaa-installed"
    want = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    return stamp.is_file() and stamp.read_text().strip() == want


@pytest.mark.slow
def test_demo_script_prints_only_ffaas_own_lines(tmp_path):
    if not _installed():
        pytest.skip("scripts/setup.sh would install first (its stamp is stale): run it, then this test")
    # The session's FFAA_CACHE (conftest) holds the demo model: built here if no test built it yet.
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the sample image lands in the test's folder
    run = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=1200)
    assert run.returncode == 0, run.stderr
    for line in DEMO_BANNER.splitlines():
        assert line in run.stderr.splitlines()
    assert "Analysis result:" in run.stdout and "Match score:" in run.stdout
    lines = (run.stdout + run.stderr).splitlines()
    noisy = [line for line in lines if not line.startswith(OWN_PREFIXES) and any(m in line for m in NOISE)]
    assert not noisy, "\n".join(noisy)
