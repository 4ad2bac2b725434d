"""`ffaa eval detection`: labels, matching, face aggregation, bad input, results, CLI, plots."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ffaa.cli import main
from ffaa.errors import InputError
from ffaa.eval.detection_eval import EvaluationOptions, evaluate_detection, match_items
from ffaa.eval.detection_report import to_markdown
from ffaa.eval.label_sources import load_labels
from ffaa.eval.labels import parse_label
from ffaa.eval.matching import PathIndex, item_path
from ffaa.eval.predictions import BATCH_SCHEMA, aggregate_images, load_predictions
from ffaa.parsing import parse_answer
from ffaa.report import report_to_dict
from ffaa.types import (
    Candidate,
    Decision,
    DecodingSettings,
    ForensicReport,
    ImageInfo,
    Provenance,
    Verdict,
)

FAST = EvaluationOptions(n_bootstrap=50)


def answer_text(verdict: str, kind: str | None = None, probability: float = 0.5) -> str:
    kind = kind or ("None" if verdict == "real" else "Identity exchange")
    return (f"Image description: A frontal face in soft light.\nForgery reasoning: The skin and edges look {verdict}.\n"
            f"Analysis result: {verdict}\nProbability: {probability}\nForgery type: {kind}")


def report(path: str, verdict: str | None, score: float | None, face: int | None = None, difficulty: str = "easy",
           kind: str | None = None, model: str = "ffaa-mistral-7b", prompt_set: str = "ffaa-v1") -> dict:
    """A report record as `ffaa batch` writes it, from a hand-made ForensicReport."""
    raw = answer_text(verdict or "real", kind)
    cand = Candidate(0, "question", "Is it real or fake?", raw, parse_answer(raw))
    decision = Decision("mids", Verdict(verdict) if verdict else None, 0 if verdict else None, 0.9, score,
                        difficulty if verdict else None, (verdict,))
    prov = Provenance(model, "rev1", "hf_llava", "4bit", "cuda", "bf16", prompt_set, "mids", DecodingSettings())
    return report_to_dict(ForensicReport(ImageInfo(path, "0" * 64, 64, 64, "RGB"), face, None, (cand,), decision, prov))


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def make_benchmark(root: Path, sets: dict[str, dict[str, object]], files: bool = True) -> Path:
    for name, labels in sets.items():
        (root / name / "imgs").mkdir(parents=True, exist_ok=True)
        (root / name / f"{name}.json").write_text(json.dumps(labels))
        if files:
            for file in labels:
                (root / name / "imgs" / file).write_bytes(b"x")
    return root


# -- labels ------------------------------------------------------------------------------------


def test_parse_label_forms():
    assert parse_label("Fake") == (Verdict.FAKE, None)
    assert parse_label(0) == (Verdict.REAL, None)
    assert parse_label(["fake", "facial attribute manipulation"]) == (Verdict.FAKE, "Facial attribute manipulation")
    assert parse_label(["real", "None"]) == (Verdict.REAL, None)
    assert parse_label(["fake", "Face morphing"]) == (Verdict.FAKE, "Face morphing")
    for bad in ("maybe", True, [], ["fake", "x", "y"], None):
        with pytest.raises(ValueError):
            parse_label(bad)


def test_benchmark_layout_labels(tmp_path):
    root = make_benchmark(tmp_path / "bench", {
        "DPF": {"a.png": "fake", "b.png": "real", "c.png": "unsure"},
        "MA": {"a.png": ["fake", "Facial attribute manipulation"], "z.png": ["real", "None"]},
    })
    (root / "MA" / "imgs" / "stray.jpg").write_bytes(b"x")
    (root / "DPF" / "imgs" / "b.png").unlink()
    labels = load_labels(root)
    by_id = {lab.id: lab for lab in labels.labels}
    assert set(by_id) == {"DPF/imgs/a.png", "DPF/imgs/b.png", "MA/imgs/a.png", "MA/imgs/z.png"}
    assert by_id["MA/imgs/a.png"].forgery_type == "Facial attribute manipulation"
    assert by_id["MA/imgs/a.png"].set == "MA" and by_id["DPF/imgs/b.png"].verdict is Verdict.REAL
    assert labels.invalid == 1
    problems = "\n".join(labels.problems)
    assert "'unsure' is neither real nor fake" in problems
    assert "not on disk: DPF/imgs/b.png" in problems and "not labelled: MA/imgs/stray.jpg" in problems
    one_set = load_labels(root / "MA" / "MA.json")
    assert {lab.id for lab in one_set.labels} == {"MA/imgs/a.png", "MA/imgs/z.png"}


def test_csv_and_jsonl_labels_with_bad_rows(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("id,label,set,type\nx/1.png,fake,S1,Identity exchange\nx/2.png,REAL,S1,\n"
                   "x/3.png,,S2,\n,fake,S2,\nx/1.png,fake,S1,\nx/4.png,1,S2,\nx/4.png,0,S2,\n")
    labels = load_labels(csv)
    assert [(lab.id, lab.verdict.value, lab.set, lab.forgery_type) for lab in labels.labels] == [
        ("x/1.png", "fake", "S1", "Identity exchange"), ("x/2.png", "real", "S1", None)]
    assert (labels.rows, labels.invalid, labels.conflicting) == (7, 2, 1)
    assert any("conflicting" in p for p in labels.problems)
    jsonl = write_jsonl(tmp_path / "labels.jsonl", [{"id": "a.png", "label": "fake"}, "[1, 2]", "{oops",
                                                   {"id": "b.png", "label": ["fake", "Entire face synthesis"]}])
    labels = load_labels(jsonl)
    assert [lab.forgery_type for lab in labels.labels] == [None, "Entire face synthesis"] and labels.invalid == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("name,verdict\na,fake\n")
    with pytest.raises(InputError, match="'id' and 'label'"):
        load_labels(bad)
    with pytest.raises(InputError, match="not found"):
        load_labels(tmp_path / "missing.csv")


# -- matching ----------------------------------------------------------------------------------


def test_path_matching_rule():
    index = PathIndex(["DPF/imgs/1.png", "DFD/imgs/1.png", "DFD/imgs/2.png", "3.png"])
    assert index.match("/data/bench/DPF/imgs/1.png").id == "DPF/imgs/1.png"
    assert index.match(r"C:\bench\DFD\imgs\1.png").id == "DFD/imgs/1.png"
    assert index.match("./DFD/imgs/2.png").how == "id_suffix"
    hit = index.match("imgs/2.png")
    assert (hit.id, hit.how) == ("DFD/imgs/2.png", "path_suffix")
    hit = index.match("imgs/1.png")
    assert hit.id is None and hit.how == "ambiguous" and len(hit.candidates) == 2
    assert index.match("/flat/copy/1.png").id is None  # a bare name never jumps folders
    assert index.match("/anywhere/3.png").id == "3.png"  # a bare-name label matches any folder
    assert index.match("/x/dpf/imgs/1.png").id is None  # case matters


def test_item_ids_of_frames_and_faces_match_their_file():
    """The explanation texts' ids of a video frame / one face of several take the file's label,
    unless a label names that very frame; plain `match` keeps the whole id."""
    assert item_path("/in/clip.mp4#frame3") == "/in/clip.mp4"
    assert item_path("/in/clip.mp4#frame3#face1") == item_path("/in/clip.mp4#face1") == "/in/clip.mp4"
    assert item_path("/in/a#face1.png") == "/in/a#face1.png"  # a '#' inside a file name is no part
    index = PathIndex(["v/clip.mp4", "v/clip.mp4#frame5", "w/a.png", "x/a.png"])
    assert index.match("/in/v/clip.mp4#frame3").how == "unmatched"
    assert index.match_item("/in/v/clip.mp4#frame3").id == "v/clip.mp4"
    assert index.match_item("/in/v/clip.mp4#frame3#face0").id == "v/clip.mp4"
    assert index.match_item("/in/v/clip.mp4#frame5#face0").id == "v/clip.mp4"
    assert index.match_item("/in/v/clip.mp4#frame5").id == "v/clip.mp4#frame5"  # the frame's own label wins
    assert index.match_item("a.png#face1").how == "ambiguous"  # the file rule still applies to the file
    assert index.match_item("/in/other.mp4#frame3").how == "unmatched"


def test_detection_labels_a_batch_video_by_its_own_record(tmp_path):
    """Detection needs no frame rule: a batch video is one prediction under the video's path
    (its frame records are skipped), matched to the video's label like any image."""
    frame = report("/in/clip.mp4", "real", 0.1)
    frame.update(record="face", batch={"paths": ["/in/clip.mp4"], "frame_index": 3})
    video = {"schema": BATCH_SCHEMA, "record": "video", "batch": {"paths": ["/in/clip.mp4"]},
             "aggregate": {"verdict": "fake", "score": 0.75}}
    preds = load_predictions(write_jsonl(tmp_path / "reports.jsonl", [frame, video]))
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nclip.mp4,fake\n")
    matched = match_items(aggregate_images(preds.faces), load_labels(labels).labels)
    assert [(i.id, i.path, i.verdict) for i in matched.items] == [("clip.mp4", "/in/clip.mp4", Verdict.FAKE)]
    assert not matched.unmatched and not matched.labels_without_prediction


