"""The talk's ensemble rule: each detector says fake when its P(fake) exceeds a threshold (0.70
by default), and the majority of the votes cast decides. No torch here: `ffaa eval ensemble`
applies the same rule to tables of typed-in probabilities.

- A detector votes fake iff P > threshold (strictly). A missing, NaN or out-of-range P (the
  detector failed, or abstains, e.g. a clip detector on a still image) casts no vote.
- The ensemble says fake iff more than half of the votes cast say fake, real iff more than half
  say real; an exact tie (possible with an even number of votes) goes to `tie`, real by
  default: a tie is not a majority for fake (`tie=fake` sends ties to review instead).
- FFAA's own verdict can be one more voter (`ffaa_votes`), or is only shown beside the vote.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..types import EnsembleVerdict, Verdict

DEFAULT_THRESHOLD = 0.70


def vote(probability: float | None, threshold: float) -> Verdict | None:
    """fake iff probability > threshold; None (abstain) for a missing or invalid probability."""
    if probability is None or not math.isfinite(probability) or not 0.0 <= probability <= 1.0:
        return None
    return Verdict.FAKE if probability > threshold else Verdict.REAL


def majority(votes: Sequence[Verdict | None], tie: Verdict = Verdict.REAL) -> Verdict | None:
    """The verdict of more than half of the votes cast; `tie` on an exact tie; None if none cast."""
    cast = [v for v in votes if v is not None]
    if not cast:
        return None
    fake = sum(v is Verdict.FAKE for v in cast)
    if 2 * fake == len(cast):
        return tie
    return Verdict.FAKE if 2 * fake > len(cast) else Verdict.REAL


@dataclass(frozen=True)
class VoteRule:
    """Thresholds and tie handling; `thresholds` overrides the common threshold per detector."""

    threshold: float = DEFAULT_THRESHOLD
    thresholds: tuple[tuple[str, float], ...] = ()
    tie: Verdict = Verdict.REAL
    ffaa_votes: bool = False

    def __post_init__(self) -> None:
        for name, t in ((None, self.threshold), *self.thresholds):
            if not 0.0 <= t < 1.0:
                where = f" of {name}" if name else ""
                raise ValueError(f"threshold{where} must be in [0, 1), got {t}")

    def threshold_for(self, name: str) -> float:
        return dict(self.thresholds).get(name, self.threshold)

    def describe(self) -> str:
        own = ", ".join(f"{n} > {t:g}" for n, t in self.thresholds)
        text = f"fake iff P > {self.threshold:g}" + (f" ({own})" if own else "")
        text += f"; majority of the votes cast, ties -> {self.tie.value}"
        return text + ("; FFAA's verdict votes too" if self.ffaa_votes else "")


def decide(probabilities: Mapping[str, float | None], rule: VoteRule,
           ffaa_verdict: Verdict | None = None) -> EnsembleVerdict:
    """The ensemble's verdict over named members' P(fake) (None: no vote)."""
    votes = {name: vote(p, rule.threshold_for(name)) for name, p in probabilities.items()}
    if rule.ffaa_votes:
        votes["ffaa"] = ffaa_verdict
    cast = [v for v in votes.values() if v is not None]
    missing = tuple(name for name, v in votes.items() if v is None)
    fake = sum(v is Verdict.FAKE for v in cast)
    note = ""
    if missing:
        note = f"voted with {len(cast)} of {len(votes)} members (no vote: {', '.join(missing)})"
    if cast and 2 * fake == len(cast):
        note = (note + "; " if note else "") + f"tie, resolved as {rule.tie.value}"
    return EnsembleVerdict(
        verdict=majority(list(votes.values()), rule.tie),
        fake_votes=fake,
        votes_cast=len(cast),
        members=len(votes),
        rule=rule.describe(),
        ffaa_verdict=ffaa_verdict,
        note=note,
        ffaa_voted=rule.ffaa_votes,
    )
