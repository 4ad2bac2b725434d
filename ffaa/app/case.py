"""A case: one image, its analysis and the conversation about it. No gradio in here.

The web app keeps one `Case` per browser session. Everything in it is a frozen dataclass, so a
handler that fails half-way leaves the previous state untouched, and each step returns a new
value instead of mutating one that another request may be reading.

The conversation follows the chat template's multi-turn form: the first turn is the question
of the candidate the decider chose and that candidate's raw answer, exactly as the model wrote
it; every follow-up is appended after it, and the model sees the same face crop it analysed.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, BinaryIO, Literal

from ..backends.base import GenerationRequest
from ..errors import InputError
from ..pipeline import Assistant, FaceJob
from ..types import Candidate, DecodingSettings, ForensicReport, ImageInfo

if TYPE_CHECKING:
    from PIL import Image

    from ..media import LoadedImage

FaceMode = Literal["faces", "auto", "whole"]
# How the page names each face mode (Options -> Analyse); error messages quote these labels.
FACE_MODE_LABELS: dict[FaceMode, str] = {
    "faces": "Detected faces (none found: error)",
    "auto": "Detected faces, else the whole image",
    "whole": "The whole image, no face crop",
}
DISPLAY_MAX_SIDE = 1024
# Follow-ups kept in the prompt are also capped by length: about 1500 tokens of English, so that
# image tokens, the opening turn and the history fit a 4096-token context with room to answer.
HISTORY_CHARS = 6000
# Role markers of the chat template: text after one is the model inventing the next turn.
_ROLE_MARKERS = ("USER:", "ASSISTANT:")


@dataclass(frozen=True)
class Turn:
    """One question and the model's answer, with how long the answer took."""

    question: str
    answer: str
    first_token_s: float | None = None
    total_s: float | None = None


@dataclass(frozen=True)
class FaceThread:
    """One analysed face: its report, the crop the model saw, and the turn the chat starts from."""

    report: ForensicReport
    crop: Image.Image
    opening: Turn

    @property
    def label(self) -> str:
        """"Face 1" (1-based, reading order), or "Whole image" when no face was cropped."""
        if self.report.face_index is None:
            return "Whole image"
        return f"Face {self.report.face_index + 1}"


@dataclass(frozen=True)
class PendingImage:
    """An upload that passed the checks and waits for the model."""

    loaded: LoadedImage
    name: str
    question: str | None
    face_mode: FaceMode
    load_s: float


@dataclass(frozen=True)
class Case:
    """An analysed image and everything said about it since.

    `turns` holds the follow-ups of all faces in the order they were asked, as
    (thread index, turn), so the chat can be replayed exactly as the user saw it.
    """

    case_id: str
    name: str
    image: Image.Image  # a display copy, at most DISPLAY_MAX_SIDE px; `info` has the original size
    info: ImageInfo
    question: str
    threads: tuple[FaceThread, ...]
    turns: tuple[tuple[int, Turn], ...] = ()

    def followups(self, thread: int) -> tuple[Turn, ...]:
        return tuple(turn for index, turn in self.turns if index == thread)

    def with_turn(self, thread: int, turn: Turn) -> Case:
        return replace(self, turns=(*self.turns, (thread, turn)))

    @property
    def reports(self) -> tuple[ForensicReport, ...]:
        return tuple(t.report for t in self.threads)


# -- first turn: the full analysis -----------------------------------------------------------


def open_upload(
    handle: BinaryIO, name: str, assistant: Assistant, question: str | None, face_mode: FaceMode
) -> PendingImage:
    """Decode and check an upload before it queues for the model.

    Loading from the open file under the user's file name (not the server's cache path) keeps
    server paths out of error messages and out of the downloaded reports.
    """
    from ..media import LoadLimits, load_image_from_bytes

    start = time.perf_counter()
    loaded = load_image_from_bytes(handle, name=name, limits=assistant.options.limits or LoadLimits())
    question = (question or "").strip() or None
    return PendingImage(loaded, name, question, face_mode, time.perf_counter() - start)