# -- predictions -------------------------------------------------------------------------------


def test_prediction_loading_counts_bad_records(tmp_path):
    records = [
        report("/b/S/imgs/1.png", "fake", 0.9),
        "{not json",
        [1, 2],
        {"schema": "ffaa.report/0"},
        {"schema": "ffaa.report/1", "image": {}},
        report("/b/S/imgs/2.png", "real", math.nan),
        report("/b/S/imgs/3.png", "fake", 1.7),
        report("/b/S/imgs/4.png", "real", None),
        report("/b/S/imgs/1.png", "real", 0.2),  # re-analysed: replaces the first
        {"id": "/b/S/imgs/5.png", "verdict": "fake", "score": 0.8},
        {"id": "/b/S/imgs/6.png", "verdict": "perhaps"},
        '{"id": "/b/S/imgs/7.png", "verdict": "fake", "score": 0.',  # torn last line
    ]
    preds = load_predictions(write_jsonl(tmp_path / "r.jsonl", records))
    assert preds.records == 12 and preds.invalid == 6 and preds.duplicates == 1
    assert preds.bad_scores == 2 and preds.missing_scores == 1
    by_path = {f.path: f for f in preds.faces}
    assert by_path["/b/S/imgs/1.png"].verdict is Verdict.REAL and by_path["/b/S/imgs/1.png"].score == 0.2
    assert by_path["/b/S/imgs/2.png"].score is None and by_path["/b/S/imgs/2.png"].verdict is Verdict.REAL
    assert by_path["/b/S/imgs/5.png"].score == 0.8
    text = "\n".join(preds.problems)
    assert "not valid JSON" in text and "not an object" in text and "'ffaa.report/0'" in text
    assert "score nan is not finite" in text and "outside [0, 1]" in text and "'perhaps'" in text
    assert preds.provenance[0].model_id == "ffaa-mistral-7b" and preds.provenance[0].n_reports == 5
    with pytest.raises(InputError, match="no usable prediction records"):
        load_predictions(write_jsonl(tmp_path / "empty.jsonl", ["", "{bad"]))
    with pytest.raises(InputError, match="not found"):
        load_predictions(tmp_path / "nope.jsonl")


