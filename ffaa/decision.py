"""Deciders: pick the final verdict from a face's candidates.

FFAA's decider is MIDS (`ffaa.mids`). Without MIDS weights we use `MajorityDecider`, a plain rule
named for what it is. Both implement `Decider`, so the pipeline does not care which one runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .types import Candidate, CandidateScore, Decision, Difficulty, Verdict

if TYPE_CHECKING:
    from PIL import Image


@runtime_checkable
class Decider(Protocol):
    """Chooses among candidates. `decide_many` lets a network batch several faces.

    `explains`: whether its decisions can be explained with a heatmap (`ffaa.heatmaps`).
    """

    name: str
    explains: bool

    def decide_many(
        self, faces: Sequence[Image.Image], candidates: Sequence[Sequence[Candidate]]
    ) -> list[Decision]: ...


def difficulty(verdicts: Sequence[str | None]) -> Difficulty | None:
    """FFAA's rule: `easy` when every (parsed) verdict agrees, else `hard`."""
    parsed = [v for v in verdicts if v is not None]
    if not parsed:
        return None
    return "easy" if len(set(parsed)) == 1 else "hard"


def candidate_verdicts(candidates: Sequence[Candidate]) -> tuple[str | None, ...]:
    return tuple(c.answer.verdict.value if c.answer else None for c in candidates)


def excluded_scores(candidates: Sequence[Candidate]) -> list[CandidateScore]:
    """Scores for candidates that failed to parse: excluded, with the parser's reason."""
    return [
        CandidateScore(c.index, excluded_reason=f"did not parse: {c.parse.error}")
        for c in candidates
        if c.answer is None
    ]


class MajorityDecider:
    """Majority of the parsed verdicts; used when no MIDS weights are given.

    Ties go to the free-question answer (candidate 0), which was not steered by a hypothesis;
    if that one did not parse either, the result is undecided (verdict None). The forgery score
    is the mean stated `Probability` of the parsed candidates, or the share of fake votes when
    none states one. No match score: that is a MIDS quantity.
    """

    name = "majority"
    explains = False  # a vote has nothing to point at in the image

    def decide_many(self, faces, candidates):
        return [self.decide(c) for c in candidates]

    def decide(self, candidates: Sequence[Candidate]) -> Decision:
        verdicts = candidate_verdicts(candidates)
        parsed = [(c, c.answer) for c in candidates if c.answer is not None]
        final = self._vote(candidates, [a.verdict for _, a in parsed])
        chosen = next((c.index for c, a in parsed if a.verdict == final), None)
        scores = [CandidateScore(c.index) for c, _ in parsed] + excluded_scores(candidates)
        return Decision(
            method=self.name,
            verdict=final,
            chosen_index=chosen,
            match_score=None,
            forgery_score=self._forgery_score(parsed) if parsed else None,
            difficulty=difficulty(verdicts),
            verdicts=verdicts,
            scores=tuple(sorted(scores, key=lambda s: s.index)),
            note="" if parsed else "no candidate could be parsed",
        )

    @staticmethod
    def _vote(candidates: Sequence[Candidate], votes: list[Verdict]) -> Verdict | None:
        fake, real = votes.count(Verdict.FAKE), votes.count(Verdict.REAL)
        if fake != real:
            return Verdict.FAKE if fake > real else Verdict.REAL
        first = candidates[0].answer if candidates else None
        return first.verdict if (votes and first is not None) else None

    @staticmethod
    def _forgery_score(parsed) -> float:
        stated = [a.probability for _, a in parsed if a.probability is not None]
        if stated:
            return sum(stated) / len(stated)
        return sum(a.verdict == Verdict.FAKE for _, a in parsed) / len(parsed)
