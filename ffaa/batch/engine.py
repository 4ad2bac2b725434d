"""The work of one item, independent of where it runs (this process or a Ray actor).

`prepare` reads an item and turns it into face jobs: an image is decoded and its faces cropped;
a video is sampled and the faces of every sampled frame cropped. Any failure becomes an
`ItemError` with the stage it happened in, never an exception: a batch always finishes.
`analyze_group` then sends the face jobs of several prepared items to the model together (one
`Assistant.analyze_jobs` call, or one triage pass), so small items share generate batches, and
`build_block` turns each item's reports into the records of its block.
"""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import FfaaError, InputError
from ..types import ForensicReport, ImageInfo
from .aggregate import FaceOutcome, FramePoint, aggregate, combine
from .inputs import Item
from .records import (
    Block,
    ItemSummary,
    Mode,
    error_record,
    face_record,
    item_fields,
    item_record,
    video_record,
)
from .triage import triage_reports

if TYPE_CHECKING:
    from PIL import Image

    from ..pipeline import Assistant, FaceJob

THUMB_SIDE = 160
CROP_SIDE = 112


@dataclass(frozen=True)
class VideoOptions:
    """How videos are sampled and summarised (see `ffaa.video` and `aggregate.py`).

    With neither `every_seconds` nor `frames_per_video`, 8 frames are spread over the video.
    """

    every_seconds: float | None = None
    frames_per_video: int | None = None
    max_frames: int = 32
    rule: str = "mean"
    threshold: float = 0.5

    def sampling(self):
        from ..video import VideoSampling

        return VideoSampling(self.every_seconds, self.frames_per_video, self.max_frames)


@dataclass(frozen=True)
class EngineSettings:
    """What an item's analysis needs besides the assistant; travels to Ray actors as is."""

    mode: Mode = "full"
    triage_threshold: float = 0.5
    video: VideoOptions = field(default_factory=VideoOptions)
    thumbnails: bool = True


@dataclass(frozen=True)
class ItemError:
    """Why an item could not be (fully) analysed, and at which stage."""

    stage: str
    reason: str
    error_type: str


@dataclass(frozen=True)
class SampledFrame:
    index: int
    timestamp: float
    faces: int


@dataclass(frozen=True)
class VideoScan:
    """The frames sampled from a video and whether it decoded to its end."""

    frames: tuple[SampledFrame, ...]
    partial: bool
    error: str | None
    info: dict[str, Any]


@dataclass(frozen=True)
class Prepared:
    """An item ready for the model: its face jobs (with the sampled frame of each, for videos)."""

    item: Item
    jobs: tuple[FaceJob, ...] = ()
    frame_of_job: tuple[int | None, ...] = ()
    video: VideoScan | None = None
    thumb: bytes | None = None
    error: ItemError | None = None
    seconds: float = 0.0
    detection: dict[str, Any] | None = None  # the classic detectors over the whole video
    detection_error: str | None = None


class _Failed(Exception):
    def __init__(self, error: ItemError):
        super().__init__(error.reason)
        self.error = error


@contextmanager
def _stage(name: str) -> Iterator[None]:
    """Turn any failure inside the block into an ItemError of stage `name`."""
    try:
        yield
    except _Failed:
        raise
    except FfaaError as exc:
        raise _Failed(ItemError(name, str(exc), type(exc).__name__)) from exc
    except Exception as exc:  # a library failing on one odd file must not stop the batch
        raise _Failed(ItemError(name, f"{type(exc).__name__}: {exc}", type(exc).__name__)) from exc


# -- preparing -------------------------------------------------------------------------------


def prepare(item: Item, assistant: Assistant, settings: EngineSettings) -> Prepared:
    """Decode the item and crop its faces; failures become `Prepared.error`."""
    start = time.perf_counter()
    try:
        if item.problem:
            raise _Failed(ItemError("read", item.problem, "InputError"))
        if item.kind == "video":
            prepared = _prepare_video(item, assistant, settings)
        else:  # "other" too: the image loader says precisely what the file is instead
            prepared = _prepare_image(item, assistant, settings)
    except _Failed as failed:
        prepared = Prepared(item, error=failed.error)
    return replace(prepared, seconds=time.perf_counter() - start)


