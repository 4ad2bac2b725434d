"""Detection metrics against hand-computed values and scikit-learn; the seed's table and
confusion examples reproduced exactly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ffaa.eval import detection as m
from ffaa.eval.ensemble import (
    EnsembleItem,
    EnsembleTable,
    evaluate_ensemble,
    load_table,
    majority,
    vote,
)
from ffaa.types import Verdict

sk = pytest.importorskip("sklearn.metrics")

# A small case checkable by hand: 4 fakes, 4 reals.
Y = [1, 1, 1, 1, 0, 0, 0, 0]
S = [0.9, 0.8, 0.4, 0.35, 0.6, 0.3, 0.2, 0.1]


def test_hand_checkable_case():
    c = m.confusion(Y, m.predict(S, 0.5))
    assert (c.tp, c.fn, c.fp, c.tn) == (2, 2, 1, 3)
    assert c.matrix() == [[3, 1], [2, 2]]
    assert m.accuracy(c) == 5 / 8
    assert m.recall_fake(c) == 0.5 and m.recall_real(c) == 0.75
    assert m.precision_fake(c) == 2 / 3
    assert m.f1_fake(c) == pytest.approx(4 / 7)
    assert m.balanced_accuracy(c) == 0.625
    # pairs (fake, real) ranked right: 0.9 and 0.8 beat all 4; 0.4 and 0.35 beat 3 of 4 -> 14/16
    assert m.roc_auc(Y, S) == pytest.approx(14 / 16)
    # ranks by score: F F R F F R R R -> precision at each fake: 1, 1, 3/4, 4/5
    assert m.average_precision(Y, S) == pytest.approx((1 + 1 + 3 / 4 + 4 / 5) / 4)
    # ROC vertices (collinear ones dropped): FPR/FNR = 0/.75, 0/.5, .25/.5, .25/0, 1/0;
    # the first smallest |FNR - FPR| is at score 0.6 -> EER = FPR there = 0.25
    e = m.equal_error_rate(Y, S)
    assert (e.eer, e.threshold, e.fnr_at_threshold) == (0.25, 0.6, 0.5)


def test_confusion_metrics_equal_sklearn():
    rng = np.random.default_rng(3)
    for _ in range(50):
        y, p = rng.integers(0, 2, 30), rng.integers(0, 2, 30)
        c = m.confusion(y, p)
        assert c.matrix() == sk.confusion_matrix(y, p, labels=[0, 1]).tolist()
        assert m.accuracy(c) == pytest.approx(sk.accuracy_score(y, p))
        if 0 < y.sum() < y.size:
            assert m.balanced_accuracy(c) == pytest.approx(sk.balanced_accuracy_score(y, p))
            assert m.recall_fake(c) == pytest.approx(sk.recall_score(y, p))
            assert m.recall_real(c) == pytest.approx(sk.recall_score(y, p, pos_label=0))
            assert m.f1_fake(c) == pytest.approx(sk.f1_score(y, p, zero_division=0))
        if p.sum():
            assert m.precision_fake(c) == pytest.approx(sk.precision_score(y, p))


def test_ranking_metrics_equal_sklearn_and_deepfakebench_eer():
    calibration_curve = pytest.importorskip("sklearn.calibration").calibration_curve
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(150):
        n = int(rng.integers(2, 40))
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            continue
        s = np.round(rng.random(n), int(rng.integers(1, 3)))  # rounding makes ties
        assert m.roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
        assert m.average_precision(y, s) == pytest.approx(sk.average_precision_score(y, s), abs=1e-12)
        fpr, tpr, thr = sk.roc_curve(y, s)
        ours = m.roc_curve(y, s)
        np.testing.assert_allclose(ours.fpr, fpr)
        np.testing.assert_allclose(ours.tpr, tpr)
        np.testing.assert_allclose(ours.thresholds[1:], thr[1:])
        # DeepfakeBench: fnr = 1 - tpr; eer = fpr[nanargmin(|fnr - fpr|)]
        assert m.equal_error_rate(y, s).eer == fpr[np.nanargmin(np.abs((1 - tpr) - fpr))]
        frac, mean = calibration_curve(y, s, n_bins=10)
        bins = [b for b in m.calibration(y, s, 10).bins if b.count]
        np.testing.assert_allclose([b.fraction_fake for b in bins], frac)
        np.testing.assert_allclose([b.mean_score for b in bins], mean)
        checked += 1
    assert checked > 100


def test_ece_by_hand():
    # bin (0.1, 0.2]: scores 0.2, 0.2 with one fake -> |0.5 - 0.2| ; bin (0.8, 0.9]: 0.9 fake -> 0.1
    cal = m.calibration([0, 1, 1], [0.2, 0.2, 0.9], n_bins=10)
    assert cal.ece == pytest.approx(2 / 3 * 0.3 + 1 / 3 * 0.1)
    assert [b.count for b in cal.bins] == [0, 2, 0, 0, 0, 0, 0, 0, 1, 0]


def test_undefined_metrics_say_why():
    with pytest.raises(m.UndefinedMetricError, match="only real"):
        m.roc_auc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(m.UndefinedMetricError, match="no fake"):
        m.average_precision([0, 0], [0.1, 0.2])
    c = m.confusion([0, 0], [0, 1])
    with pytest.raises(m.UndefinedMetricError, match="no fake items"):
        m.recall_fake(c)
    assert m.defined(m.recall_fake, c) is None
    with pytest.raises(ValueError, match="NaN"):
        m.roc_auc([0, 1], [0.1, math.nan])
    with pytest.raises(ValueError, match="only 0"):
        m.confusion([0, 2], [0, 1])


def test_spread_of_ffaa_published_accuracies():
    """FFAA's table: DPF 94.2, DFD 82.7, DFDC 65.0, PGC 91.8, WFIR 98.2, MFFDI 87.1; ACC 86.5, sACC 10.0."""
    s = m.spread([94.2, 82.7, 65.0, 91.8, 98.2, 87.1])
    assert s.macro_mean == pytest.approx(86.5)  # FFAA's overall ACC is the mean over sets
    assert s.population_std == pytest.approx(10.811, abs=1e-3)
    assert s.sample_std == pytest.approx(11.843, abs=1e-3)
    # neither convention reproduces the published 10.0
    assert round(s.population_std, 1) != 10.0 and round(s.sample_std, 1) != 10.0
    assert m.spread([0.8]).sample_std is None


