"""The parts of the detector ensemble that need no network: the vote rule, `--detectors`
parsing and config files, face tracks, and the alignment geometry."""

from __future__ import annotations

import numpy as np
import pytest

from ffaa.detectors.config import DEMO, DetectorsConfig, load_config_file, parse_detectors
from ffaa.detectors.registry import TALK_ENSEMBLE
from ffaa.detectors.tracking import Track, iou, link
from ffaa.detectors.vote import VoteRule, decide, majority, vote
from ffaa.errors import FfaaError
from ffaa.types import FaceBox, Verdict

FAKE, REAL = Verdict.FAKE, Verdict.REAL


# -- the vote ------------------------------------------------------------------------------


def test_threshold_is_strict_and_invalid_probabilities_abstain():
    assert vote(0.71, 0.7) is FAKE and vote(0.70, 0.7) is REAL
    assert vote(None, 0.7) is None and vote(float("nan"), 0.7) is None and vote(1.5, 0.7) is None


def test_majority_of_votes_cast_and_ties():
    assert majority([FAKE, FAKE, REAL]) is FAKE
    assert majority([FAKE, REAL, None, None, REAL]) is REAL
    assert majority([FAKE, REAL]) is REAL and majority([FAKE, REAL], tie=FAKE) is FAKE
    assert majority([None, None]) is None


def test_seed_table_video_5_is_fake_by_three_of_five():
    # The talk's Video 5: 0.71, 0.75, 0.60, 0.73, 0.60 -> three detectors above 0.70.
    probs = dict(zip(TALK_ENSEMBLE, (0.71, 0.75, 0.60, 0.73, 0.60)))
    result = decide(probs, VoteRule())
    assert (result.verdict, result.fake_votes, result.votes_cast, result.note) == (FAKE, 3, 5, "")


def test_failed_members_and_ffaa_voter_are_stated():
    rule = VoteRule(ffaa_votes=True, thresholds=(("srm", 0.55),))
    result = decide({"xception": 0.9, "srm": 0.6, "sta": None}, rule, ffaa_verdict=REAL)
    assert result.fake_votes == 2 and result.votes_cast == 3 and result.members == 4
    assert "voted with 3 of 4 members (no vote: sta)" in result.note
    assert "srm > 0.55" in result.rule and "FFAA's verdict votes too" in result.rule
    tie = decide({"a": 0.9, "b": 0.1}, VoteRule())
    assert tie.verdict is REAL and "tie, resolved as real" in tie.note


def test_threshold_out_of_range_is_refused():
    with pytest.raises(ValueError):
        VoteRule(threshold=1.0)


# -- configuration ---------------------------------------------------------------------------


def test_demo_is_the_talks_five():
    assert [c.name for c in parse_detectors("demo")] == list(TALK_ENSEMBLE)
    assert all(c.weights == DEMO for c in parse_detectors("demo"))


@pytest.mark.parametrize(("text", "message"), [
    ("xception", "not NAME=PATH"),
    ("resnet=demo", "unknown detector 'resnet'"),
    ("xception=demo,xception=demo", "xception is given twice"),
    ("srm=/no/such/srm_best.pth", "srm weights not found at /no/such/srm_best.pth; srm needs its released weights"),
    ("", "no detector given"),
])
def test_bad_detector_lists_are_one_line(text, message):
    with pytest.raises(FfaaError, match=message.replace("(", r"\(")):
        parse_detectors(text)


def test_config_file(tmp_path):
    weights = tmp_path / "srm_best.pth"
    weights.write_bytes(b"x")
    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"detectors:\n  xception: demo\n  srm: {{weights: {weights}, threshold: 0.6}}\n"
                   "threshold: 0.8\ntie: fake\nffaa_votes: true\nstill_clips: true\ndtype: bf16\n")
    config = load_config_file(cfg)
    assert isinstance(config, DetectorsConfig) and config.names == ("xception", "srm")
    assert config.rule.threshold_for("srm") == 0.6 and config.rule.threshold_for("xception") == 0.8
    assert config.rule.tie is FAKE and config.rule.ffaa_votes and config.still_clips and config.dtype == "bf16"


