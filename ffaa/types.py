"""Typed values that flow between ffaa's modules.

Every arrow of the pipeline (image -> faces -> candidates -> decision -> report) carries one of
these frozen dataclasses; nothing passes untyped dicts between modules. They import nothing
heavy so that `import ffaa` stays light.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal


class Verdict(str, enum.Enum):
    """The binary answer: is the face real or fake."""

    REAL = "real"
    FAKE = "fake"


class ForgeryType(str, enum.Enum):
    """FFAA's forgery taxonomy. Values are the exact strings the model writes."""

    ENTIRE_FACE_SYNTHESIS = "Entire face synthesis"
    IDENTITY_EXCHANGE = "Identity exchange"
    FACIAL_ATTRIBUTE_MANIPULATION = "Facial attribute manipulation"
    NONE = "None"


PromptKind = Literal["question", "hypothesis_real", "hypothesis_fake", "custom"]
StopReason = Literal["eos", "answer_end", "max_new_tokens", "unknown"]
Difficulty = Literal["easy", "hard"]


@dataclass(frozen=True)
class ForensicAnswer:
    """One answer of the model, split into FFAA's five fields.

    `verdict_text` keeps the verdict as the model wrote it (e.g. "Real."), because FFAA's
    selector compares that raw string; `verdict` is our normalised reading of it.
    """

    description: str
    reasoning: str
    verdict: Verdict
    verdict_text: str
    probability: float | None = None
    forgery_type: ForgeryType | None = None
    forgery_type_text: str | None = None


@dataclass(frozen=True)
class ParseResult:
    """What the parser made of a model text: an answer, or the reason there is none.

    `warnings` lists what was repaired or ignored on the way (bold markers, chatter, a missing
    probability, a truncated reasoning) so a reader can judge how much to trust the fields.
    """

    answer: ForensicAnswer | None
    error: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.answer is not None


@dataclass(frozen=True)
class Candidate:
    """One generated answer and the prompt that produced it."""

    index: int
    prompt_kind: PromptKind
    question: str
    raw_text: str
    parse: ParseResult
    new_tokens: int = 0
    stopped_by: StopReason = "unknown"

    @property
    def answer(self) -> ForensicAnswer | None:
        return self.parse.answer


@dataclass(frozen=True)
class CandidateScore:
    """A decider's view of one candidate.

    `probabilities` are MIDS's four class probabilities
    (real-image/real-claim, real/fake, fake/real, fake/fake) when MIDS decided.
    """

    index: int
    match_score: float | None = None
    probabilities: tuple[float, float, float, float] | None = None
    excluded_reason: str | None = None


@dataclass(frozen=True)
class Decision:
    """The final verdict over a face's candidates, and how it was reached."""

    method: str
    verdict: Verdict | None
    chosen_index: int | None
    match_score: float | None
    forgery_score: float | None
    difficulty: Difficulty | None
    verdicts: tuple[str | None, ...]
    scores: tuple[CandidateScore, ...] = ()
    note: str = ""

    @property
    def agreement(self) -> str:
        """How many parsed candidates share the final verdict, e.g. "2/3 say fake"."""
        parsed = [v for v in self.verdicts if v is not None]
        if self.verdict is None or not parsed:
            return "no parsed verdict"
        same = sum(v == self.verdict.value for v in parsed)
        return f"{same}/{len(parsed)} say {self.verdict.value}"


@dataclass(frozen=True)
class FaceBox:
    """A face region in source-image pixels (right/bottom exclusive) and the crop taken."""

    left: int
    top: int
    right: int
    bottom: int
    crop: tuple[int, int, int, int] | None = None
    detector: str = "dlib-hog"
    score: float | None = None

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


@dataclass(frozen=True)
class ImageInfo:
    """Where an analysed image came from and what loading it involved."""

    path: str
    sha256: str
    width: int
    height: int
    original_mode: str
    format: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DecodingSettings:
    """How the candidates were decoded; recorded in every report."""

    max_new_tokens: int = 512
    # Only benchmarks set this: it forces equal answer lengths so flows can be compared.
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stop_at_answer_end: bool = True


@dataclass(frozen=True)
class Provenance:
    """Everything needed to reproduce or compare a report."""

    model_id: str
    model_revision: str | None
    backend: str
    quantization: str
    device: str
    dtype: str
    prompt_set: str
    decoder: str
    decoding: DecodingSettings
    software: tuple[tuple[str, str], ...] = ()
    timings: tuple[tuple[str, float], ...] = ()
    demo: bool = False
    detectors: tuple[tuple[str, str], ...] = ()  # classic detector -> its weights ("demo": random)


UnitKind = Literal["frame", "clip"]


@dataclass(frozen=True)
class MemberScore:
    """One classic detector's answer for one face (an image's face, or a face track of a video).

    `probability` is P(fake): for a video the mean of its `unit_probabilities` (frames or clips,
    as the originals average them); None with `error` when the detector failed or abstained.
    """

    detector: str
    title: str
    probability: float | None
    vote: Verdict | None
    threshold: float
    unit_kind: UnitKind
    unit_probabilities: tuple[float, ...] = ()
    seconds: float = 0.0
    error: str | None = None
    note: str = ""

    @property
    def units(self) -> int:
        return len(self.unit_probabilities)


@dataclass(frozen=True)
class EnsembleVerdict:
    """The majority vote over members' thresholded P(fake) (and FFAA's verdict, if it votes)."""

    verdict: Verdict | None
    fake_votes: int
    votes_cast: int
    members: int
    rule: str
    ffaa_verdict: Verdict | None = None
    note: str = ""
    ffaa_voted: bool = False


@dataclass(frozen=True)
class DetectorPanel:
    """The classic detectors' view of one face: each member, and their vote.

    crop: how the detectors' face crops were made ("aligned": DeepfakeBench's five-point
    alignment; "box": a square around the face box; "whole": the whole image).
    """

    members: tuple[MemberScore, ...]
    ensemble: EnsembleVerdict
    crop: str = "aligned"
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FaceTrack:
    """One person in a video: where their face was detected, and the detectors' view of them.

    frames/timestamps/boxes are the detection frames (source frame numbers, seconds, boxes).
    """

    track_id: int
    frames: tuple[int, ...]
    timestamps: tuple[float, ...]
    boxes: tuple[FaceBox, ...]
    panel: DetectorPanel


@dataclass(frozen=True)
class VideoDetection:
    """The classic detectors over a video: a panel per face track, and the video's verdict.

    The video is fake when any track's ensemble says fake; `panel` is the deciding track's
    (the first fake track, else the longest), or None when no face was found.
    """

    tracks: tuple[FaceTrack, ...]
    panel: DetectorPanel | None
    deciding_track: int | None
    frames_decoded: int
    segments: tuple[tuple[int, ...], ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ForensicReport:
    """The result for one face (or the whole image when no face was cropped)."""

    image: ImageInfo
    face_index: int | None
    face: FaceBox | None
    candidates: tuple[Candidate, ...]
    decision: Decision
    provenance: Provenance
    warnings: tuple[str, ...] = field(default=())
    detectors: DetectorPanel | None = None

    @property
    def final(self) -> ForensicAnswer | None:
        """The chosen candidate's answer, if the decider chose one."""
        if self.decision.chosen_index is None:
            return None
        for cand in self.candidates:
            if cand.index == self.decision.chosen_index:
                return cand.answer
        return None
