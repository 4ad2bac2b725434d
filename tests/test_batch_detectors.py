"""`ffaa batch --detectors`: the classic detectors beside FFAA in batch records — a panel in
every image face report, the video scored as a whole (face tracks, clips), the verdict in the
summaries — and the same through the command line."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("av")
pytest.importorskip("dlib")

import makers  # noqa: E402
from test_batch_support import by_record, read_jsonl  # noqa: E402

from ffaa.batch import BatchConfig, EngineSettings, ScriptedAssistantFactory, VideoOptions, run_batch  # noqa: E402
from ffaa.cli import main  # noqa: E402
from ffaa.detectors.config import DetectorsConfig, parse_detectors  # noqa: E402
from ffaa.pipeline import AnalysisOptions  # noqa: E402
from ffaa.report import report_from_dict  # noqa: E402


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("bdet")
    astro = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256)))[0:200, 60:230]
    Image.fromarray(np.pad(astro, ((40, 40), (40, 40), (0, 0)), constant_values=128)).save(root / "face.png")
    makers.write_video(root / "clip.mp4", makers.face_frames(astro, 40, (320, 240)), fps=25)
    return root


def test_batch_records_carry_the_detectors(inputs, tmp_path):
    detectors = DetectorsConfig(parse_detectors("meso4=demo,i3d=demo"), segments=1, frames_per_segment=2)
    factory = ScriptedAssistantFactory(AnalysisOptions(), detectors=detectors)
    out = tmp_path / "run"
    run_batch(BatchConfig(out=out, inputs=(str(inputs),), progress=False,
                          engine=EngineSettings(video=VideoOptions(frames_per_video=2))), factory)
    records = read_jsonl(out / "reports.jsonl")
    faces = by_record(records, "face")
    image_face = next(f for f in faces if f["batch"]["kind"] == "image")
    panel = report_from_dict(image_face).detectors
    assert [m.detector for m in panel.members] == ["meso4", "i3d"]
    assert panel.members[0].probability is not None and panel.members[1].probability is None  # still image
    assert all(f.get("detectors") is None for f in faces if f["batch"]["kind"] == "video")  # frames: no panel
    video = by_record(records, "video")[0]
    tracks = video["detectors"]["tracks"]
    assert len(tracks) == 1 and {m["detector"] for m in tracks[0]["panel"]["members"]} == {"meso4", "i3d"}
    i3d = next(m for m in tracks[0]["panel"]["members"] if m["detector"] == "i3d")
    assert i3d["unit_kind"] == "clip" and len(i3d["unit_probabilities"]) == 1
    items = by_record(records, "item")
    assert all(i["detectors_verdict"] in ("real", "fake") and i["detectors_votes"].endswith("fake") for i in items)
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    assert {r["detectors_verdict"] for r in rows if r["level"] == "item"} <= {"real", "fake"}


def test_batch_cli_checks_detector_flags_before_writing(tmp_path, inputs, capsys):
    out = tmp_path / "run"
    code = main(["batch", str(inputs), "--out", str(out), "--demo", "--detectors", "xception=/nope.pth"])
    assert code == 2 and "xception weights not found" in capsys.readouterr().err
    assert not out.exists()


def test_a_video_is_decoded_once_for_ffaa_and_the_detectors(inputs, tmp_path, monkeypatch):
    import ffaa.video as video

    calls = []
    real_sample, real_frames = video.sample_video, video.sample_frames
    monkeypatch.setattr(video, "sample_video", lambda *a, **k: calls.append("sample_video") or real_sample(*a, **k))
    monkeypatch.setattr(video, "sample_frames", lambda *a, **k: calls.append("sample_frames") or real_frames(*a, **k))
    detectors = DetectorsConfig(parse_detectors("meso4=demo"), segments=2, frames_per_segment=2)
    factory = ScriptedAssistantFactory(AnalysisOptions(), detectors=detectors)
    out = tmp_path / "run"
    run_batch(BatchConfig(out=out, inputs=(str(inputs / "clip.mp4"),), progress=False,
                          engine=EngineSettings(video=VideoOptions(frames_per_video=3))), factory)
    assert calls.count("sample_frames") == 1  # one sampler (sample_video opens it), not one per model
    records = read_jsonl(out / "reports.jsonl")
    video_record = by_record(records, "video")[0]
    assert video_record["decode"]["frames_sampled"] == 3  # FFAA's frames, from the shared decode
    assert len(video_record["detectors"]["tracks"]) == 1
    assert len(by_record(records, "face")) == 3