def analyze_pending(assistant: Assistant, pending: PendingImage) -> Case:
    """Crop the faces and run the full analysis (three candidates per face, then the decider)."""
    engine = _engine_for(assistant, pending)
    start = time.perf_counter()
    jobs = engine.face_jobs(pending.loaded)
    if pending.face_mode == "faces" and all(job.box is None for job in jobs):
        raise InputError(
            f"{pending.name}: no face found. The detector sees frontal faces of 40 px or more; "
            f"choose “{FACE_MODE_LABELS['auto']}” under Options → Analyse to analyse it anyway."
        )
    timings = {"load_image": pending.load_s, "faces": time.perf_counter() - start}
    reports = engine.analyze_jobs(jobs, timings)
    return Case(
        case_id=uuid.uuid4().hex[:8],
        name=pending.name,
        image=display_copy(pending.loaded.image),
        info=pending.loaded.info,
        question=engine.questions(pending.loaded.info)[0][1],
        threads=tuple(_thread(job, report) for job, report in zip(jobs, reports)),
    )


def display_copy(image: Image.Image) -> Image.Image:
    """A copy small enough to keep per session and to send to a browser."""
    copy = image.copy()
    copy.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE))
    return copy


def _engine_for(assistant: Assistant, pending: PendingImage) -> Assistant:
    """The shared assistant with this request's question and face mode; the model is shared.

    "faces" runs as "auto" so that a face-less image comes back as one whole-image job that
    `analyze_pending` can refuse with a message written for the web page.
    """
    mode = "whole" if pending.face_mode == "whole" else "auto"
    question = pending.question if pending.question is not None else assistant.options.question
    return assistant.with_options(face_mode=mode, question=question)


def _thread(job: FaceJob, report: ForensicReport) -> FaceThread:
    return FaceThread(report, job.image, opening_turn(report))


def chosen_candidate(report: ForensicReport) -> Candidate:
    """The decider's choice, or the free-question answer when nothing was chosen."""
    for cand in report.candidates:
        if cand.index == report.decision.chosen_index:
            return cand
    return report.candidates[0]


def opening_turn(report: ForensicReport) -> Turn:
    """The turn every follow-up continues from: the chosen candidate's prompt and raw text."""
    cand = chosen_candidate(report)
    return Turn(cand.question, cand.raw_text)


# -- follow-ups: a streamed multi-turn answer ------------------------------------------------


def conversation(
    case: Case, thread: int, question: str, keep: int, max_chars: int = HISTORY_CHARS
) -> list[tuple[str, str | None]]:
    """The turns sent to the model: opening, recent follow-ups of this face, the new question.

    At most `keep` follow-ups, and only as many of the latest as fit in `max_chars`: older ones
    are dropped first so a long chat cannot outgrow the model's context. The opening turn always
    stays because it holds the analysis the chat is about.
    """
    opening = case.threads[thread].opening
    recent: list[Turn] = []
    budget = max_chars
    for turn in reversed(case.followups(thread)[-keep:] if keep > 0 else ()):
        budget -= len(turn.question) + len(turn.answer)
        if budget < 0:
            break
        recent.insert(0, turn)
    return [(opening.question, opening.answer), *((t.question, t.answer) for t in recent), (question, None)]


def stream_answer(
    assistant: Assistant,
    case: Case,
    thread: int,
    question: str,
    settings: DecodingSettings,
    keep: int = 6,
) -> Iterator[Turn]:
    """Yield the growing answer to a follow-up as `Turn`s; the last one carries the timings."""
    prompt = assistant.prompts.chat(conversation(case, thread, question, keep))
    request = GenerationRequest(case.threads[thread].crop, prompt)
    start, first, text = time.perf_counter(), None, ""
    for piece in assistant.backend.stream(request, settings):
        text += piece
        if first is None and text.strip():
            first = time.perf_counter() - start
        visible, ended = cut_at_role_marker(text)
        yield Turn(question, visible.strip(), first)
        if ended:
            break  # the model started writing the user's next turn: the answer is complete
    visible, _ = cut_at_role_marker(text)
    yield Turn(question, visible.strip(), first, time.perf_counter() - start)


def cut_at_role_marker(text: str) -> tuple[str, bool]:
    """The text before a chat-template role marker, and whether one was found."""
    cut = min((i for i in (text.find(m) for m in _ROLE_MARKERS) if i >= 0), default=-1)
    return (text, False) if cut < 0 else (text[:cut], True)


def chat_settings(assistant: Assistant, max_new_tokens: int) -> DecodingSettings:
    """The analysis decoding settings with the chat's own length limit."""
    return dataclasses.replace(assistant.options.decoding, max_new_tokens=max_new_tokens)


def thread_choices(case: Case | None) -> Sequence[tuple[str, int]]:
    """(label, index) pairs for the "ask about" selector."""
    return [] if case is None else [(t.label, i) for i, t in enumerate(case.threads)]
