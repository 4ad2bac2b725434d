"""The batch on a local Ray cluster writes the same records as a local run, and resumes alike."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_batch_support import build_corpus, by_record, noise_images, read_jsonl

from ffaa.batch import (
    BatchConfig,
    EngineSettings,
    RayOptions,
    ScriptedAssistantFactory,
    VideoOptions,
    run_batch,
)
from ffaa.batch.distributed import RayConnectError, RayWorkerError, actor_plan
from ffaa.batch.journal import LOG_NAME
from ffaa.cli import main
from ffaa.errors import WeightsNotFoundError
from ffaa.pipeline import AnalysisOptions

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


@pytest.mark.slow
def test_an_item_that_kills_its_worker_costs_only_that_item(tmp_path, local_ray):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class DiesOnSmall(ScriptedAssistantFactory):
        """Its worker process exits (as in a segfault) on 40-px images."""

        def __call__(self):
            import os

            assistant = super().__call__()
            analyze = assistant.analyze_jobs

            def analyze_jobs(jobs):
                if any(j.info.width == 40 for j in jobs):
                    os._exit(3)
                return analyze(jobs)

            assistant.analyze_jobs = analyze_jobs
            return assistant

    images = noise_images(tmp_path / "in", 3) + noise_images(tmp_path / "small", 1, size=40)
    config = BatchConfig(out=tmp_path / "out", inputs=tuple(map(str, images)), progress=False,
                         ray=RayOptions(actors=1), group_faces=4)
    result = run_batch(config, DiesOnSmall(AnalysisOptions(face_mode="whole")))
    items = by_record(read_jsonl(tmp_path / "out" / LOG_NAME), "item")
    assert (result.written, result.errors) == (4, 1) and [r["status"] for r in items].count("ok") == 3
    (bad,) = [r for r in items if r["status"] == "error"]
    assert bad["stage"] == "worker" and bad["batch"]["path"] == str(images[-1])


def test_a_model_the_workers_cannot_build_ends_the_run_with_its_message(tmp_path, local_ray):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class NoWeights(ScriptedAssistantFactory):
        def __call__(self):
            raise WeightsNotFoundError("no weights in /models/x")

    images = noise_images(tmp_path / "in", 2)
    config = BatchConfig(out=tmp_path / "out", inputs=tuple(map(str, images)), progress=False, ray=RayOptions())
    with pytest.raises(RayWorkerError, match=r"^on a Ray worker: no weights in /models/x$"):
        run_batch(config, NoWeights())
    assert not (tmp_path / "out").exists()  # nothing written: the same command can be retried as typed


def test_an_unreachable_cluster_is_one_error_and_leaves_the_folder_untouched(tmp_path, monkeypatch):
    def refuse(**kwargs):
        raise ConnectionError(f"Failed to connect to Ray cluster at {kwargs['address']}.\nRay's own advice")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    images = noise_images(tmp_path / "in", 1)
    config = BatchConfig(out=tmp_path / "out", inputs=tuple(map(str, images)), progress=False,
                         ray=RayOptions(address="10.255.255.1:6379"))
    with pytest.raises(RayConnectError, match=r"^--ray: Failed to connect to Ray cluster at 10.255.255.1:6379\. "
                                              r"Give the head node's host:port"):
        run_batch(config, ScriptedAssistantFactory())
    assert not (tmp_path / "out").exists()  # rerunning with the right address needs no --resume


def test_cli_refuses_ray_arguments_it_would_ignore(tmp_path, capsys):
    noise_images(tmp_path / "in", 1)
    cases = [
        (["--ray", "--ray-actors", "0"], "--ray-actors must be at least 1"),
        (["--ray", "--ray-cpus-per-actor", "0"], "--ray-cpus-per-actor must be positive"),
        (["--ray-actors", "2"], "--ray-actors only applies with --ray"),
    ]
    for extra, message in cases:
        assert main(["batch", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--backend", "scripted",
                     "--no-progress", *extra]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_workers_that_die_while_building_the_model_end_the_run(tmp_path, local_ray):
    """Ray would restart them forever; after WORKER_RESTARTS deaths the run stops with one message."""
    from dataclasses import dataclass


    @dataclass(frozen=True)
    class DiesAtBuild(ScriptedAssistantFactory):
        def __call__(self):
            import os

            os._exit(4)  # as a segfault or the OOM killer while loading weights

    images = noise_images(tmp_path / "in", 2)
    config = BatchConfig(out=tmp_path / "out", inputs=tuple(map(str, images)), progress=False,
                         ray=RayOptions(actors=1))
    with pytest.raises(RayWorkerError, match=r"workers kept dying \(10 restarts.*rerun with --resume"):
        run_batch(config, DiesAtBuild(AnalysisOptions(face_mode="whole")))


@pytest.mark.slow
def test_ray_workers_build_the_detectors_and_write_their_panels(tmp_path, local_ray):
    from ffaa.detectors.config import DetectorsConfig, parse_detectors

    images = noise_images(tmp_path / "in", 3)
    detectors = DetectorsConfig(parse_detectors("meso4=demo"))
    factory = ScriptedAssistantFactory(AnalysisOptions(face_mode="whole"), detectors=detectors)
    config = BatchConfig(out=tmp_path / "ray", inputs=(str(tmp_path / "in"),), progress=False,
                         ray=RayOptions(actors=1, cpus_per_actor=0.5))
    assert run_batch(config, factory).written == len(images)
    faces = by_record(read_jsonl(tmp_path / "ray" / LOG_NAME), "face")
    assert len(faces) == len(images)
    assert all(f["detectors"]["members"][0]["detector"] == "meso4" for f in faces)
    assert all(f["detectors"]["crop"] == "whole" for f in faces)