def test_faces_aggregate_to_images(tmp_path):
    preds = load_predictions(write_jsonl(tmp_path / "r.jsonl", [
        report("/i/group.png", "real", 0.2, face=0),
        report("/i/group.png", "fake", 0.7, face=1, difficulty="hard", kind="Identity exchange"),
        report("/i/group.png", "fake", 0.9, face=2, kind="Entire face synthesis"),
        report("/i/group.png", None, None, face=3),
        report("/i/none.png", None, None, face=0),
        report("/i/solo.png", "real", 0.1),
    ]))
    images = {i.path: i for i in aggregate_images(preds.faces)}
    g = images["/i/group.png"]
    assert (g.verdict, g.score, g.difficulty, g.forgery_type, g.n_faces, g.n_undecided_faces) == (
        Verdict.FAKE, 0.9, "hard", "Entire face synthesis", 4, 1)
    assert images["/i/none.png"].verdict is None
    assert images["/i/solo.png"].verdict is Verdict.REAL and images["/i/solo.png"].difficulty == "easy"


def test_batch_records_are_understood(tmp_path):
    face = report("/in/a.png", "fake", 0.8)
    face.update(record="face", batch={"paths": ["/in/a.png", "/in/copy_of_a.png"], "frame_index": None})
    frame = report("/in/v.mp4", "real", 0.1)
    frame.update(record="face", batch={"paths": ["/in/v.mp4"], "frame_index": 3})
    records = [
        {"schema": BATCH_SCHEMA, "record": "run", "settings": {}},
        face,
        frame,
        {"schema": BATCH_SCHEMA, "record": "video", "batch": {"paths": ["/in/v.mp4"]},
         "aggregate": {"verdict": "fake", "score": 0.75}},
        {"schema": BATCH_SCHEMA, "record": "error", "batch": {"paths": ["/in/broken.png"]}},
        {"schema": BATCH_SCHEMA, "record": "item", "batch": {"paths": ["/in/broken.png"]}, "status": "error"},
        {"schema": BATCH_SCHEMA, "record": "item", "batch": {"paths": ["/in/a.png", "/in/copy_of_a.png"]}},
    ]
    preds = load_predictions(write_jsonl(tmp_path / "reports.jsonl", records))
    images = {i.path: i for i in aggregate_images(preds.faces)}
    assert set(images) == {"/in/a.png", "/in/copy_of_a.png", "/in/v.mp4", "/in/broken.png"}
    assert images["/in/copy_of_a.png"].verdict is Verdict.FAKE and images["/in/copy_of_a.png"].score == 0.8
    assert images["/in/v.mp4"].verdict is Verdict.FAKE and images["/in/v.mp4"].score == 0.75
    assert images["/in/broken.png"].verdict is None and images["/in/broken.png"].n_faces == 0
    assert preds.invalid == 0


