"""Verdict-only triage: one forward pass per face instead of three long answers.

The model is shown the prompt set's `triage` question with its answer begun as FFAA's model
begins the verdict line ("Analysis result:"), and the backend's `score_verdict` reads the
next-token probabilities of "real" and "fake". P(fake) / (P(real) + P(fake)) is the face's
forgery score; the verdict is "fake" at or above the threshold. No explanation is written, so
a triage report has no candidates; its decision's method is "triage". `--explain-flagged`
later runs the full analysis on the items triage flagged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..backends.base import GenerationRequest
from ..prompts import PromptSet, load_answer_format
from ..types import Decision, ForensicReport, Verdict

if TYPE_CHECKING:
    from ..pipeline import Assistant, FaceJob

METHOD = "triage"


def triage_prompt(prompts: PromptSet) -> str:
    """The triage question, with the answer opened at the verdict field's label."""
    return prompts.chat([(prompts.triage, None)]) + f" {load_answer_format().label('verdict')}:"


def triage_reports(assistant: Assistant, jobs: Sequence[FaceJob], threshold: float) -> list[ForensicReport]:
    """A verdict-only report per face job, scored in batches of the assistant's batch size."""
    if not jobs:
        return []
    prompt = triage_prompt(assistant.prompts)
    requests = [GenerationRequest(job.image, prompt) for job in jobs]
    size = max(1, assistant.options.batch_size)
    start = time.perf_counter()
    scores: list[float] = []
    for i in range(0, len(requests), size):
        scores += assistant.backend.score_verdict(requests[i : i + size])
    per_face = (time.perf_counter() - start) / len(jobs)
    provenance = replace(assistant.provenance({"triage": per_face}), decoder=METHOD)
    return [
        ForensicReport(job.info, job.face_index, job.box, (), triage_decision(s, threshold), provenance, job.warnings)
        for job, s in zip(jobs, scores)
    ]


def triage_decision(score: float, threshold: float) -> Decision:
    """The decision of a triage score: no candidates, no match score, no difficulty."""
    verdict = Verdict.FAKE if score >= threshold else Verdict.REAL
    return Decision(
        method=METHOD,
        verdict=verdict,
        chosen_index=None,
        match_score=None,
        forgery_score=round(float(score), 6),
        difficulty=None,
        verdicts=(),
        note=f"verdict-only triage: P(fake) from next-token probabilities, threshold {threshold:g}",
    )
