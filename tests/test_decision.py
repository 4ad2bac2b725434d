"""The majority decider and FFAA's difficulty rule."""

from __future__ import annotations

from ffaa.decision import MajorityDecider, difficulty
from ffaa.parsing import parse_answer
from ffaa.types import Candidate, Verdict

ANS = "Image description: d\nForgery reasoning: r\nAnalysis result: {v}\nProbability: {p}\nForgery type: None"


def cands(*specs):
    out = []
    for i, spec in enumerate(specs):
        text = "unparseable" if spec is None else ANS.format(v=spec[0], p=spec[1])
        out.append(Candidate(i, "question", "q", text, parse_answer(text)))
    return out


def test_difficulty_is_ffaas_rule():
    assert difficulty(["fake", "fake", "fake"]) == "easy"
    assert difficulty(["fake", "real", "fake"]) == "hard"
    assert difficulty([None, "real", "real"]) == "easy"
    assert difficulty([None, None]) is None


def test_majority_and_forgery_score():
    d = MajorityDecider().decide(cands(("fake", 0.9), ("real", 0.2), ("fake", 0.7)))
    assert d.verdict is Verdict.FAKE and d.chosen_index == 0
    assert abs(d.forgery_score - (0.9 + 0.2 + 0.7) / 3) < 1e-12
    assert d.difficulty == "hard" and d.agreement == "2/3 say fake"
    assert d.match_score is None


def test_tie_goes_to_the_free_question_answer():
    d = MajorityDecider().decide(cands(("real", "0.3"), None, ("fake", "0.8")))
    assert d.verdict is Verdict.REAL and d.chosen_index == 0
    excluded = [s for s in d.scores if s.excluded_reason]
    assert [s.index for s in excluded] == [1]


def test_tie_without_a_parsed_first_answer_is_undecided():
    d = MajorityDecider().decide(cands(None, ("real", "0.3"), ("fake", "0.8")))
    assert d.verdict is None and d.chosen_index is None


def test_nothing_parsed():
    d = MajorityDecider().decide(cands(None, None, None))
    assert d.verdict is None and d.forgery_score is None and "no candidate" in d.note


def test_vote_share_when_no_probability_is_stated():
    text = "Analysis result: fake"
    c = [Candidate(0, "question", "q", text, parse_answer(text))]
    assert MajorityDecider().decide(c).forgery_score == 1.0
