"""`ffaa eval ensemble --reports`: the talk's table from real runs of `ffaa detect` and
`ffaa batch --detectors`, and the cross-validated fusion beside the vote."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ffaa.cli import main
from ffaa.detectors.vote import VoteRule
from ffaa.eval.ensemble_runs import RunItem, evaluate_run, fit_fusion
from ffaa.types import Verdict


def detect_record(ident: str, label: str, probs: dict[str, float | None], seconds: float = 1.0) -> dict:
    members = [{"detector": d, "title": d.upper(), "probability": p, "vote": None, "threshold": 0.7,
                "unit_kind": "frame", "unit_probabilities": [] if p is None else [p], "seconds": seconds,
                "error": None if p is not None else "failed", "note": ""} for d, p in probs.items()]
    panel = {"members": members, "ensemble": {"verdict": None, "fake_votes": 0, "votes_cast": 0, "members": 0,
                                              "rule": "", "note": ""}, "crop": "aligned", "notes": []}
    return {"schema": "ffaa.detect/1", "id": ident, "path": f"/data/{ident}", "label": label, "kind": "image",
            "panel": panel, "faces": [{"face_index": 0, "box": None, "panel": panel}], "video": None,
            "seconds": 2 * seconds, "error": None, "detectors": {d: "/w/x.pth" for d in probs}}


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_the_talks_table_from_a_run(tmp_path, shared_fixtures):
    # The five videos of the talk, as a run would record them.
    table = json.loads((shared_fixtures / "seed_eval" / "ensemble_table.json").read_text())
    names = ["clip_large", "xception", "i3d", "sta", "srm"]
    records = [detect_record(v["file"], v["actual"], dict(zip(names, v["probabilities"]))) for v in table["videos"]]
    result = evaluate_run(write(tmp_path / "detect.jsonl", records))
    got = {m.name: (str(m.accuracy), str(m.recall_fake)) for m in (*result.members, result.ensemble)}
    expected = table["expected"]
    for name, title in zip(names, table["detectors"]):
        assert got[name] == (expected["accuracy"][title], expected["recall_fake"][title])
    assert got["ensemble"] == (expected["accuracy"]["ensemble"], expected["recall_fake"]["ensemble"])
    assert list(result.predictions) == [v["prediction"] for v in table["videos"]]
    assert result.members[0].seconds_per_file == pytest.approx(1.0)


def test_auc_and_balanced_accuracy_of_members(tmp_path):
    records = [detect_record("a", "fake", {"x": 0.9}), detect_record("b", "fake", {"x": 0.6}),
               detect_record("c", "real", {"x": 0.2}), detect_record("d", "real", {"x": 0.65})]
    result = evaluate_run(write(tmp_path / "d.jsonl", records), rule=VoteRule(threshold=0.5))
    m = result.members[0]
    assert str(m.accuracy) == "3/4" and m.balanced_accuracy == pytest.approx(0.75)
    assert m.auc == pytest.approx(0.75)  # pairs: (0.9>0.2, 0.9>0.65, 0.6>0.2, 0.6<0.65)


def test_fusion_is_cross_validated_and_matches_sklearn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rng = np.random.default_rng(0)
    items, x, y = [], [], []
    for n in range(20):
        fake = n % 2 == 0
        probs = {"a": float(np.clip(0.6 * fake + rng.normal(0.2, 0.15), 0, 1)), "b": float(rng.uniform())}
        items.append(RunItem(str(n), str(n), Verdict.FAKE if fake else Verdict.REAL, probs, {}))
        x.append([probs["a"], probs["b"]])
        y.append(int(fake))
    fused = fit_fusion(items, ["a", "b"])
    p = cross_val_predict(LogisticRegression(max_iter=1000), np.array(x), y,
                          cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")[:, 1]
    assert fused.folds == 5 and fused.items == 20
    assert fused.accuracy == pytest.approx(float(((p > 0.5) == np.array(y)).mean()))
    assert fused.coefficients[0] > abs(fused.coefficients[1])  # the informative member weighs more
    assert fit_fusion(items[:3], ["a", "b"]).accuracy is None


def test_cli_from_a_detect_run_and_its_errors(tmp_path, capsys):
    records = [detect_record("a", "fake", {"x": 0.9}), detect_record("b", "real", {"x": 0.1})]
    path = write(tmp_path / "d.jsonl", records)
    assert main(["eval", "ensemble", "--reports", str(path), "--out", str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    assert "| X | 2/2 | 1/1 | 1/1 |" in out
    assert json.loads((tmp_path / "res" / "ensemble.json").read_text())["kind"] == "ensemble_run"
    assert main(["eval", "ensemble", "table.json", "--reports", str(path)]) == 2
    assert "one of them" in capsys.readouterr().err
    empty = write(tmp_path / "e.jsonl", [{"schema": "ffaa.batch/1", "record": "run"}])
    assert main(["eval", "ensemble", "--reports", str(empty)]) == 2
    assert "no classic-detector results" in capsys.readouterr().err


@pytest.mark.slow
def test_from_a_real_batch_run(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("dlib")
    from test_batch_support import noise_images

    from ffaa.batch import BatchConfig, ScriptedAssistantFactory, run_batch
    from ffaa.detectors.config import DetectorsConfig, parse_detectors
    from ffaa.pipeline import AnalysisOptions

    images = noise_images(tmp_path / "in", 4)
    labels = write(tmp_path / "labels.jsonl", [{"id": p.name, "label": "fake" if i % 2 else "real"}
                                                for i, p in enumerate(images)])
    factory = ScriptedAssistantFactory(AnalysisOptions(face_mode="whole"),
                                       detectors=DetectorsConfig(parse_detectors("meso4=demo")))
    run_batch(BatchConfig(out=tmp_path / "run", inputs=(str(tmp_path / "in"),), progress=False), factory)
    assert main(["eval", "ensemble", "--reports", str(tmp_path / "run" / "reports.jsonl"),
                 "--labels", str(labels)]) == 0
    out = capsys.readouterr().out
    assert "| Meso4 |" in out and "| FFAA |" in out and "DEMO detectors" in out