def test_batch_schema_constant_matches_the_batch_writer():
    records = pytest.importorskip("ffaa.batch.records")
    assert records.BATCH_SCHEMA == BATCH_SCHEMA


# -- the evaluation ----------------------------------------------------------------------------


def synthetic(tmp_path: Path, n: int = 30, seed: int = 0):
    """Three sets, scores separated by class, a verdict at 0.5; returns (reports, bench, y, s)."""
    rng = np.random.default_rng(seed)
    sets: dict[str, dict[str, object]] = {}
    records, ys, ss = [], [], []
    for set_name in ("DPF", "DFD", "MA"):
        labels: dict[str, object] = {}
        for i in range(n):
            y = int(rng.integers(0, 2))
            s = float(np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1))
            name = f"{i:03d}.png"
            labels[name] = (["fake", "Identity exchange"] if set_name == "MA" else "fake") if y else "real"
            records.append(report(f"/srv/bench/{set_name}/imgs/{name}", "fake" if s > 0.5 else "real", s,
                                  difficulty="easy" if abs(s - 0.5) > 0.2 else "hard"))
            ys.append(y)
            ss.append(s)
        sets[set_name] = labels
    bench = make_benchmark(tmp_path / "bench", sets, files=False)
    return write_jsonl(tmp_path / "reports.jsonl", records), bench, np.array(ys), np.array(ss)