@pytest.mark.parametrize(("text", "message"), [
    ("detectors: []\n", "'detectors' must map"),
    ("detectors:\n  xception: demo\ntie: maybe\n", "tie must be real or fake"),
    ("detectors:\n  xception: demo\nthreshold: high\n", "threshold must be a number"),
    ("detectors:\n  xception: {threshold: 0.5}\n", "needs weights"),
    ("detectors: [unclosed\n", "not valid YAML"),
    ("detectors:\n  xception: demo\nthreshold: 1.5\n", r"must be in \[0, 1\)"),
])
def test_bad_config_files_name_the_problem(tmp_path, text, message):
    cfg = tmp_path / "d.yaml"
    cfg.write_text(text)
    with pytest.raises(FfaaError, match=message):
        load_config_file(cfg)


# -- tracks ----------------------------------------------------------------------------------


def box(x: int, y: int, s: int = 50) -> FaceBox:
    return FaceBox(x, y, x + s, y + s)


def test_iou():
    assert iou(box(0, 0), box(0, 0)) == 1.0
    assert iou(box(0, 0), box(100, 100)) == 0.0
    assert iou(box(0, 0, 10), box(5, 0, 10)) == pytest.approx(50 / 150)


def test_two_people_stay_apart_and_a_lost_face_starts_a_new_track():
    frames = [(0, [box(0, 0), box(200, 0)], False), (1, [box(4, 0), box(204, 2)], False),
              (2, [box(8, 0)], False), (3, [box(12, 0)], False), (4, [box(16, 0)], False),
              (5, [box(12, 0), box(200, 0)], False)]
    tracks = link(frames, max_missed=2)
    assert [sorted(t.boxes) for t in tracks] == [[0, 1, 2, 3, 4, 5], [0, 1], [5]]


def test_after_a_gap_a_moved_face_is_still_linked():
    tracks = link([(0, [box(0, 0)], False), (40, [box(30, 0)], True)])
    assert len(tracks) == 1
    assert len(link([(0, [box(0, 0)], False), (40, [box(30, 0)], False)])) == 2


def test_boxes_between_detections_are_interpolated_and_held_at_the_ends():
    track = Track(1, {2: box(0, 0), 6: box(40, 20)})
    assert track.box_at(4, 0, 10) == FaceBox(20, 10, 70, 60)
    assert track.box_at(0, 0, 10) == box(0, 0) and track.box_at(9, 0, 10) == box(40, 20)
    assert track.box_at(4, 7, 10) is None


# -- alignment geometry ----------------------------------------------------------------------


def test_similarity_transform_recovers_a_known_transform():
    from ffaa.align import similarity_transform, template

    dst = template(256)
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = (dst - shift) @ np.linalg.inv(scale * rot).T  # so that scale*rot@src + shift = dst
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], scale * rot, atol=1e-9) and np.allclose(m[:, 2], shift, atol=1e-7)


def test_template_matches_deepfakebench_geometry():
    from ffaa.align import template

    t = template(112, scale=1.0)  # no margin: ArcFace's points moved 8 px right
    assert np.allclose(t[0], [38.2946, 51.6963], atol=1e-4)
    # margin 1.3 shrinks the points toward the centre by 1/1.3
    t13 = template(256, 1.3)
    expected = (np.array([38.2946, 51.6963]) * 256 / 112 + 256 * 0.15) / 1.3
    assert np.allclose(t13[0], expected, atol=1e-3)


def test_box_crop_is_a_centred_square():
    from ffaa.align import box_crop

    image = np.zeros((200, 200, 3), np.uint8)
    image[90:110, 90:110] = 255  # a white square in the middle
    crop = box_crop(image, FaceBox(80, 80, 120, 120), size=64, scale=2.0)
    white = np.argwhere(crop[..., 0] > 128)
    assert white.min(0).tolist() == [24, 24] and white.max(0).tolist() == [39, 39]
