"""FFAA's selection rule: from MIDS's class probabilities to the chosen answer.

For each answer with probabilities p = (p0, p1, p2, p3) over the classes
(real image/real claim, real/fake claim, fake/real claim, fake/fake claim):

* an answer claiming real gets the match score  m = p0 / (p0 + p2)
  (how sure MIDS is that the image is real, given that the answer says real);
* any other answer gets                          m = p3 / (p3 + p1).

The best answer is the argmax of m, taken in float32 with the first index winning ties (ties that
only float32 rounding creates included, as in FFAA). Its claim is the verdict; the reported match
score is its m in float64; the forgery score (for AUC) is m if it claims fake, else 1 - m.

The branch is chosen by comparing the verdict *string* with exactly "real". Callers decide which
strings to pass: our normalised verdicts ("real"/"fake") by default, or FFAA's raw lower-cased
verdict text for strict parity (where "real." takes the fake branch).

One deliberate difference: FFAA raises ZeroDivisionError when a denominator is 0 (only possible
when the softmax underflows). Here such an answer gets m = 0.5 - MIDS gave no evidence either
way - and the rest of the rule is unchanged.

Pure Python + numpy: importing this module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

REAL = "real"
ZERO_DENOMINATOR_SCORE = 0.5


@dataclass(frozen=True)
class Selection:
    """The outcome of the rule over one face's answers (positions refer to the inputs)."""

    best: int
    claims_fake: bool
    match_score: float
    forgery_score: float
    match_scores: tuple[float, ...]

    @property
    def pred(self) -> int:
        """FFAA's `pred`: 0 for real, 1 for fake."""
        return int(self.claims_fake)

    @property
    def display(self) -> str:
        """The match score as FFAA prints it (4 decimals)."""
        return f"{self.match_score:.4f}"


def match_score(verdict: str, probs: Sequence[float]) -> float:
    """m for one answer, in float64 (see the module docstring)."""
    p0, p1, p2, p3 = (float(p) for p in probs)
    num, den = (p0, p0 + p2) if verdict == REAL else (p3, p3 + p1)
    return num / den if den != 0.0 else ZERO_DENOMINATOR_SCORE


def select(verdicts: Sequence[str], probabilities: Sequence[Sequence[float]]) -> Selection:
    """Apply the rule to one face: `verdicts[i]` is answer i's verdict string and
    `probabilities[i]` its 4 class probabilities (rows need not sum to 1).

    Raises ValueError for no answers, mismatched lengths, rows that are not 4 long, or
    non-finite / negative probabilities.
    """
    _check(verdicts, probabilities)
    scores = [match_score(v, p) for v, p in zip(verdicts, probabilities)]
    best = int(np.argmax(np.asarray(scores, dtype=np.float32)))  # first maximum wins
    m = scores[best]
    fake = verdicts[best] != REAL
    return Selection(best=best, claims_fake=fake, match_score=m,
                     forgery_score=m if fake else 1.0 - m, match_scores=tuple(scores))


def _check(verdicts: Sequence[str], probabilities: Sequence[Sequence[float]]) -> None:
    if not verdicts:
        raise ValueError("the selector needs at least one answer")
    if len(verdicts) != len(probabilities):
        raise ValueError(f"{len(verdicts)} verdicts but {len(probabilities)} probability rows")
    for i, row in enumerate(probabilities):
        if len(row) != 4:
            raise ValueError(f"answer {i}: expected 4 class probabilities, got {len(row)}")
        if not all(math.isfinite(float(p)) and float(p) >= 0.0 for p in row):
            raise ValueError(f"answer {i}: probabilities must be finite and non-negative, got {list(row)}")
