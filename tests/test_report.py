"""Reports: JSON round trip, FFAA's display text, Markdown, tolerant JSONL reading."""

from __future__ import annotations

import json

import pytest

from ffaa.decision import MajorityDecider
from ffaa.parsing import parse_answer
from ffaa.report import (
    display_text,
    iter_report_records,
    report_from_dict,
    report_to_dict,
    to_markdown,
)
from ffaa.types import (
    Candidate,
    DecodingSettings,
    FaceBox,
    ForensicReport,
    ImageInfo,
    Provenance,
)

FAKE = ("Image description: a young woman, soft light.\nForgery reasoning: the jaw shows a seam.\n"
        "Analysis result: fake\nProbability: 0.92\nForgery type: Identity exchange")
REAL = ("Image description: a man outdoors.\nForgery reasoning: pores and shadows are consistent.\n"
        "Analysis result: real\nProbability: 0.1\nForgery type: None")


def make_report(texts=(FAKE, REAL, FAKE), decision=None) -> ForensicReport:
    kinds = ("question", "hypothesis_real", "hypothesis_fake")
    cands = tuple(Candidate(i, kinds[i], f"q{i}", t, parse_answer(t), 40, "eos") for i, t in enumerate(texts))
    decision = decision or MajorityDecider().decide(cands)
    prov = Provenance("m", None, "scripted", "none", "cpu", "fp32", "ffaa-v1", decision.method,
                      DecodingSettings(), (("ffaa", "0.1.0"),), (("generate", 1.5),))
    info = ImageInfo("/data/x.png", "ab" * 32, 640, 480, "RGB", "PNG", ("EXIF orientation 6 applied",))
    return ForensicReport(info, 0, FaceBox(10, 20, 110, 140, crop=(0, 0, 150, 180)), cands, decision, prov)


def test_json_round_trip_is_exact():
    report = make_report((FAKE, "garbage", REAL))
    data = json.loads(json.dumps(report_to_dict(report)))
    assert report_from_dict(data) == report
    assert data["summary"]["verdict"] == report.decision.verdict.value
    assert data["candidates"][1]["parse"]["error"].startswith("no 'Analysis result'")


def test_round_trip_with_a_detector_panel_and_schema_1_still_reads():
    from dataclasses import replace

    from ffaa.detectors.vote import VoteRule, decide
    from ffaa.report import panel_lines
    from ffaa.types import DetectorPanel, MemberScore, Verdict

    members = (MemberScore("xception", "DF40 - Xception", 0.91, Verdict.FAKE, 0.7, "frame", (0.91,), 0.12),
               MemberScore("sta", "StA4Deepfake", None, None, 0.7, "clip", error="a clip detector needs a video"))
    panel = DetectorPanel(members, decide({"xception": 0.91, "sta": None}, VoteRule(), Verdict.REAL), "aligned")
    report = replace(make_report(), detectors=panel,
                     provenance=replace(make_report().provenance, detectors=(("xception", "/w/x.pth"),)))
    data = json.loads(json.dumps(report_to_dict(report)))
    assert data["schema"] == "ffaa.report/2" and data["provenance"]["detectors"] == {"xception": "/w/x.pth"}
    assert report_from_dict(data) == report
    old = {**report_to_dict(make_report()), "schema": "ffaa.report/1"}
    old.pop("detectors")
    assert report_from_dict(old).detectors is None
    lines = "\n".join(panel_lines(panel))
    assert "DF40 - Xception  0.910  fake" in lines and "n/a   (a clip detector needs a video)" in lines
    assert "FFAA's verdict: real (not a voter)" in lines and "no vote: sta" in lines
    assert "## Classic detectors" in to_markdown(report) and "| DF40 - Xception | 0.910 | fake |" in to_markdown(report)


def test_from_dict_refuses_foreign_records():
    with pytest.raises(ValueError, match="not an ffaa report"):
        report_from_dict({"schema": "other"})


def test_display_text_matches_ffaas_layout(shared_fixtures):
    cases = json.loads((shared_fixtures / "mids" / "parsing_cases.json").read_text())["cases"]
    case = next(c for c in cases if c["name"] == "well_formed_fake")
    report = make_report((case["input"], REAL, REAL))
    extra = case["answer_format_input_extra"]
    from dataclasses import replace

    decision = replace(report.decision, chosen_index=0, match_score=float(extra["Match score"]),
                       difficulty=extra["Difficulty"], method="mids")
    assert display_text(replace(report, decision=decision)) == case["answer_format"]["ok"]


def test_display_without_mids_names_the_rule():
    text = display_text(make_report())
    assert text.splitlines()[-1] == "Match score: n/a (majority decision); Difficulty: hard"
    assert "Analysis result: fake, Forgery type: Identity exchange" in text


def test_undecided_report_says_why():
    report = make_report(("junk", "more junk", ""))
    assert report.final is None
    assert "undecided" in display_text(report)
    assert "UNDECIDED" in to_markdown(report)


def test_markdown_has_verdict_candidates_and_provenance():
    md = to_markdown(make_report())
    assert "**Verdict: FAKE**" in md
    assert "#1 [hypothesis_real]" in md
    assert "EXIF orientation 6 applied" in md


def test_jsonl_reader_ignores_a_torn_last_line(tmp_path):
    rec = json.dumps(report_to_dict(make_report()))
    path = tmp_path / "r.jsonl"
    path.write_text(rec + "\n\n" + rec + "\n" + rec[: len(rec) // 2])
    assert len(list(iter_report_records(path))) == 2
    path.write_text(rec[:10] + "\n" + rec + "\n")
    with pytest.raises(ValueError, match=":1: not valid JSON"):
        list(iter_report_records(path))


def test_markdown_shows_html_in_model_text_instead_of_rendering_it():
    evil = FAKE.replace("Forgery reasoning:", "Forgery reasoning: <script>alert(1)</script> <img src=x onerror=y> &")
    md = to_markdown(make_report((evil, evil, evil)))
    assert "<script>" not in md and "<img" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and "&lt;img src=x onerror=y&gt; &amp;" in md


def test_heatmap_names_differ_for_same_named_images_in_different_folders():
    from dataclasses import replace

    from ffaa.heatmaps import heatmap_name

    a = make_report()
    b = replace(a, image=replace(a.image, path="/other/x.png", sha256="cd" * 32))
    assert heatmap_name(a) == "x_abababab_face0_heatmap.png"
    assert heatmap_name(b) == "x_cdcdcdcd_face0_heatmap.png"
    assert heatmap_name(replace(a, face_index=None)).endswith("_whole_heatmap.png")
