"""The classic detectors over a video: decode once, detect faces once, track them, and give
every detector its own units — single frames to frame detectors, runs of consecutive frames to
clip detectors — of the same faces.

Sampling (deterministic): `segments` runs of `segment_len` consecutive frames (the longest clip
among the loaded detectors: 16 for I3D, 8 for StA), spread evenly over the video. Faces are
detected on `frames_per_segment` frames of each run (its first and last among them), linked
into tracks, and interpolated on the frames in between. Frame detectors score the detection
frames; clip detectors score non-overlapping clips of each run. Per track, each detector's
P(fake) is the mean over its units, as the originals average frame or clip probabilities.

Where the originals differ: DeepfakeBench's and DF40's test loaders take the *first* N frames
of each video (they mean to space them evenly but compute a step of 1), and DF40 picks clip
starts at random even at test time; StA4Deepfake's demo aligns every frame and cuts
`n // 8` clips with random starts. ffaa spreads its frames over the whole video and picks
nothing at random, so a video always gets the same scores.

A video shorter than one clip is scored on what there is: the run is padded by repeating its
last frame, and the report says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..types import FaceBox, FaceTrack, MemberScore, VideoDetection
from .runner import DetectorSet, FaceCrops, face_crops
from .tracking import Track, link

log = logging.getLogger(__name__)

ASSUMED_FPS = 25.0  # when the container does not say


@dataclass(frozen=True)
class VideoPlan:
    segments: int = 4
    segment_len: int = 16
    frames_per_segment: int = 4

    def __post_init__(self) -> None:
        if self.segments < 1 or self.segment_len < 1 or self.frames_per_segment < 1:
            raise ValueError("segments, segment_len and frames_per_segment must be at least 1")


def plan_for(dset: DetectorSet) -> VideoPlan:
    """The plan a detector set needs: runs as long as its longest clip; a set of frame
    detectors only gets single frames, spread as widely."""
    cfg = dset.config
    if dset.max_clip_len == 0:
        return VideoPlan(cfg.segments * cfg.frames_per_segment, 1, 1)
    return VideoPlan(cfg.segments, dset.max_clip_len, min(cfg.frames_per_segment, dset.max_clip_len))


def segment_times(duration: float | None, fps: float | None, plan: VideoPlan) -> list[list[float]]:
    """Target times (s) of each run's frames: runs centred on equal slices of the video,
    moved inside it, fewer runs when the video is too short for all of them to be disjoint."""
    fps = fps or ASSUMED_FPS
    length = plan.segment_len / fps
    if duration is None or duration <= length:
        return [[i / fps for i in range(plan.segment_len)]]
    count = max(1, min(plan.segments, int(duration // length)))
    runs = []
    for k in range(count):
        centre = (k + 0.5) * duration / count
        start = min(max(0.0, centre - length / 2), duration - length)
        runs.append([start + i / fps for i in range(plan.segment_len)])
    return runs


@dataclass(frozen=True)
class Decoded:
    """The frames of one decode: the detectors' runs of consecutive frames and, when asked
    for, the frames nearest to other target times (FFAA's sampled frames in `ffaa batch`)."""

    frames: list  # VideoFrame, in time order
    runs: list[tuple[int, int]]  # (first, last) position of each run in `frames`
    notes: list[str]
    extra: list[int] = field(default_factory=list)  # positions of the frames nearest to `extra_times`
    partial: bool = False
    error: str | None = None
    damaged_skipped: int = 0
    info: object = None  # the VideoInfo


def decode(path: str, plan: VideoPlan, extra_times: Sequence[float] = ()) -> Decoded:
    """The planned frames (and those nearest to `extra_times`), decoded in one pass."""
    from ..video import VideoSampling, probe_video, sample_video

    info = probe_video(path)
    runs_t = segment_times(info.duration_s, info.fps, plan)
    flat = sorted({*(t for run in runs_t for t in run), *extra_times})
    sample = sample_video(path, VideoSampling(times=tuple(flat), max_frames=len(flat)))
    frames = list(sample.frames)
    half = 0.5 / (info.fps or ASSUMED_FPS)
    runs = []
    for run in runs_t:  # consecutive frames, so a frame inside a run's span belongs to it
        positions = [i for i, f in enumerate(frames) if run[0] - half <= f.timestamp_s <= run[-1] + half]
        if positions:
            runs.append((positions[0], positions[-1]))
    extra = _nearest(frames, extra_times) if frames else []
    notes = []
    if sample.partial:
        notes.append(f"partial video: {sample.error}")
    short = [hi - lo + 1 for lo, hi in runs if hi - lo + 1 < plan.segment_len]
    if short:
        notes.append(f"only {min(short)} consecutive frames where {plan.segment_len} were planned")
    return Decoded(frames, runs, notes, extra, sample.partial, sample.error, sample.damaged_skipped, info)


def _nearest(frames: Sequence, times: Sequence[float]) -> list[int]:
    """Positions of the frames nearest to each time, each frame once, in time order."""
    stamps = np.array([f.timestamp_s for f in frames])
    return sorted({int(np.argmin(np.abs(stamps - t))) for t in times})


def detection_positions(lo: int, hi: int, count: int) -> list[int]:
    """`count` positions spread over [lo, hi], both ends included."""
    return sorted({int(round(x)) for x in np.linspace(lo, hi, min(count, hi - lo + 1))})


def detect_video(dset: DetectorSet, path: str, plan: VideoPlan | None = None,
                 detect: Callable | None = None, decoded: Decoded | None = None) -> VideoDetection:
    """Every face track of the video at `path`, scored by every detector of `dset` (on the
    frames of `decoded` when the caller already decoded them with `decode`)."""
    from ..faces import detect_faces

    plan = plan or plan_for(dset)
    detect = detect or detect_faces
    decoded = decoded or decode(path, plan)
    observations = []
    for k, (lo, hi) in enumerate(decoded.runs):
        for j, pos in enumerate(detection_positions(lo, hi, plan.frames_per_segment)):
            observations.append((pos, detect(decoded.frames[pos].image), j == 0 and k > 0))
    tracks = link(observations)
    notes = list(decoded.notes)
    if not tracks:
        notes.append(f"no face found in {len(observations)} sampled frames")
        return VideoDetection((), None, None, len(decoded.frames), _segments(decoded), tuple(notes))
    results = tuple(_score_track(dset, decoded, track, plan) for track in tracks)
    deciding = _deciding(results)
    panel = next(r.panel for r in results if r.track_id == deciding)
    if len(results) > 1:
        notes.append(f"{len(results)} faces tracked; the video's verdict is person {deciding}'s")
    return VideoDetection(results, panel, deciding, len(decoded.frames), _segments(decoded), tuple(notes))


def _segments(decoded: Decoded) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(decoded.frames[p].index for p in range(lo, hi + 1)) for lo, hi in decoded.runs)