def test_bootstrap_is_seeded_and_sane():
    y = np.array(Y)
    p = m.predict(S, 0.5)

    def acc(idx):
        return m.accuracy(m.confusion(y[idx], p[idx]))

    a = m.bootstrap_interval(acc, y.size, 200, seed=7)
    b = m.bootstrap_interval(acc, y.size, 200, seed=7)
    assert a == b and a.low <= 5 / 8 <= a.high and a.n_valid == 200
    perfect = m.bootstrap_interval(lambda idx: m.accuracy(m.confusion(y[idx], y[idx])), y.size, 100)
    assert (perfect.low, perfect.high) == (1.0, 1.0)
    # AUC is undefined on resamples with one class: they are left out and counted
    auc = m.bootstrap_interval(lambda idx: m.roc_auc(y[idx], np.array(S)[idx]), y.size, 300, seed=1)
    assert 0 < auc.n_valid < 300


def test_threshold_sweep_uses_strict_rule():
    rows = m.threshold_sweep(Y, S, [0.35, 0.5])
    # at 0.35 the fake scored exactly 0.35 is called real (not > 0.35)
    assert rows[0].recall_fake == 0.75 and rows[1].recall_fake == 0.5
    assert rows[1].accuracy == 5 / 8


# -- the seed's table and confusion examples ---------------------------------------------------


def _fraction(text: str) -> tuple[int, int]:
    hits, total = text.split("/")
    return int(hits), int(total)


def test_seed_ensemble_table_reproduced(shared_fixtures):
    path = shared_fixtures / "seed_eval" / "ensemble_table.json"
    data = json.loads(path.read_text())
    r = evaluate_ensemble(load_table(path))
    assert r.threshold == 0.70
    voters = {v.name: v for v in (*r.detectors, r.ensemble)}
    for name, expected in data["expected"]["accuracy"].items():
        assert (voters[name].accuracy.hits, voters[name].accuracy.total) == _fraction(expected), name
        assert str(voters[name].accuracy) == expected
    for name, expected in data["expected"]["recall_fake"].items():
        assert (voters[name].recall_fake.hits, voters[name].recall_fake.total) == _fraction(expected), name
    assert [p.value for p in r.ensemble.predictions] == [v["prediction"] for v in data["videos"]]
    assert r.fake_votes == (1, 2, 5, 5, 3) and r.ties == 0
    # 0.70 is not > 0.70 and 0.72 is: SRM says fake on videos 3 and 4 only
    srm = voters["SRM"].predictions
    assert [p.value for p in srm] == ["real", "real", "fake", "fake", "real"]


