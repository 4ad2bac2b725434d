"""The batch on a local Ray cluster writes the same records as a local run, and resumes alike."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_batch_support import build_corpus, by_record, read_jsonl

from ffaa.batch import BatchConfig, EngineSettings, RayOptions, ScriptedAssistantFactory, VideoOptions, run_batch
from ffaa.batch.distributed import actor_plan
from ffaa.batch.journal import LOG_NAME

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def outcome(folder) -> set[tuple]:
    """What a run decided, per item, without timings or thumbnails."""
    records = read_jsonl(folder / LOG_NAME)
    faces = by_record(records, "face")
    return {(r["batch"]["key"], r["status"], r["verdict"], r["score"], r["faces"],
             sum(f["batch"]["key"] == r["batch"]["key"] for f in faces)) for r in by_record(records, "item")}


@pytest.mark.slow
def test_ray_run_matches_the_local_run_and_resumes(tmp_path, shared_fixtures, local_ray):
    build_corpus(tmp_path / "in", shared_fixtures, big=False)
    engine = EngineSettings(video=VideoOptions(every_seconds=0.5))
    factory = ScriptedAssistantFactory()
    local = BatchConfig(out=tmp_path / "local", inputs=(str(tmp_path / "in"),), engine=engine, progress=False)
    on_ray = BatchConfig(out=tmp_path / "ray", inputs=(str(tmp_path / "in"),), engine=engine, progress=False,
                         ray=RayOptions(actors=2, cpus_per_actor=0.5), group_faces=2)
    run_batch(local, factory)
    result = run_batch(on_ray, factory)
    assert result.written == 11 and outcome(tmp_path / "ray") == outcome(tmp_path / "local")
    assert (tmp_path / "ray" / "report.html").is_file() and any((tmp_path / "ray" / "thumbs").iterdir())
    again = run_batch(replace(on_ray, resume=True), factory)
    assert (again.skipped, again.written) == (11, 0)


def test_actor_plan_puts_one_replica_on_each_gpu():
    assert actor_plan({"CPU": 32, "GPU": 4}, RayOptions()) == (4, {"num_gpus": 1})
    assert actor_plan({"CPU": 8}, RayOptions(actors=3, cpus_per_actor=2)) == (3, {"num_cpus": 2})
