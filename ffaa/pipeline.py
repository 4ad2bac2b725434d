"""The assistant: image -> faces -> three candidates each -> parse -> decide -> reports.

`Assistant.analyze` is a list of named steps; each step is a small function. The three
candidates of every face (a free question, then the "real" and "fake" hypotheses) go to the
backend together in one batched call, and the decider sees all faces at once.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .backends.base import Backend, Generation, GenerationRequest
from .decision import Decider, MajorityDecider
from .parsing import parse_answer
from .prompts import PromptSet, load_answer_format, load_prompt_set
from .types import (
    Candidate,
    DecodingSettings,
    FaceBox,
    ForensicReport,
    ImageInfo,
    PromptKind,
    Provenance,
    Verdict,
)

if TYPE_CHECKING:
    from PIL import Image

    from .detectors.runner import DetectorSet
    from .media import LoadedImage, LoadLimits

SOFTWARE = ("ffaa", "torch", "transformers", "bitsandbytes", "accelerate", "pillow", "dlib-bin")


@dataclass(frozen=True)
class AnalysisOptions:
    """What to analyse and how to decode.

    face_mode: "faces" analyses every detected face and refuses an image without one; "whole"
    analyses the whole image; "auto" falls back to the whole image (with a warning) when no
    face is found.
    """

    face_mode: str = "faces"
    question: str | None = None
    seed: int = 0
    decoding: DecodingSettings = field(default_factory=DecodingSettings)
    batch_size: int = 12
    limits: LoadLimits | None = None


@dataclass(frozen=True)
class FaceJob:
    """One face to analyse: the crop fed to the models and where it came from.

    source: the whole image the face was found in; the classic detectors make their own crops
    from it (and skip a job without one, e.g. a video frame whose video they score as a whole).
    """

    image: Image.Image
    info: ImageInfo
    face_index: int | None
    box: FaceBox | None
    warnings: tuple[str, ...] = ()
    source: Image.Image | None = None


def software_versions() -> tuple[tuple[str, str], ...]:
    found = []
    for name in SOFTWARE:
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(found)


class Assistant:
    """FFAA's inference flow over a backend and a decider."""

    def __init__(
        self,
        backend: Backend,
        decider: Decider | None = None,
        prompts: PromptSet | None = None,
        options: AnalysisOptions | None = None,
        detectors: DetectorSet | None = None,
    ):
        self.backend = backend
        self.decider = decider or MajorityDecider()
        self.prompts = prompts or load_prompt_set()
        self.options = options or AnalysisOptions()
        self.detectors = detectors

    def with_options(self, **changes) -> Assistant:
        """The same models (backend, decider, detectors) with some analysis options changed."""
        return Assistant(self.backend, self.decider, self.prompts, replace(self.options, **changes), self.detectors)

    # -- steps ------------------------------------------------------------------------------

    def load(self, source: str | Path | LoadedImage) -> LoadedImage:
        from .media import LoadedImage, LoadLimits, load_image

        if isinstance(source, LoadedImage):
            return source
        return load_image(source, self.options.limits or LoadLimits())

    def face_jobs(self, loaded: LoadedImage) -> list[FaceJob]:
        """Crop every face (or take the whole image, per `face_mode`)."""
        from .faces import crop_faces

        crops = crop_faces(loaded.image, mode=self.options.face_mode, name=loaded.info.path)
        jobs = []
        for i, crop in enumerate(crops):
            warnings = (crop.note,) if crop.note else ()
            index = None if crop.box is None else i
            jobs.append(FaceJob(crop.image, loaded.info, index, crop.box, warnings, loaded.image))
        return jobs

    def questions(self, info: ImageInfo) -> list[tuple[PromptKind, str]]:
        """Candidate prompts: the free question, then the real and fake hypotheses."""
        question = self.options.question
        if question is None:
            question = self.prompts.questions[self.prompts.question_index(self.options.seed, info.sha256)]
        return [
            ("question" if self.options.question is None else "custom", question),
            ("hypothesis_real", self.prompts.hypothesis(Verdict.REAL)),
            ("hypothesis_fake", self.prompts.hypothesis(Verdict.FAKE)),
        ]

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        """Send requests to the backend in batches of `batch_size`."""
        size = max(1, self.options.batch_size)
        out: list[Generation] = []
        for start in range(0, len(requests), size):
            out += self.backend.generate(requests[start : start + size], self.options.decoding)
        return out

    def candidates(self, jobs: Sequence[FaceJob]) -> list[tuple[Candidate, ...]]:
        """Three candidates per face, generated together and ordered as FFAA orders them."""
        plans = [self.questions(job.info) for job in jobs]
        end = load_answer_format().end_labels  # the parser's format: the backend stops where it ends
        requests = [
            GenerationRequest(job.image, self.prompts.chat([(q, None)]), end)
            for job, plan in zip(jobs, plans)
            for _, q in plan
        ]
        gens = self.generate(requests)
        per_face = []
        for f, plan in enumerate(plans):
            mine = gens[f * len(plan) : (f + 1) * len(plan)]
            cands = [
                Candidate(i, kind, q, g.text, parse_answer(g.text), g.new_tokens, g.stopped_by)
                for i, ((kind, q), g) in enumerate(zip(plan, mine))
            ]
            per_face.append(order_like_ffaa(cands))
        return per_face

    # -- orchestration ------------------------------------------------------------------------

    def analyze(self, source: str | Path | LoadedImage) -> list[ForensicReport]:
        """All reports for one image: one per face (or one for the whole image)."""
        timings: dict[str, float] = {}
        with _timer(timings, "load_image"):
            loaded = self.load(source)
        with _timer(timings, "faces"):
            jobs = self.face_jobs(loaded)
        return self.analyze_jobs(jobs, timings)

    def analyze_jobs(
        self, jobs: Sequence[FaceJob], timings: dict[str, float] | None = None
    ) -> list[ForensicReport]:
        """Reports for face jobs of one or several images, batched together."""
        timings = dict(timings or {})
        if not jobs:
            return []
        with _timer(timings, "generate"):
            cands = self.candidates(jobs)
        with _timer(timings, "decide"):
            decisions = self.decider.decide_many([j.image for j in jobs], cands)
        with _timer(timings, "detectors"):
            panels = self.detector_panels(jobs, decisions)
        per_face = ("generate", "decide", "detectors")
        timings = {k: v / len(jobs) if k in per_face else v for k, v in timings.items()}
        if self.detectors is None:
            timings.pop("detectors")
        provenance = self.provenance(timings)
        return [
            ForensicReport(j.info, j.face_index, j.box, c, d, provenance, j.warnings, panel)
            for j, c, d, panel in zip(jobs, cands, decisions, panels)
        ]

    def detector_panels(self, jobs: Sequence[FaceJob], decisions) -> list:
        """The classic detectors on each face that has its source image (None elsewhere);
        FFAA's verdict goes with it, as a voter or shown beside the vote."""
        if self.detectors is None:
            return [None] * len(jobs)
        from .detectors.runner import face_crops

        return [
            None if j.source is None
            else self.detectors.score_still(face_crops(j.source, j.box, self.detectors.sizes), d.verdict)
            for j, d in zip(jobs, decisions)
        ]

    def provenance(self, timings: dict[str, float]) -> Provenance:
        info = self.backend.info
        return Provenance(
            model_id=info.model_id,
            model_revision=info.revision,
            backend=info.name,
            quantization=info.quantization,
            device=info.device,
            dtype=info.dtype,
            prompt_set=self.prompts.version,
            decoder=self.decider.name,
            decoding=replace(self.options.decoding, seed=self.options.seed),
            software=software_versions(),
            timings=tuple((k, round(v, 4)) for k, v in timings.items()),
            demo=info.demo,
            detectors=self.detectors.provenance() if self.detectors is not None else (),
        )


def order_like_ffaa(cands: list[Candidate]) -> tuple[Candidate, ...]:
    """FFAA's order: answer 0 (free question), then the hypothesis opposite to answer 0's
    verdict, then the one that agrees with it. If answer 0 did not parse: real, then fake.
    """
    first, rest = cands[0], cands[1:]
    if first.answer is not None and first.answer.verdict == Verdict.REAL:
        rest = sorted(rest, key=lambda c: c.prompt_kind != "hypothesis_fake")
    else:
        rest = sorted(rest, key=lambda c: c.prompt_kind != "hypothesis_real")
    return tuple(replace(c, index=i) for i, c in enumerate([first, *rest]))


class _timer:
    """Adds the seconds spent in a `with` block to `timings[name]`."""

    def __init__(self, timings: dict[str, float], name: str):
        self.timings, self.name = timings, name

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.start
