"""From face results to item and video verdicts, and a video's per-frame timeline.

A frame (like an image) is as fake as its fakest face: its score is the highest forgery score
among its faces, its verdict "fake" if any face was judged fake. A video is then summarised
over its scored frames by one of three rules, all three computed and the chosen one recorded:

- mean: the mean frame score (steady evidence across the video);
- fake_share: the share of frames judged fake (how much of the video looks forged);
- max: the highest frame score (one clearly forged frame is enough).

The video is "fake" when the chosen value reaches the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

Rule = Literal["mean", "fake_share", "max"]
RULES: tuple[str, ...] = ("mean", "fake_share", "max")


@dataclass(frozen=True)
class FaceOutcome:
    """What a face contributes: its forgery score and verdict (None when undecided)."""

    score: float | None
    verdict: str | None


@dataclass(frozen=True)
class FramePoint:
    """One sampled frame on the timeline; score/verdict None when it had no decided face."""

    frame_index: int
    timestamp: float
    faces: int
    score: float | None
    verdict: str | None


@dataclass(frozen=True)
class VideoAggregate:
    """A video's verdict under `rule` and `threshold`, with every rule's value for comparison."""

    rule: str
    threshold: float
    score: float | None
    verdict: str | None
    mean: float | None
    fake_share: float | None
    max: float | None
    frames_sampled: int
    frames_scored: int
    faces: int

    def as_dict(self) -> dict:
        return asdict(self)


def combine(faces: Sequence[FaceOutcome]) -> FaceOutcome:
    """The outcome of a frame or an image: its fakest decided face."""
    scores = [f.score for f in faces if f.score is not None]
    verdicts = {f.verdict for f in faces if f.verdict is not None}
    verdict = "fake" if "fake" in verdicts else ("real" if verdicts else None)
    return FaceOutcome(max(scores) if scores else None, verdict)


def aggregate(points: Sequence[FramePoint], rule: str, threshold: float) -> VideoAggregate:
    """Summarise a timeline; the verdict is None when no frame was scored."""
    if rule not in RULES:
        raise ValueError(f"unknown video rule {rule!r}; choose one of {', '.join(RULES)}")
    scores = [p.score for p in points if p.score is not None]
    decided = [p for p in points if p.verdict is not None]
    values = {
        "mean": sum(scores) / len(scores) if scores else None,
        "fake_share": sum(p.verdict == "fake" for p in decided) / len(decided) if decided else None,
        "max": max(scores, default=None),
    }
    chosen = values[rule]
    verdict = None if chosen is None else ("fake" if chosen >= threshold else "real")
    return VideoAggregate(
        rule=rule,
        threshold=threshold,
        score=None if chosen is None else round(chosen, 6),
        verdict=verdict,
        mean=_round(values["mean"]),
        fake_share=_round(values["fake_share"]),
        max=_round(values["max"]),
        frames_sampled=len(points),
        frames_scored=len(scores),
        faces=sum(p.faces for p in points),
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