def test_evaluation_matches_reference_implementations(tmp_path):
    sk = pytest.importorskip("sklearn.metrics")
    reports, bench, y, s = synthetic(tmp_path)
    ev = evaluate_detection(load_predictions(reports), load_labels(bench), FAST)
    r = ev.result
    p = (s > 0.5).astype(int)
    assert r.coverage.images_matched == 90 and r.coverage.labels_without_prediction == 0
    assert r.hard.accuracy == pytest.approx(sk.accuracy_score(y, p))
    assert r.hard.balanced_accuracy == pytest.approx(sk.balanced_accuracy_score(y, p))
    assert r.hard.recall_fake == pytest.approx(sk.recall_score(y, p))
    assert r.hard.precision_fake == pytest.approx(sk.precision_score(y, p))
    assert r.hard.f1_fake == pytest.approx(sk.f1_score(y, p))
    assert r.hard.confusion.matrix() == sk.confusion_matrix(y, p).tolist()
    assert r.score.auc == pytest.approx(sk.roc_auc_score(y, s))
    assert r.score.ap == pytest.approx(sk.average_precision_score(y, s))
    per_set = {g.name: g.accuracy for g in r.per_set}
    expected = [sk.accuracy_score(y[k * 30:(k + 1) * 30], p[k * 30:(k + 1) * 30]) for k in range(3)]
    assert [per_set[n] for n in ("DPF", "DFD", "MA")] == pytest.approx(expected)
    assert (r.spread.sacc == pytest.approx(np.std(expected))
            and r.spread.sacc_sample == pytest.approx(np.std(expected, ddof=1)))
    assert r.spread.macro_accuracy == pytest.approx(np.mean(expected))
    easy = {g.name: g for g in r.by_difficulty}["easy"]
    assert easy.accuracy == 1.0  # |s - 0.5| > 0.2 is always on the right side of 0.5
    types = {g.name: g for g in r.by_type}
    assert types["Identity exchange"].n_fake == int(y[60:].sum()) and "fake (type unknown)" in types
    assert r.type_accuracy.n == int(((y[60:] == 1) & (p[60:] == 1)).sum())  # MA fakes that were caught
    assert r.type_accuracy.accuracy == 1.0  # the hand-made answers say "Identity exchange" when fake
    ci = {i.name: i for i in r.intervals}
    assert ci["accuracy"].low <= r.hard.accuracy <= ci["accuracy"].high and ci["auc"].n_valid == 50
    assert len(r.sweep) == 19 and r.best_threshold is not None
    half = next(row for row in r.sweep if row.threshold == 0.5)
    assert half.accuracy == pytest.approx(r.hard.accuracy)  # the verdict is the 0.5 rule here
    assert ev.roc is not None and r.provenance[0].prompt_set == "ffaa-v1"
    md = to_markdown(r)
    assert "sACC (population std of 3 per-set ACCs)" in md and "| DPF |" in md


def test_missing_labels_undecided_and_one_class(tmp_path):
    records = [report(f"/b/S/imgs/{i}.png", "real", 0.1 * i) for i in range(1, 5)]
    records.append(report("/b/S/imgs/9.png", None, None))
    records.append(report("/elsewhere/x.png", "fake", 0.9))
    reports = write_jsonl(tmp_path / "r.jsonl", records)
    bench = make_benchmark(tmp_path / "bench", {"S": {f"{i}.png": "real" for i in (1, 2, 3, 4, 9, 10)}}, files=False)
    r = evaluate_detection(load_predictions(reports), load_labels(bench), FAST).result
    c = r.coverage
    assert (c.images_matched, c.images_unmatched, c.labels_without_prediction, c.undecided) == (5, 1, 1, 1)
    assert r.hard.n == 4 and r.hard.accuracy == 1.0 and r.hard.recall_fake is None
    assert r.score.auc is None and r.score.eer is None
    assert any("only real" in u for u in r.score.undefined)
    notes = "\n".join(r.notes)
    assert "undecided" in notes and "1 predicted images had no label" in notes
    assert "no label for predicted image: /elsewhere/x.png" in c.problems
    assert "no prediction for labelled image: S/imgs/10.png" in c.problems
    assert "| ROC-AUC | n/a |" in to_markdown(r)


def test_seed_lesson_everything_real_on_skewed_data(tmp_path):
    labels = {f"{i}.png": ("fake" if i < 3 else "real") for i in range(60)}
    bench = make_benchmark(tmp_path / "bench", {"S": labels}, files=False)
    reports = write_jsonl(tmp_path / "r.jsonl", [report(f"S/imgs/{i}.png", "real", 0.2) for i in range(60)])
    r = evaluate_detection(load_predictions(reports), load_labels(bench), FAST).result
    assert r.hard.accuracy == 0.95 and r.hard.recall_fake == 0.0 and r.hard.balanced_accuracy == 0.5
    assert r.hard.precision_fake is None and r.score.auc == 0.5
    assert any("skewed labels" in n for n in r.notes)