def _deciding(results: Sequence[FaceTrack]) -> int:
    """The first track the ensemble calls fake, else the one seen on the most frames."""
    for r in results:
        if r.panel.ensemble.verdict is not None and r.panel.ensemble.verdict.value == "fake":
            return r.track_id
    return max(results, key=lambda r: (len(r.frames), -r.track_id)).track_id


def _score_track(dset: DetectorSet, decoded: Decoded, track: Track, plan: VideoPlan) -> FaceTrack:
    detected = sorted(track.boxes)
    crops_at: dict[int, FaceCrops] = {}

    def crops(pos: int, box: FaceBox):
        if pos not in crops_at:
            crops_at[pos] = face_crops(decoded.frames[pos].image, box, dset.sizes)
        return crops_at[pos]

    members: list[MemberScore] = []
    notes: set[str] = set()
    for det in dset.detectors:
        if det.spec.input_kind == "frame":
            units = [crops(p, track.boxes[p]).for_detector(det.name) for p in detected]
            members.append(dset.member(det, units))
            continue
        clips, note = _clips(decoded, track, det.spec.clip_len,
                             lambda p, b, name=det.name: crops(p, b).for_detector(name))
        if note:
            notes.add(note)
        members.append(dset.member(det, clips, note))
    kinds = {c.kind for c in crops_at.values()}
    panel = dset.panel(members, "/".join(sorted(kinds)) or "aligned", notes=sorted(notes))
    frames = decoded.frames
    return FaceTrack(track.track_id, tuple(frames[p].index for p in detected),
                     tuple(frames[p].timestamp_s for p in detected),
                     tuple(track.boxes[p] for p in detected), panel)


def _clips(decoded: Decoded, track: Track, clip_len: int, crop) -> tuple[list[list[np.ndarray]], str]:
    """Non-overlapping clips of `clip_len` consecutive crops of the track, from every run the
    track appears in; a run shorter than one clip is padded with its last frame."""
    clips, note = [], ""
    for lo, hi in decoded.runs:
        faces = []
        for pos in range(lo, hi + 1):
            box = track.box_at(pos, lo, hi)
            if box is not None:
                faces.append(crop(pos, box))
        if not faces:
            continue
        if len(faces) < clip_len:
            note = f"shorter than one clip: {len(faces)} frames padded to {clip_len} by repeating the last"
            faces += [faces[-1]] * (clip_len - len(faces))
        clips += [faces[i : i + clip_len] for i in range(0, len(faces) - clip_len + 1, clip_len)]
    return clips, note