def _prepare_image(item: Item, assistant: Assistant, settings: EngineSettings) -> Prepared:
    with _stage("decode"):
        loaded = assistant.load(item.path)
    thumb = thumbnail(loaded.image, THUMB_SIDE) if settings.thumbnails else None
    try:
        with _stage("faces"):
            jobs = assistant.face_jobs(loaded)
    except _Failed as failed:
        return Prepared(item, thumb=thumb, error=failed.error)
    return Prepared(item, tuple(jobs), (None,) * len(jobs), thumb=thumb)


def _prepare_video(item: Item, assistant: Assistant, settings: EngineSettings) -> Prepared:
    from ..video import probe_video, sample_frames

    with _stage("video"):
        info = probe_video(item.path)
        _check_frame_size(item, info, assistant)
    if assistant.detectors is not None:
        return _prepare_video_with_detectors(item, info, assistant, settings)
    with _stage("video"):
        sampler = sample_frames(item.path, settings.video.sampling())
        scanned = _scan_frames(item, sampler, sampler.info, assistant, settings)
    return _prepared_video(item, scanned, VideoScan(scanned.frames, sampler.partial, sampler.error,
                                                    _video_info(sampler.info)))


def _prepare_video_with_detectors(item: Item, info, assistant: Assistant, settings: EngineSettings) -> Prepared:
    """One decode for both: the classic detectors' runs of consecutive frames and FFAA's
    sampled frames (the frames nearest to the sampling's target times)."""
    from ..detectors.video import decode, plan_for
    from ..video import plan_targets

    targets = list(itertools.islice(plan_targets(settings.video.sampling(), info.duration_s),
                                    settings.video.max_frames))
    with _stage("video"):
        decoded = decode(item.path, plan_for(assistant.detectors), targets)
        scanned = _scan_frames(item, (decoded.frames[p] for p in decoded.extra), info, assistant, settings)
    scan = VideoScan(scanned.frames, decoded.partial, decoded.error, _video_info(info))
    detection, detection_error = _detect_video(item, assistant, decoded)
    return replace(_prepared_video(item, scanned, scan), detection=detection, detection_error=detection_error)


@dataclass(frozen=True)
class _Scanned:
    frames: tuple[SampledFrame, ...]
    jobs: tuple[FaceJob, ...]
    where: tuple[int, ...]
    thumb: bytes | None


def _scan_frames(item: Item, frames, info, assistant: Assistant, settings: EngineSettings) -> _Scanned:
    """The face jobs of each sampled frame, and the thumbnail (the first frame with a face)."""
    jobs: list[FaceJob] = []
    where: list[int] = []
    sampled: list[SampledFrame] = []
    thumb, thumb_has_face = None, False
    for frame in frames:
        found = _frame_jobs(item, info, frame, assistant)
        sampled.append(SampledFrame(frame.index, frame.timestamp_s, len(found)))
        jobs += found
        where += [len(sampled) - 1] * len(found)
        if settings.thumbnails and (thumb is None or (found and not thumb_has_face)):
            thumb, thumb_has_face = thumbnail(frame.image, THUMB_SIDE), bool(found)
    return _Scanned(tuple(sampled), tuple(jobs), tuple(where), thumb)


def _prepared_video(item: Item, scanned: _Scanned, scan: VideoScan) -> Prepared:
    if not scanned.frames:
        raise _Failed(ItemError("video", _no_frame(item, scan.error), "InputError"))
    if not scanned.jobs:
        error = ItemError("faces", f"no face found in any of the {len(scanned.frames)} sampled frames", "InputError")
        return Prepared(item, video=scan, thumb=scanned.thumb, error=error)
    return Prepared(item, scanned.jobs, scanned.where, scan, scanned.thumb)


def _detect_video(item: Item, assistant: Assistant, decoded) -> tuple[dict[str, Any] | None, str | None]:
    """The classic detectors over the video (their own runs of consecutive frames and face
    tracks, from the shared decode); a failure here is recorded beside FFAA's result, not
    instead of it."""
    from ..detectors.video import detect_video
    from ..report import video_detection_to_dict

    try:
        return video_detection_to_dict(detect_video(assistant.detectors, item.path, decoded=decoded)), None
    except FfaaError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - as in _stage: one odd file must not stop the batch
        return None, f"{type(exc).__name__}: {exc}"