def test_seed_confusion_examples_reproduced(shared_fixtures):
    cases = json.loads((shared_fixtures / "seed_eval" / "confusion_examples.json").read_text())["cases"]
    with_counts = [c for c in cases if "confusion" in c]
    assert len(with_counts) == 2
    for case in with_counts:
        k = case["confusion"]
        c = m.Confusion(tp=k["fake_as_fake"], fn=k["fake_as_real"], fp=k["real_as_fake"], tn=k["real_as_real"])
        assert m.accuracy(c) == case["accuracy"]
        assert m.recall_fake(c) == case["recall_fake"]
    everything_real = with_counts[0]["confusion"]
    c = m.Confusion(0, everything_real["fake_as_real"], 0, everything_real["real_as_real"])
    assert m.balanced_accuracy(c) == 0.5  # what the 95% accuracy hides
    unskewed = next(c for c in cases if "reported_accuracy" in c)
    assert unskewed["actual_fake"] + unskewed["actual_real"] == unskewed["total"] == 60
    # "86%" of 60 items is no whole count: only 52/60 = 86.7% truncates to 86 (it rounds to 87)
    assert [k for k in range(61) if math.floor(100 * k / 60) == 86] == [52]
    assert [k for k in range(61) if round(100 * k / 60) == 86] == []


def test_majority_vote_ties_and_abstentions():
    assert majority([Verdict.FAKE, Verdict.REAL]) is Verdict.REAL
    assert majority([Verdict.FAKE, Verdict.REAL], tie=Verdict.FAKE) is Verdict.FAKE
    assert majority([Verdict.FAKE, None, None]) is Verdict.FAKE
    assert majority([None, None]) is None
    assert vote(0.7, 0.7) is Verdict.REAL and vote(0.7000001, 0.7) is Verdict.FAKE
    assert vote(math.nan, 0.5) is None and vote(1.5, 0.5) is None
    table = EnsembleTable("t", ("a", "b", "c", "d"), (
        EnsembleItem("x", Verdict.FAKE, (0.9, 0.8, 0.1, 0.2)),   # 2-2 tie
        EnsembleItem("y", Verdict.REAL, (None, None, None, None)),  # nobody votes
        EnsembleItem("z", None, (0.9, 0.9, 0.9, 0.9)),  # unlabelled: not scored
    ), threshold=0.5)
    r = evaluate_ensemble(table)
    assert [p.value if p else None for p in r.ensemble.predictions] == ["real", None, "fake"]
    assert r.ties == 1 and str(r.ensemble.accuracy) == "0/2" and r.ensemble.abstentions == 1
    assert str(evaluate_ensemble(table, tie=Verdict.FAKE).ensemble.recall_fake) == "1/1"
    assert str(r.detectors[0].accuracy) == "1/2"  # detector a abstained on y: an error
    assert r.detectors[0].abstentions == 1


def test_csv_ensemble_table_and_cli(tmp_path, capsys):
    from ffaa.cli import main

    table = tmp_path / "t.csv"
    table.write_text("id,label,det A,det B,det C\nv1,fake,0.9,0.8,\nv2,real,0.1,oops,0.2\nv3,maybe,0.9,0.9,0.9\n")
    t = load_table(table)
    assert t.detectors == ("det A", "det B", "det C") and t.threshold is None
    assert [i.probabilities for i in t.items] == [(0.9, 0.8, None), (0.1, None, 0.2), (0.9, 0.9, 0.9)]
    assert len(t.problems) == 3 and t.items[2].label is None
    talk = evaluate_ensemble(t)  # a CSV gives no threshold: the talk's 0.70
    assert talk.threshold == 0.70 and "talk's rule" in talk.threshold_source
    assert [p.value if p else None for p in talk.ensemble.predictions] == ["fake", "real", "fake"]
    r = evaluate_ensemble(t, threshold=0.5)
    assert str(r.ensemble.accuracy) == "2/2" and r.detectors[1].abstentions == 1
    out = tmp_path / "out"
    assert main(["eval", "ensemble", str(table), "--threshold", "0.5", "--out", str(out)]) == 0
    assert "| ensemble | 2/2 | 1/1 | 1/1 | 0 |" in capsys.readouterr().out
    data = json.loads((out / "ensemble.json").read_text())
    assert data["ensemble"]["accuracy"] == {"hits": 2, "total": 2} and data["tie"] == "real"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label,a\nv1,fake\n")
    assert main(["eval", "ensemble", str(bad), "--threshold", "0.5"]) == 2
    assert "2 columns, the header has 3" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_ensemble_table_that_is_not_utf8_is_one_clear_error(tmp_path, suffix):
    from ffaa.errors import InputError

    table = tmp_path / f"table{suffix}"
    table.write_bytes(b"\xff\xfeid,label,a\n")
    with pytest.raises(InputError, match=rf"table{suffix}: not UTF-8 text"):
        load_table(table)