# -- CLI, files, plots -------------------------------------------------------------------------


def test_cli_writes_json_markdown_items_and_plots(tmp_path, capsys):
    reports, bench, _, _ = synthetic(tmp_path, n=20)
    out = tmp_path / "out"
    assert main(["eval", "detection", "--reports", str(reports), "--labels", str(bench), "--out", str(out),
                 "--bootstrap", "30"]) == 0
    printed = capsys.readouterr()  # the Markdown report, with --out too (as ensemble and judge do)
    assert printed.out.startswith("# Detection evaluation\n") and "60 images matched to labels" in printed.out
    assert f"wrote {out / 'detection.json'}" in printed.err
    data = json.loads((out / "detection.json").read_text())
    assert data["schema"] == "ffaa.eval/1" and data["kind"] == "detection"
    assert data["hard"]["confusion"]["tp"] + data["hard"]["confusion"]["fn"] == data["hard"]["n_fake"]
    assert {i["role"] for i in data["inputs"]} == {"reports", "labels"}
    assert len(data["inputs"][0]["sha256"]) == 64
    assert len((out / "items.jsonl").read_text().splitlines()) == 60
    for name in ("roc", "pr", "confusion", "reliability", "scores"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 100_000
        assert f"({name}.png)" in (out / "detection.md").read_text()


def test_cli_prints_markdown_and_reports_errors_in_one_line(tmp_path, capsys):
    reports, bench, _, _ = synthetic(tmp_path, n=5)
    assert main(["eval", "detection", "--reports", str(reports), "--labels", str(bench), "--bootstrap", "0"]) == 0
    assert capsys.readouterr().out.startswith("# Detection evaluation")
    assert main(["eval", "detection", "--reports", str(tmp_path / "none.jsonl"), "--labels", str(bench)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: file not found") and err.count("\n") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "detection", "--reports", str(reports), "--labels", str(empty)]) == 2
    assert "no benchmark sets found" in capsys.readouterr().err


def test_cli_refuses_when_no_report_matches_a_label(tmp_path, capsys):
    reports = write_jsonl(tmp_path / "r.jsonl", [report("/data/flat/a.png", "fake", 0.9),
                                                  report("/data/flat/b.png", "real", 0.1)])
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nS/imgs/a.png,fake\nS/imgs/b.png,real\n")
    out = tmp_path / "out"
    assert main(["eval", "detection", "--reports", str(reports), "--labels", str(labels), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no report matched a label (2 predicted images, 2 labels)") and err.count("\n") == 1
    assert "'/data/flat/a.png'" in err and "'S/imgs/a.png'" in err
    assert not out.exists()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_labels_that_are_not_utf8_are_one_clear_error(tmp_path, suffix):
    bad = tmp_path / f"labels{suffix}"
    bad.write_bytes(b"id,label\n\xff\xfe.png,fake\n")
    with pytest.raises(InputError, match=rf"labels{suffix}: not UTF-8 text"):
        load_labels(bad)


def test_one_class_labels_explain_each_undefined_metric_once(tmp_path):
    reports = write_jsonl(tmp_path / "r.jsonl", [report(f"S/imgs/{i}.png", "fake", 0.9) for i in range(4)])
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"S/imgs/{i}.png,fake\n" for i in range(4)))
    r = evaluate_detection(load_predictions(reports), load_labels(labels), FAST).result
    assert r.score.auc is None and r.hard.balanced_accuracy is None
    assert any("only fake items" in n for n in r.notes)
    assert len(r.notes) == len(set(r.notes))
    assert r.notes.count("recall on reals: no real items") == 1


def test_imports_stay_light():
    code = ("import sys, ffaa, ffaa.eval, ffaa.cli; ffaa.cli.build_parser(); "
            "import ffaa.eval.detection_eval, ffaa.eval.explanation, ffaa.eval.judge, ffaa.eval.run, ffaa.eval.plots; "
            "print(sorted(m for m in ('torch', 'sklearn', 'matplotlib', 'sentence_transformers', 'transformers', "
            "'pycocoevalcap', 'bert_score', 'rouge_score') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