def _no_frame(item: Item, error: str | None) -> str:
    """Why a video gave no frame, without repeating the sampler's own "no frame could be decoded"."""
    detail = error or "empty video stream"
    if detail.startswith("no frame"):
        return f"{item.path}: {detail}"
    return f"{item.path}: no frame could be decoded ({detail})"


def _check_frame_size(item: Item, info, assistant: Assistant) -> None:
    """Apply the image pixel limit to video frames too: a huge frame size is a bomb as well."""
    from ..media import LoadLimits

    limit = (assistant.options.limits or LoadLimits()).max_pixels
    if info.width * info.height > limit:
        raise InputError(f"{item.path}: video frames are {info.width}x{info.height}, over the limit of "
                         f"{limit / 1e6:.1f} Mpx; raise it with --max-pixels")


def _frame_jobs(item: Item, info, frame, assistant: Assistant) -> list[FaceJob]:
    """The face jobs of one frame; a frame without a face simply has none."""
    from ..media import LoadedImage

    note = f"video frame {frame.index} at {frame.timestamp_s:.3f} s"
    image_info = ImageInfo(item.path, item.sha256 or "", frame.image.width, frame.image.height,
                           "RGB", info.container, (note,))
    try:
        jobs = assistant.face_jobs(LoadedImage(frame.image, image_info))
    except InputError:
        return []
    # The classic detectors score the video as a whole (clips of consecutive frames), not frame by frame.
    return [replace(job, source=None) for job in jobs]


def _video_info(info) -> dict[str, Any]:
    keep = ("duration_s", "fps", "frame_count", "width", "height", "codec", "container", "rotation", "backend")
    return {k: v for k, v in asdict(info).items() if k in keep}


def thumbnail(image: Image.Image, side: int) -> bytes:
    """A small JPEG of the image for the HTML report."""
    small = image.convert("RGB")
    small.thumbnail((side, side))
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


# -- analysing -------------------------------------------------------------------------------


def analyze_group(assistant: Assistant, group: Sequence[Prepared], settings: EngineSettings) -> list[Block]:
    """Blocks for several prepared items, their faces analysed in one batched call.

    When the call fails, each item is retried alone, so one bad item cannot sink the others;
    an item that fails alone gets an error record of stage "generate".
    """
    ready = [p for p in group if p.error is None]
    try:
        reports = _analyze(assistant, [job for p in ready for job in p.jobs], settings)
    except Exception as exc:  # noqa: BLE001 -- backends raise many kinds (CUDA, tokenizer, image processor)
        if len(ready) > 1:
            return [block for p in group for block in analyze_group(assistant, [p], settings)]
        failed = {id(p): ItemError("generate", f"{type(exc).__name__}: {exc}", type(exc).__name__) for p in ready}
        return [build_block(p, [], settings, failed.get(id(p))) for p in group]
    blocks, start = [], 0
    for p in group:
        mine = reports[start : start + len(p.jobs)] if p.error is None else []
        start += len(mine)
        blocks.append(build_block(p, mine, settings))
    return blocks


def _analyze(assistant: Assistant, jobs: list[FaceJob], settings: EngineSettings) -> list[ForensicReport]:
    if settings.mode == "triage":
        return triage_reports(assistant, jobs, settings.triage_threshold)
    return assistant.analyze_jobs(jobs)


# -- records ---------------------------------------------------------------------------------


