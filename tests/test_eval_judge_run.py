"""`ffaa eval judge`, `ffaa eval run` and `ffaa eval compare`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ffaa.cli import main
from ffaa.errors import InputError
from ffaa.eval.judge import (
    BackendJudge,
    CallableJudge,
    Judge,
    load_rubric,
    parse_judgement,
    run_judge,
)
from ffaa.eval.texts import Pair, Pairing, load_texts, pair_texts
from ffaa.types import Verdict

CRITERIA = ("completeness", "correctness", "plausibility")


@pytest.mark.parametrize("text, scores, failures", [
    ("completeness: 4\ncorrectness: 3\nplausibility: 5", {"completeness": 4, "correctness": 3, "plausibility": 5}, {}),
    ("**Completeness**: 4/5\n- Correctness score = 2\n* plausibility - 0", {"completeness": 4, "correctness": 2,
                                                                           "plausibility": 0}, {}),
    ("Sure! Completeness: 5 (thorough). Correctness: 4 out of 5. Plausibility: 3.",
     {"completeness": 5, "correctness": 4, "plausibility": 3}, {}),
    ("completeness: 4/10\ncorrectness: 4.5\nplausibility: 7", {},
     {"completeness": "scored out of 10, the scale is 0-5", "correctness": "4.5 is not an integer",
      "plausibility": "7 is outside 0-5"}),
    ("completeness: 3\ncompleteness: 4\ncorrectness: 2\ncorrectness: 2", {"correctness": 2},
     {"completeness": "given 2 different scores (3, 4)", "plausibility": "no score given"}),
    ("completeness: <score>\nI cannot grade this.", {}, {n: "no score given" for n in CRITERIA}),
    ("", {}, {n: "no score given" for n in CRITERIA}),
])
def test_parse_judgement(text, scores, failures):
    assert parse_judgement(text, CRITERIA, (0, 5)) == (scores, failures)


class FakeJudge:
    """A real judge class with canned answers, one per call; records the prompts it saw."""

    name = "fake-judge"

    def __init__(self, answers):
        self.answers = list(answers)
        self.prompts: list[str] = []

    def judge(self, prompt: str) -> str:
        self.prompts.append(prompt)
        answer = self.answers[len(self.prompts) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def pairing(n: int = 4) -> Pairing:
    pairs = tuple(Pair(f"img{i}.png", f"Forgery reasoning: cue {i}.", (f"reference {i}",) if i != 3 else (),
                       Verdict.FAKE if i % 2 else None) for i in range(n))
    return Pairing(pairs, ("img3.png",), (), 0)


def test_run_judge_counts_failures_and_never_scores_them():
    judge = FakeJudge([
        "completeness: 4\ncorrectness: 3\nplausibility: 5",
        "Completeness: 2\ncorrectness: 5\nplausibility: banana",
        "%%% garbled %%%",
        RuntimeError("model out of memory"),
    ])
    assert isinstance(judge, Judge)
    r = run_judge(judge, pairing(), labels=lambda pair: Verdict.REAL)
    assert r.judge == "fake-judge" and r.rubric_version == "judge-v1" and r.scale == (0, 5)
    c = r.coverage
    assert (c.items, c.judged, c.complete, c.judge_errors, c.without_reference, c.without_label) == (4, 4, 1, 1, 1, 0)
    crit = {s.name: s for s in r.criteria}
    assert (crit["completeness"].scored, crit["completeness"].failed, crit["completeness"].mean) == (2, 2, 3.0)
    assert crit["plausibility"].mean == 5.0 and crit["plausibility"].histogram == (0, 0, 0, 0, 0, 1)
    assert crit["correctness"].mean == 4.0
    assert r.items[3].error == "judge raised RuntimeError: model out of memory"
    assert any("plausibility: no score given" in f and "banana" in f for f in r.failures)
    # the rubric prompt carries the label (from the texts, else from `labels`) and the reference
    assert "The true label of the image is: real." in judge.prompts[0]
    assert "The true label of the image is: fake." in judge.prompts[1]
    assert "Reference analysis: reference 1" in judge.prompts[1]
    assert "(no reference analysis available)" in judge.prompts[3]
    assert "plausibility: <score>" in judge.prompts[0] and "integer score from 0 to 5" in judge.prompts[0]


def test_limit_and_callable_judge():
    calls = []

    def grade(prompt: str) -> str:
        calls.append(prompt)
        return "completeness: 1 correctness: 1 plausibility: 1"

    r = run_judge(CallableJudge(grade), pairing(), limit=2)
    assert len(calls) == 2 and r.coverage.judged == 2 and r.coverage.items == 4
    assert all(s.mean == 1.0 for s in r.criteria) and r.judge == "grade"


def test_backend_judge_wraps_an_ffaa_backend():
    from ffaa.backends.scripted import ScriptedBackend

    backend = ScriptedBackend()
    judge = BackendJudge(backend)
    assert isinstance(judge, Judge)
    r = run_judge(judge, pairing(2))
    # the scripted backend answers in the forensic format, not the rubric's: every criterion fails
    assert backend.calls == 2 and r.coverage.complete == 0
    assert all(s.scored == 0 and s.failed == 2 for s in r.criteria)
    assert r.judge == "scripted:scripted-rules"


def make_fake_judge():
    """Factory for the CLI test (`--judge test_eval_judge_run:make_fake_judge`)."""
    return lambda prompt: "completeness: 3\ncorrectness: 4\nplausibility: 5"


def test_cli_judge(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "a/1.png", "text": "Forgery reasoning: blurred."}) + "\n")
    refs = tmp_path / "r.jsonl"
    refs.write_text(json.dumps({"id": "1.png", "text": "Blurred edges.", "label": "fake"}) + "\n")
    out = tmp_path / "out"
    assert main(["eval", "judge", "--predictions", str(preds), "--references", str(refs), "--judge",
                 "test_eval_judge_run:make_fake_judge", "--out", str(out)]) == 0
    assert "| correctness | 4.00 | 1 | 0 |" in capsys.readouterr().out
    data = json.loads((out / "judge.json").read_text())
    assert data["kind"] == "judge" and data["coverage"]["complete"] == 1 and data["coverage"]["without_label"] == 0
    assert main(["eval", "judge", "--predictions", str(preds)]) == 2
    assert "choose a judge" in capsys.readouterr().err
    assert main(["eval", "judge", "--predictions", str(preds), "--judge", "no_such_module:f"]) == 2
    assert "cannot import 'no_such_module'" in capsys.readouterr().err


def batch_face(path: str, frame: int | None, face: int | None = None) -> dict:
    """A face record as `ffaa batch` writes it (`frame`: the video frame it was found in)."""
    from ffaa.parsing import parse_answer
    from ffaa.report import report_to_dict
    from ffaa.types import Candidate, Decision, DecodingSettings, ForensicReport, ImageInfo, Provenance

    text = "Image description: A face.\nForgery reasoning: Blurred edges.\nAnalysis result: fake"
    decision = Decision("majority", Verdict.FAKE, 0, None, 0.7, "easy", ("fake",))
    prov = Provenance("m", None, "scripted", "none", "cpu", "none", "ffaa-v1", "majority", DecodingSettings())
    report = ForensicReport(ImageInfo(path, "0" * 64, 8, 8, "RGB"), face, None,
                            (Candidate(0, "question", "q", text, parse_answer(text)),), decision, prov)
    return {**report_to_dict(report), "record": "face",
            "batch": {"schema": "ffaa.batch/1", "mode": "full", "paths": [path], "frame_index": frame}}


def test_cli_judge_labels_video_frames_by_their_video(tmp_path, capsys):
    """`--labels` gives a video's label to each of its frames (`clip.mp4#frame3`, and
    `clip.mp4#frame7#face1` when a frame has several faces), as to each face of an image."""
    preds = tmp_path / "reports.jsonl"
    records = [batch_face("/in/clip.mp4", 3), batch_face("/in/clip.mp4", 7, 0), batch_face("/in/clip.mp4", 7, 1),
               batch_face("/in/a.png", None, 0), batch_face("/in/a.png", None, 1), batch_face("/in/b.png", None)]
    preds.write_text("".join(json.dumps(r) + "\n" for r in records))
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nclip.mp4,fake\na.png,real\n")
    out = tmp_path / "out"
    assert main(["eval", "judge", "--predictions", str(preds), "--labels", str(labels), "--judge",
                 "test_eval_judge_run:make_fake_judge", "--out", str(out)]) == 0
    assert "1 without label" in capsys.readouterr().out  # b.png, which has no label
    data = json.loads((out / "judge.json").read_text())
    assert [i["id"] for i in data["items"]] == ["/in/clip.mp4#frame3", "/in/clip.mp4#frame7#face0",
                                                 "/in/clip.mp4#frame7#face1", "/in/a.png#face0",
                                                 "/in/a.png#face1", "/in/b.png"]
    assert data["coverage"]["without_label"] == 1


def test_label_lookup_follows_the_path_rule(tmp_path):
    from ffaa.eval.judge import label_lookup
    from ffaa.eval.label_sources import load_labels

    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nv/clip.mp4,fake\nv/clip.mp4#frame2,real\nimgs/a.png,real\n")
    label_of = label_lookup(load_labels(labels))

    def of(ident: str) -> Verdict | None:
        return label_of(Pair(ident, "text", (), None))

    assert of("/data/v/clip.mp4#frame9#face1") is Verdict.FAKE and of("/data/v/clip.mp4") is Verdict.FAKE
    assert of("/data/v/clip.mp4#frame2") is Verdict.REAL  # a label for that very frame wins
    assert of("/data/imgs/a.png#face0") is Verdict.REAL and of("/data/other.png") is None


def test_rubric_comes_from_prompts():
    rubric = load_rubric()
    assert rubric.names == CRITERIA and rubric.scale == (0, 5)
    prompt = rubric.prompt("P", "R", "fake")
    assert "Explanation to grade: P" in prompt and "completeness: <score>" in prompt


# -- run ---------------------------------------------------------------------------------------


def make_bench(root: Path) -> Path:
    """Two sets of plain grey images: the scripted backend calls bright images real."""
    from PIL import Image

    for name in ("A", "B"):
        (root / name / "imgs").mkdir(parents=True)
        labels = {}
        for i, (shade, label) in enumerate([(250, "real"), (10, "fake"), (20, "fake"), (245, "fake")]):
            file = f"{name}{i}.png"
            Image.new("RGB", (48, 48), (shade + (name == "B"),) * 3).save(root / name / "imgs" / file)
            labels[file] = label
        labels["gone.png"] = "real"
        (root / name / f"{name}.json").write_text(json.dumps(labels))
    return root


def test_run_benchmark_with_a_fake_runner(tmp_path):
    from test_eval_detection import report

    from ffaa.eval.benchmarks import load_benchmark
    from ffaa.eval.detection_eval import EvaluationOptions
    from ffaa.eval.run import run_benchmark

    bench = make_bench(tmp_path / "bench")
    seen = []

    def runner(images, out: Path) -> Path:
        seen.extend(images)
        out.mkdir(parents=True)
        lines = [json.dumps(report(str(p), "fake", 0.9)) for p in images]
        (out / "reports.jsonl").write_text("\n".join(lines) + "\n")
        return out / "reports.jsonl"

    run = run_benchmark(bench, tmp_path / "out", runner, EvaluationOptions(n_bootstrap=10), plots=False)
    assert len(seen) == 8 and all(p.is_file() for p in seen)
    r = run.evaluation.result
    assert r.hard.accuracy == 6 / 8 and r.hard.recall_fake == 1.0 and r.hard.recall_real == 0.0
    assert r.coverage.labels_without_prediction == 2 and len(r.per_set) == 2
    assert (tmp_path / "out" / "detection.json").is_file() and not (tmp_path / "out" / "roc.png").exists()
    assert load_benchmark(bench).missing_files == ("A/imgs/gone.png", "B/imgs/gone.png")


def test_run_benchmark_end_to_end_with_the_batch_runner(tmp_path):
    pytest.importorskip("ffaa.batch.runner")
    from ffaa.batch.factory import ScriptedAssistantFactory
    from ffaa.eval.detection_eval import EvaluationOptions
    from ffaa.eval.run import batch_runner, run_benchmark
    from ffaa.pipeline import AnalysisOptions

    bench = make_bench(tmp_path / "bench")
    factory = ScriptedAssistantFactory(AnalysisOptions(face_mode="whole"))
    run = run_benchmark(bench, tmp_path / "out", batch_runner(factory, progress=False),
                        EvaluationOptions(n_bootstrap=10), plots=False)
    r = run.evaluation.result
    # bright "fake" images (245) are called real: 2 errors of 8
    assert r.coverage.images_matched == 8 and r.hard.accuracy == 6 / 8 and r.hard.recall_fake == 4 / 6
    assert r.provenance[0].backend == "scripted" and r.provenance[0].demo
    assert run.reports == tmp_path / "out" / "reports" / "reports.jsonl"


def test_run_refuses_a_benchmark_without_images(tmp_path):
    from ffaa.eval.run import run_benchmark

    root = tmp_path / "bench"
    (root / "S").mkdir(parents=True)
    (root / "S" / "S.json").write_text(json.dumps({"x.png": "real"}))
    with pytest.raises(InputError, match="none of the 1 labelled images exists"):
        run_benchmark(root, tmp_path / "out", lambda images, out: out)


# -- compare -----------------------------------------------------------------------------------


def test_compare_two_detection_results(tmp_path, capsys):
    from test_eval_detection import make_benchmark, report, write_jsonl

    bench = make_benchmark(tmp_path / "bench", {"S": {"1.png": "fake", "2.png": "real", "3.png": "fake"}}, files=False)
    runs = {}
    for name, verdicts, model in (("a", ["fake", "fake", "real"], "m1"), ("b", ["fake", "real", "fake"], "m2")):
        reports = write_jsonl(tmp_path / f"{name}.jsonl", [
            report(f"S/imgs/{i}.png", v, 0.8 if v == "fake" else 0.2, model=model) for i, v in enumerate(verdicts, 1)])
        assert main(["eval", "detection", "--reports", str(reports), "--labels", str(bench), "--out",
                     str(tmp_path / name), "--no-plots", "--bootstrap", "0"]) == 0
        runs[name] = tmp_path / name / "detection.json"
    capsys.readouterr()
    assert main(["eval", "compare", str(runs["a"]), str(runs["b"])]) == 0
    out = capsys.readouterr().out
    assert "A provenance: m1@rev1" in out and "B provenance: m2@rev1" in out and "inputs that differ: reports" in out
    acc = next(line for line in out.splitlines() if line.startswith("hard.accuracy "))
    assert acc.split()[1:] == ["0.3333", "1.0000", "+0.6667"]
    assert "per_set.S.accuracy" in out and "sweep" not in out
    assert main(["eval", "compare", str(runs["a"]), str(runs["b"]), "--changed-only"]) == 0
    assert "hard.n_fake" not in capsys.readouterr().out
    (tmp_path / "x.json").write_text("{}")
    assert main(["eval", "compare", str(runs["a"]), str(tmp_path / "x.json")]) == 2
    assert "not an ffaa eval result" in capsys.readouterr().err


@pytest.mark.parametrize("make", ["folder", "binary", "missing"])
def test_compare_refuses_a_folder_or_binary_file_in_one_line(tmp_path, capsys, make):
    bad = tmp_path / "bad.json"
    if make == "folder":
        bad.mkdir()
    elif make == "binary":
        bad.write_bytes(b"\xff\xfe\x00junk")
    assert main(["eval", "compare", str(bad), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "bad.json" in err


def test_texts_pairing_uses_the_path_rule(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"id": "/data/S/imgs/1.png", "text": "x"}) + "\n")
    r = tmp_path / "r.jsonl"
    r.write_text(json.dumps({"id": "S/imgs/1.png", "text": "y"}) + "\n")
    pairs = pair_texts(load_texts(p), load_texts(r, references=True))
    assert pairs.pairs[0].references == ("y",)


def test_cli_judge_refuses_references_that_match_nothing(tmp_path, capsys):
    """Every item would be judged without its reference: one line before the judge runs."""
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "a/1.png", "text": "Forgery reasoning: blurred."}) + "\n")
    refs = tmp_path / "r.jsonl"
    refs.write_text(json.dumps({"id": "2.png", "text": "Blurred edges."}) + "\n"
                    + json.dumps({"id": "1.png", "text": "  "}) + "\n")
    args = ["eval", "judge", "--predictions", str(preds), "--references", str(refs),
            "--judge", "test_eval_judge_run:make_fake_judge"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no prediction matched a non-empty reference") and "\n" not in err
    refs.write_text(json.dumps({"id": "1.png", "text": "Blurred."}) + "\n" + json.dumps({"id": "9.png", "text": "x"}))
    assert main(args) == 0
    assert "1 references without prediction" in capsys.readouterr().out


def test_benchmark_given_as_a_file_or_a_single_set(tmp_path):
    from ffaa.eval.benchmarks import load_benchmark

    (tmp_path / "S").mkdir()
    (tmp_path / "S" / "S.json").write_text(json.dumps({"x.png": "real"}))
    with pytest.raises(InputError, match="S.json is a file: give the benchmark folder"):
        load_benchmark(tmp_path / "S" / "S.json")
    with pytest.raises(InputError, match="S.json is one set: give its parent folder"):
        load_benchmark(tmp_path / "S")


def test_cli_judge_refuses_two_judges(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "a/1.png", "text": "Forgery reasoning: blurred."}) + "\n")
    args = ["eval", "judge", "--predictions", str(preds), "--judge", "test_eval_judge_run:make_fake_judge", "--demo"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        "error: choose one judge: --judge MODULE:FACTORY or a model (--model/--demo), not both")


def test_judge_factory_is_found_in_the_current_folder(tmp_path, monkeypatch):
    import sys

    from ffaa.commands.eval import load_judge_factory

    (tmp_path / "local_judge_mod.py").write_text("def make():\n    return lambda prompt: 'completeness: 5'\n")
    monkeypatch.chdir(tmp_path)
    judge = load_judge_factory("local_judge_mod:make")
    assert judge.judge("x") == "completeness: 5"
    assert str(tmp_path) not in sys.path  # the folder is not left on the path
