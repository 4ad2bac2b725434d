"""`ffaa batch --ray` says what ffaa has to say: no library notes from every worker, no Ray
notices that ask nothing of a user, and Ray's real warnings still through."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
from test_batch_support import noise_images

from ffaa.batch import BatchConfig, RayOptions, ScriptedAssistantFactory, run_batch
from ffaa.batch.distributed import RAY_CHATTER, quiet_ray_chatter
from ffaa.errors import FfaaError
from ffaa.pipeline import AnalysisOptions

ray = pytest.importorskip("ray")

TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _passes(logger: str, message: str) -> bool:
    return bool(logging.getLogger(logger).filter(logging.makeLogRecord({"msg": message, "levelno": logging.WARNING})))


def test_ray_chatter_is_dropped_and_its_real_warnings_kept():
    quiet_ray_chatter()
    quiet_ray_chatter()  # idempotent: one filter per logger however often a run connects
    for name, prefix in RAY_CHATTER.items():
        assert not _passes(name, f"{prefix}. Set RAY_AUTH_MODE=disabled to opt out.")
        assert len(logging.getLogger(name).filters) == 1
    # Auth being *off* is a warning a user must see.
    assert _passes(TOKEN_LOGGER, "Token authentication is disabled for this Ray cluster. Anyone with network access")


def test_workers_silence_library_notes_before_building_the_model(tmp_path, local_ray):
    @dataclass(frozen=True)  # defined here: the workers cannot import test modules, so it travels by value
    class NeedsQuietLibraries(ScriptedAssistantFactory):
        """Refuses to build on a worker where torchao's and torch's import-time notes would print."""

        def __call__(self):
            names = ("torchao", "torch.utils._pytree")
            loud = [n for n in names if logging.getLogger(n).getEffectiveLevel() < logging.ERROR]
            if loud:
                raise FfaaError(f"loud loggers on the worker: {loud}")
            return super().__call__()

    images = noise_images(tmp_path / "in", 2)
    config = BatchConfig(out=tmp_path / "out", inputs=tuple(map(str, images)), progress=False,
                         ray=RayOptions(actors=1))
    result = run_batch(config, NeedsQuietLibraries(AnalysisOptions(face_mode="whole")))
    assert (result.written, result.errors) == (2, 0)


@pytest.mark.slow
def test_cli_ray_run_prints_no_ray_notices(tmp_path):
    """A fresh local cluster, as `ffaa batch --ray` starts one for a user."""
    noise_images(tmp_path / "in", 2)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    run = subprocess.run(
        [sys.executable, "-m", "ffaa", "batch", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
         "--backend", "scripted", "--whole-image", "--no-progress", "--ray", "--ray-actors", "1"],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "2 item(s) analysed" in run.stderr
    for prefix in RAY_CHATTER.values():
        assert prefix not in run.stderr