def build_block(
    p: Prepared, reports: Sequence[ForensicReport], settings: EngineSettings, error: ItemError | None = None
) -> Block:
    """The records of one item: faces (or an error), a video aggregate, then the item record."""
    error = error or p.error
    fields = item_fields(p.item, settings.mode)
    thumbs: list[tuple[str, bytes]] = []
    item_thumb = _thumb_name(p.item) if p.thumb and p.item.sha256 else None
    if item_thumb:
        thumbs.append((item_thumb, p.thumb))
    records = [] if error else _face_records(p, reports, fields, settings, thumbs)
    outcomes = [FaceOutcome(r.decision.forgery_score, r.decision.verdict.value if r.decision.verdict else None)
                for r in reports]
    if p.video is not None:
        points = _timeline(p, outcomes)
        agg = aggregate(points, settings.video.rule, settings.video.threshold)
        records.append(video_record(fields, agg.as_dict(), [asdict(pt) for pt in points], _decode(p.video),
                                    p.detection, p.detection_error))
        overall = FaceOutcome(agg.score, agg.verdict)
    else:
        overall = combine(outcomes)
    if error:
        records.append(error_record(fields, error.stage, error.reason, error.error_type))
    summary = replace(_summary(p, outcomes, overall, error), **_detector_summary(p, reports))
    records.append(item_record(fields, summary, p.seconds, item_thumb))
    return Block(tuple(records), tuple(thumbs))


def _face_records(p: Prepared, reports, fields, settings: EngineSettings, thumbs: list) -> list[dict]:
    records = []
    for n, (job, report) in enumerate(zip(p.jobs, reports)):
        frame = p.video.frames[p.frame_of_job[n]] if p.video is not None else None
        crop = None
        if settings.thumbnails and p.item.sha256:
            crop = _thumb_name(p.item, n)
            thumbs.append((crop, thumbnail(job.image, CROP_SIDE)))
        records.append(face_record(
            report, fields,
            frame_index=frame.index if frame else None,
            timestamp=frame.timestamp if frame else None,
            crop=crop,
        ))
    return records


def _timeline(p: Prepared, outcomes: Sequence[FaceOutcome]) -> list[FramePoint]:
    per_frame: list[list[FaceOutcome]] = [[] for _ in p.video.frames]
    for pos, outcome in zip(p.frame_of_job, outcomes):
        per_frame[pos].append(outcome)
    points = []
    for frame, faces in zip(p.video.frames, per_frame):
        c = combine(faces)
        points.append(FramePoint(frame.index, frame.timestamp, frame.faces, c.score, c.verdict))
    return points


def _decode(scan: VideoScan) -> dict[str, Any]:
    return {**scan.info, "frames_sampled": len(scan.frames), "partial": scan.partial, "error": scan.error}


def _summary(p: Prepared, outcomes, overall: FaceOutcome, error: ItemError | None) -> ItemSummary:
    if error:
        return ItemSummary("error", reason=error.reason, stage=error.stage)
    undecided = sum(o.verdict is None for o in outcomes)
    partial = p.video is not None and p.video.partial
    if undecided == len(outcomes):
        status, reason = "undecided", "no candidate answer could be parsed"
    else:
        status = "partial" if partial else "ok"
        reason = f"video partly decoded: {p.video.error}" if partial else None
    if undecided and status != "undecided":
        reason = "; ".join(filter(None, [reason, f"{undecided} of {len(outcomes)} faces undecided"]))
    return ItemSummary(status, len(outcomes), undecided, overall.verdict, _round(overall.score),
                       flagged=overall.verdict == "fake", reason=reason)


def _detector_summary(p: Prepared, reports: Sequence[ForensicReport]) -> dict[str, Any]:
    """The classic detectors' verdict for the item: the video's, or the image's deciding face's
    (the first face they call fake, else the largest)."""
    if p.detection is not None:
        panel = p.detection.get("panel")
        e = panel["ensemble"] if panel else None
    else:
        panels = [r.detectors for r in reports if r.detectors is not None]
        if not panels:
            return {}
        from ..detectors.items import deciding_face
        from ..report import to_plain

        faces = [(r.face, r.detectors) for r in reports if r.detectors is not None]
        e = to_plain(panels[deciding_face(faces)].ensemble)
    if e is None:
        return {"detectors_verdict": None, "detectors_votes": "no face tracked"}
    return {"detectors_verdict": e["verdict"], "detectors_votes": f"{e['fake_votes']}/{e['votes_cast']} fake"}


def _thumb_name(item: Item, face: int | None = None) -> str:
    stem = item.sha256[:20]
    return f"{stem}.jpg" if face is None else f"{stem}-{face}.jpg"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
