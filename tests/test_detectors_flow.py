"""The detectors over real files: faces cropped once and shared, videos sampled into runs of
consecutive frames, faces tracked, clips built per track, failures marked, and `ffaa detect`
printing the talk's table with rule-weight models of the five detectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("av")
pytest.importorskip("dlib")

import makers  # noqa: E402
from conftest import SHARED_FIXTURES  # noqa: E402

from ffaa.cli import main  # noqa: E402
from ffaa.detectors.base import Detector  # noqa: E402
from ffaa.detectors.config import DetectorChoice, DetectorsConfig  # noqa: E402
from ffaa.detectors.registry import HALF, DetectorSpec  # noqa: E402
from ffaa.detectors.runner import DetectorSet, face_crops  # noqa: E402
from ffaa.detectors.video import VideoPlan, detect_video, segment_times  # noqa: E402


class MeanColour(torch.nn.Module):
    """A real network, tiny: P(fake) from the mean colour of the crop (or of the clip)."""

    def __init__(self, clip: bool):
        super().__init__()
        self.clip = clip
        self.head = torch.nn.Linear(3, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
            self.head.bias.zero_()

    def forward(self, x):
        dims = (1, 3, 4) if self.clip else (2, 3)
        return self.head(x.mean(dim=dims))


def small_spec(name: str, kind: str, clip_len: int = 1) -> DetectorSpec:
    return DetectorSpec(name=name, title=name.upper(), builder="", input_kind=kind, resolution=32, mean=HALF,
                        std=HALF, output="softmax", checkpoints=(), clip_len=clip_len)


def small_set(still_clips: bool = False, broken: bool = False) -> DetectorSet:
    frame = Detector(small_spec("frame_net", "frame"), MeanColour(False), weights="test", device="cpu")
    clip = Detector(small_spec("clip_net", "clip", 4), MeanColour(True), weights="test", device="cpu")
    detectors = [frame, clip]
    if broken:
        bad = Detector(small_spec("bad_net", "frame"), torch.nn.Linear(5, 2), weights="test", device="cpu")
        detectors.append(bad)
    config = DetectorsConfig(tuple(DetectorChoice(d.name, "test") for d in detectors), still_clips=still_clips,
                             segments=3, frames_per_segment=2)
    return DetectorSet(detectors, config)


@pytest.fixture(scope="module")
def faces():
    from PIL import Image
    from skimage import data

    astro = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256)))[0:200, 60:230]
    return {"astronaut": astro}


@pytest.fixture(scope="module")
def clips(tmp_path_factory, faces):
    root = tmp_path_factory.mktemp("det_clips")
    one = makers.face_frames(faces["astronaut"], 60, (320, 240))
    two = [np.concatenate([f, f[:, ::-1]], axis=1) for f in one]  # the face and its mirror image
    blank = [np.full((240, 320, 3), 90, np.uint8) for _ in range(20)]
    return {
        "one": makers.write_video(root / "one.mp4", one, fps=25),
        "two": makers.write_video(root / "two.mp4", two, fps=25),
        "short": makers.write_video(root / "short.mp4", one[:3], fps=25),
        "blank": makers.write_video(root / "blank.mp4", blank, fps=25),
    }


def test_segments_are_spread_and_fit_inside_the_video():
    runs = segment_times(10.0, 25.0, VideoPlan(segments=4, segment_len=16))
    assert len(runs) == 4 and all(len(r) == 16 for r in runs)
    assert runs[0][0] >= 0 and runs[-1][-1] < 10.0
    assert all(b[0] > a[-1] for a, b in zip(runs, runs[1:]))  # disjoint, in order
    assert len(segment_times(1.0, 25.0, VideoPlan(segments=4, segment_len=16))) == 1  # too short for four


def test_one_face_video(clips):
    dset = small_set()
    result = detect_video(dset, str(clips["one"]))
    assert len(result.tracks) == 1 and result.deciding_track == 1
    track = result.tracks[0]
    assert len(track.frames) == 6  # 3 runs x 2 detection frames
    by_name = {m.detector: m for m in track.panel.members}
    assert by_name["frame_net"].units == 6 and by_name["frame_net"].unit_kind == "frame"
    assert by_name["clip_net"].units == 3 and by_name["clip_net"].unit_kind == "clip"  # 4-frame runs, 1 clip each
    assert by_name["frame_net"].probability == pytest.approx(np.mean(by_name["frame_net"].unit_probabilities))
    assert all(len(s) == 4 for s in result.segments)
    assert result.panel == track.panel


def test_two_people_get_a_track_each(clips):
    result = detect_video(small_set(), str(clips["two"]))
    assert len(result.tracks) == 2
    assert any("2 faces tracked" in n for n in result.notes)
    lefts = sorted(t.boxes[0].left for t in result.tracks)
    assert lefts[0] < 160 <= lefts[1]


def test_a_video_shorter_than_a_clip_is_padded_and_says_so(clips):
    result = detect_video(small_set(), str(clips["short"]))
    clip = next(m for m in result.tracks[0].panel.members if m.detector == "clip_net")
    assert clip.units == 1 and "3 frames padded to 4" in clip.note


def test_no_face_in_any_frame(clips):
    result = detect_video(small_set(), str(clips["blank"]))
    assert result.tracks == () and result.panel is None
    assert any("no face found" in n for n in result.notes)


def test_a_failing_member_is_marked_and_the_others_vote(clips):
    result = detect_video(small_set(broken=True), str(clips["one"]))
    panel = result.tracks[0].panel
    bad = next(m for m in panel.members if m.detector == "bad_net")
    assert bad.probability is None and bad.error and "\n" not in bad.error
    assert panel.ensemble.votes_cast == 2 and "no vote: bad_net" in panel.ensemble.note


def test_still_images_leave_clip_detectors_out_unless_asked(faces):
    from PIL import Image

    image = Image.fromarray(np.pad(faces["astronaut"], ((40, 40), (40, 40), (0, 0)), constant_values=128))
    from ffaa.faces import detect_faces

    boxes = detect_faces(image)
    panel = small_set().score_image(image, boxes)[0]
    clip = next(m for m in panel.members if m.detector == "clip_net")
    assert clip.probability is None and "needs a video" in clip.error
    panel = small_set(still_clips=True).score_image(image, boxes)[0]
    clip = next(m for m in panel.members if m.detector == "clip_net")
    assert clip.probability is not None and "copies of the frame" in clip.note


def test_crops_are_made_once_per_size_and_aligned(faces):
    from PIL import Image

    image = Image.fromarray(np.pad(faces["astronaut"], ((40, 40), (40, 40), (0, 0)), constant_values=128))
    from ffaa.faces import detect_faces

    crops = face_crops(image, detect_faces(image)[0], [224, 256])
    assert crops.kind == "aligned" and sorted(crops.by_size) == [224, 256]
    assert crops.for_detector("sta").shape == (224, 224, 3) and crops.for_detector("xception").shape == (256, 256, 3)


# -- the talk's five, with rule weights, through `ffaa detect` ----------------------------------


@pytest.fixture(scope="module")
def rule_weights(tmp_path_factory):
    from detector_golden import load_golden

    from ffaa.detectors.checkpoint import save_detector

    root = tmp_path_factory.mktemp("rule_weights")
    variants = {"clip_large": "tiny", "xception": "full", "i3d": "full", "sta": "reduced_2_layers", "srm": "full"}
    paths = {}
    for name, variant in variants.items():
        golden = load_golden(name)
        paths[name] = save_detector(golden.rule_state(variant), root / f"{name}.safetensors", name, variant)
    return paths


@pytest.mark.slow
def test_detect_prints_the_talks_table(rule_weights, clips, tmp_path, capsys):
    real = SHARED_FIXTURES / "images" / "real_celeba3.jpg"
    manifest = tmp_path / "labels.csv"
    manifest.write_text(f"path,label\n{clips['one']},fake\n{real},real\n")
    spec = ",".join(f"{k}={v}" for k, v in rule_weights.items())
    out = tmp_path / "run"
    code = main(["detect", str(manifest), "--detectors", spec, "--segments", "1", "--frames-per-segment", "2",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    header = printed.splitlines()[0]
    for title in ("DF40 - CLIP Large", "DF40 - Xception", "DF40 - i3d", "StA4Deepfake", "SRM", "prediction"):
        assert title in header
    assert "one.mp4" in printed and "real_celeba3.jpg" in printed
    assert "recall fake" in printed and "ensemble" in printed
    records = [json.loads(line) for line in (out / "detect.jsonl").read_text().splitlines()]
    video = next(r for r in records if r["kind"] == "video")
    members = {m["detector"]: m for m in video["panel"]["members"]}
    assert set(members) == {"clip_large", "xception", "i3d", "sta", "srm"}
    assert all(0.0 <= m["probability"] <= 1.0 for m in members.values())
    assert members["i3d"]["unit_kind"] == "clip" and members["i3d"]["units"] if "units" in members["i3d"] else True
    image = next(r for r in records if r["kind"] == "image")
    assert image["panel"]["ensemble"]["votes_cast"] == 3  # the clip detectors abstain on a still image
    csv_text = (out / "detect.csv").read_text()
    assert csv_text.splitlines()[0] == "id,label,clip_large,xception,i3d,sta,srm,prediction,fake_votes,votes_cast"
    # resumed: nothing is analysed again and the table is the same
    assert main(["detect", str(manifest), "--detectors", spec, "--out", str(out), "--resume"]) == 0
    assert capsys.readouterr().out.splitlines()[:4] == printed.splitlines()[:4]
    assert len((out / "detect.jsonl").read_text().splitlines()) == 2


def test_detect_refuses_bad_input_and_keeps_going(tmp_path, capsys, clips):
    junk = tmp_path / "junk.jpg"
    junk.write_text("<html>not an image</html>")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    code = main(["detect", str(junk), str(empty), str(clips["one"]), "--detectors", "meso4=demo"])
    captured = capsys.readouterr()
    assert code == 2
    assert "one.mp4" in captured.out
    assert "error: " in captured.out and "junk.jpg" in captured.out and "empty file" in captured.out


def test_detect_flags_are_checked_before_anything_loads(capsys, tmp_path):
    assert main(["detect", "x.jpg", "--detectors", "nosuch=demo"]) == 2
    assert "unknown detector 'nosuch'" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("x")
    assert main(["detect", "x.jpg", "--detectors", "meso4=demo", "--out", str(tmp_path / "run")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["analyze", "x.jpg", "--threshold", "0.5", "--demo"]) == 2
    assert "--threshold applies to the classic detectors" in capsys.readouterr().err


def test_the_assistant_shares_its_faces_with_the_detectors(faces, tmp_path):
    from PIL import Image

    from ffaa.backends.scripted import ScriptedBackend
    from ffaa.decision import MajorityDecider
    from ffaa.pipeline import Assistant

    path = tmp_path / "face.png"
    Image.fromarray(np.pad(faces["astronaut"], ((40, 40), (40, 40), (0, 0)), constant_values=128)).save(path)
    assistant = Assistant(ScriptedBackend(), MajorityDecider(), detectors=small_set())
    report = assistant.analyze(path)[0]
    panel = report.detectors
    assert panel is not None and panel.crop == "aligned"
    assert panel.ensemble.ffaa_verdict is report.decision.verdict and not panel.ensemble.ffaa_voted
    assert dict(report.provenance.detectors) == {"frame_net": "test", "clip_net": "test"}
    assert "detectors" in dict(report.provenance.timings)
    plain = Assistant(ScriptedBackend(), MajorityDecider()).analyze(path)[0]
    assert plain.detectors is None and "detectors" not in dict(plain.provenance.timings)
    assert plain.face == report.face  # the same face box either way


@pytest.mark.slow
def test_analyze_json_carries_the_panel(capsys):
    real = SHARED_FIXTURES / "images" / "real_celeba3.jpg"
    if not real.is_file():
        pytest.skip("fixture image missing")
    assert main(["analyze", str(real), "--demo", "--detectors", "meso4=demo", "--ffaa-votes", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)[0]
    assert report["schema"] == "ffaa.report/2"
    ensemble = report["detectors"]["ensemble"]
    assert ensemble["ffaa_voted"] and ensemble["members"] == 2 and ensemble["votes_cast"] == 2
    assert report["provenance"]["detectors"] == {"meso4": "demo"}


def test_detect_resume_after_a_kill_mid_line(tmp_path, capsys):
    from PIL import Image

    images = []
    for i in range(3):
        path = tmp_path / "in" / f"img{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        images.append(path)
    out = tmp_path / "run"
    args = ["detect", str(tmp_path / "in"), "--detectors", "meso4=demo", "--whole-image", "--out", str(out)]
    assert main(args) == 0
    log = out / "detect.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # killed while writing the second file
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    assert "dropped the last line" in capsys.readouterr().err
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["img0.png", "img1.png", "img2.png"]
