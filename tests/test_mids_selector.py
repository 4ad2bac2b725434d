"""FFAA's selection rule, case by case (selector_cases.json and the golden model's selector)."""

from __future__ import annotations

import json

import pytest

from ffaa.mids.selector import ZERO_DENOMINATOR_SCORE, match_score, select


def load_cases(shared_fixtures):
    path = shared_fixtures / "mids" / "selector_cases.json"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return json.loads(path.read_text())["cases"]


def test_selector_cases(shared_fixtures):
    cases = [c for c in load_cases(shared_fixtures) if "error" not in c["expected"]]
    assert len(cases) == 13
    for case in cases:
        exp = case["expected"]
        got = select(case["verdicts"], case["scores"])
        assert got.best == exp["best_index"], case["name"]
        assert got.pred == exp["pred"], case["name"]
        assert got.match_score == pytest.approx(exp["match_score"], abs=1e-12), case["name"]
        assert got.forgery_score == pytest.approx(exp["forgery_score"], abs=1e-12), case["name"]
        assert got.display == exp["match_score_display"], case["name"]
        assert got.match_scores == pytest.approx(exp["all_match_scores_float64"], abs=1e-12), case["name"]


def test_float32_tie_goes_to_first_index(shared_fixtures):
    case = next(c for c in load_cases(shared_fixtures) if c["name"] == "float32_tie_collapses")
    got = select(case["verdicts"], case["scores"])
    assert got.match_scores[1] > got.match_scores[0]  # larger in float64 ...
    assert got.best == 0  # ... but equal in float32, so the first wins


def test_zero_denominator_is_defined(shared_fixtures):
    case = next(c for c in load_cases(shared_fixtures) if c["name"] == "zero_denominator")
    assert case["expected"]["error"] == "ZeroDivisionError"  # FFAA crashes here; we do not
    got = select(case["verdicts"], case["scores"])
    assert got.match_score == ZERO_DENOMINATOR_SCORE == 0.5
    assert got.forgery_score == 0.5 and got.best == 0 and got.pred == 0


def test_zero_denominator_loses_to_real_evidence():
    got = select(["fake", "real"], [[0.5, 0.0, 0.5, 0.0], [0.6, 0.1, 0.2, 0.1]])
    assert got.match_scores == (0.5, pytest.approx(0.75))
    assert got.best == 1


def test_golden_model_selector(shared_fixtures):
    path = shared_fixtures / "mids" / "golden_tiny.json"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    meta = json.loads(path.read_text())
    scores = meta["expected"]["scores_softmax"]["data"]
    rows = [r for scenario in meta["expected"]["selector"].values() for r in scenario]
    assert len(rows) == 4
    for row in rows:
        got = select(row["verdicts"], scores[row["image"]])
        assert (got.best, got.pred) == (row["best_index"], row["pred"])
        assert got.match_score == pytest.approx(row["match_score"], abs=1e-6)
        assert got.forgery_score == pytest.approx(row["forgery_score"], abs=1e-6)


def test_only_exact_real_takes_the_real_branch():
    probs = [0.5, 0.125, 0.25, 0.125]
    assert match_score("real", probs) == pytest.approx(2 / 3)
    for other in ("Real", "real.", "fake", "uncertain"):
        assert match_score(other, probs) == pytest.approx(0.5)


@pytest.mark.parametrize("verdicts, probs, message", [
    ([], [], "at least one"),
    (["real"], [[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]], "1 verdicts but 2"),
    (["real"], [[0.1, 0.2, 0.3]], "4 class probabilities"),
    (["real"], [[float("nan"), 0.2, 0.3, 0.4]], "finite"),
])
def test_bad_inputs(verdicts, probs, message):
    with pytest.raises(ValueError, match=message):
        select(verdicts, probs)
