"""Seconds per video for the classic detectors: the originals' flow against ffaa's, in one run.

The originals' flow, as their code runs a video (each detector on its own):
  read the video with OpenCV from the start, frame by frame; on each frame it uses, detect the
  faces with dlib (upsampling once), take the largest, find its landmarks, warp the aligned crop,
  and detect and landmark the face again on the crop (their preprocessing does); then score one
  frame or clip at a time, in fp32, under `torch.no_grad`.
  Which frames: DeepfakeBench's preprocessing keeps 32 frames spread over the video
  (`np.linspace`), which the frame models score and which DF40's I3D cuts into 2 clips of 16;
  StA4Deepfake's demo aligns every frame and scores `n // 8` clips of 8.
ffaa's flow: one decode of only the planned frames, faces detected once on a few frames per run
  and shared by every detector, tracked and interpolated in between, crops reused, each
  detector batched under `torch.inference_mode`.

Two comparisons come out: against each original's own sampling (what a user of the originals
waits for), and against the originals' flow on exactly ffaa's frames and clips (the flow alone,
same number of units scored). Weights are random with the released shapes: compute time does
not depend on their values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..lazy import require
from .registry import get_spec

log = logging.getLogger(__name__)

NATIVE_FRAMES = 32  # DeepfakeBench's preprocessing: frames kept per video


@dataclass(frozen=True)
class FlowTime:
    flow: str  # "originals" (own sampling) | "originals_same_units" | "ffaa"
    detector: str
    seconds: float
    units: int
    unit_kind: str


def make_video(path: Path, seconds: float = 10.0, width: int = 1280, height: int = 720, fps: int = 25) -> Path:
    """A test video: a public-domain face (scikit-image's astronaut) drifting over a textured
    background, H.264."""
    import av
    from PIL import Image
    from skimage import data

    side = height // 2
    face = np.asarray(Image.fromarray(data.astronaut()[10:250, 120:360]).resize((side, side)))
    rng = np.random.default_rng(0)
    background = rng.integers(60, 140, (height, width, 3), dtype=np.uint8)
    frames = int(seconds * fps)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            canvas = background.copy()
            x = int((width - side) * (0.3 + 0.4 * i / max(1, frames - 1)))
            y = (height - side) // 3
            canvas[y : y + side, x : x + side] = face
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def native_units(name: str, frame_count: int) -> list[list[int]]:
    """The frame indices of each unit an original scores on a video of `frame_count` frames."""
    spec = get_spec(name)
    if spec.name == "sta":  # the demo: every frame, non-overlapping clips of 8
        return [list(range(s, s + 8)) for s in range(0, frame_count - 7, 8)]
    picked = np.linspace(0, frame_count - 1, NATIVE_FRAMES, dtype=int).tolist()
    if spec.input_kind == "frame":
        return [[i] for i in picked]
    n = spec.clip_len
    return [picked[s : s + n] for s in range(0, len(picked) - n + 1, n)]


class _OriginalCropper:
    """The originals' per-frame face work: dlib detection (upsample 1) of the largest face,
    landmarks, the aligned crop, then detection and landmarks again on the crop."""

    def __init__(self):
        from .. import align

        self.dlib = require("dlib", "faces", "face detection")
        self.detector = self.dlib.get_frontal_face_detector()
        self.align = align

    def crop(self, rgb: np.ndarray, size: int) -> np.ndarray | None:
        from ..types import FaceBox

        faces = self.detector(rgb, 1)
        if not faces:
            return None
        face = max(faces, key=lambda r: r.width() * r.height())
        box = FaceBox(face.left(), face.top(), face.right() + 1, face.bottom() + 1)
        crop = self.align.aligned_crop(rgb, self.align.landmarks(rgb, box), size)
        again = self.detector(crop, 1)  # the originals landmark the aligned face as well
        if again:
            r = again[0]
            self.align.landmarks(crop, FaceBox(r.left(), r.top(), r.right() + 1, r.bottom() + 1))
        return crop


def original_flow(det, video: Path, units: Sequence[Sequence[int]]) -> FlowTime:
    """One detector as its original runs a video (see the module docstring)."""
    import torch

    from .runner import align_size

    cv2 = require("cv2", "faces", "video reading")
    started = time.perf_counter()
    needed = {i for unit in units for i in unit}
    cropper, crops = _OriginalCropper(), {}
    capture = cv2.VideoCapture(str(video))
    index = 0
    while needed and index <= max(needed):
        ok, bgr = capture.read()
        if not ok:
            break
        if index in needed:
            crops[index] = cropper.crop(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), align_size(det.name))
        index += 1
    capture.release()
    scored = 0
    with torch.no_grad():
        for unit in units:
            faces = [crops.get(i) for i in unit]
            if any(f is None for f in faces):
                continue
            item = faces if det.spec.input_kind == "clip" else faces[0]
            batch = det.preprocess([item])
            det.fake_probability(det.net(batch.to(det.device)).float().cpu())
            scored += 1
    return FlowTime("originals", det.name, time.perf_counter() - started, scored, det.spec.input_kind)


def ffaa_units(dset, video: Path) -> dict[str, list[list[int]]]:
    """The frame indices of the units ffaa scores on `video`, per detector (for the
    same-units comparison)."""
    from ..video import probe_video
    from .video import detection_positions, plan_for, segment_times

    info = probe_video(video)
    plan = plan_for(dset)
    fps = info.fps or 25.0
    runs = [[round(t * fps) for t in run] for run in segment_times(info.duration_s, info.fps, plan)]
    out = {}
    for det in dset.detectors:
        if det.spec.input_kind == "frame":
            out[det.name] = [[run[p]] for run in runs
                             for p in detection_positions(0, len(run) - 1, plan.frames_per_segment)]
        else:
            n = det.spec.clip_len
            out[det.name] = [run[s : s + n] for run in runs for s in range(0, len(run) - n + 1, n)]
    return out


def ffaa_flow(dset, video: Path) -> list[FlowTime]:
    """All detectors through ffaa's video flow; the total and each detector's network time."""
    from .video import detect_video

    before = {d.name: d.seconds for d in dset.detectors}
    started = time.perf_counter()
    result = detect_video(dset, str(video))
    total = time.perf_counter() - started
    rows = []
    for det in dset.detectors:
        units = sum(next(m.units for m in t.panel.members if m.detector == det.name) for t in result.tracks)
        rows.append(FlowTime("ffaa", det.name, det.seconds - before[det.name], units, det.spec.input_kind))
    rows.append(FlowTime("ffaa", "total", total, 0, ""))
    return rows


def run_bench(dset, video: Path,
              flows: Sequence[str] = ("originals", "originals_same_units", "ffaa")) -> list[FlowTime]:
    """Every requested flow on `video`, one after another in this process."""
    from ..video import probe_video

    info = probe_video(video)
    count = info.frame_count or int((info.duration_s or 0) * (info.fps or 25))
    rows: list[FlowTime] = []
    if "ffaa" in flows:
        rows += ffaa_flow(dset, video)
    same = ffaa_units(dset, video) if "originals_same_units" in flows else {}
    for det in dset.detectors:
        if "originals" in flows:
            rows.append(original_flow(det, video, native_units(det.name, count)))
        if det.name in same:
            t = original_flow(det, video, same[det.name])
            rows.append(FlowTime("originals_same_units", t.detector, t.seconds, t.units, t.unit_kind))
    return rows


def table(rows: Sequence[FlowTime], titles: dict[str, str]) -> str:
    """Seconds per video per detector and flow, the ensemble's totals and the speed-ups."""
    flows = [f for f in ("originals", "originals_same_units", "ffaa") if any(r.flow == f for r in rows)]
    names = {"originals": "originals, own sampling", "originals_same_units": "originals, ffaa's units",
             "ffaa": "ffaa (network s)"}
    lines = ["| detector | " + " | ".join(names[f] for f in flows) + " |", "|---" * (len(flows) + 1) + "|"]
    get = {(r.flow, r.detector): r for r in rows}
    for name, title in titles.items():
        cells = []
        for f in flows:
            r = get.get((f, name))
            cells.append(f"{r.seconds:.1f} s ({r.units} {r.unit_kind}s)" if r else "—")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    totals = {f: sum(r.seconds for r in rows if r.flow == f and r.detector in titles) for f in flows}
    if "ffaa" in totals and ("ffaa", "total") in get:
        totals["ffaa"] = get[("ffaa", "total")].seconds
    lines.append("| **whole ensemble** | " + " | ".join(f"**{totals[f]:.1f} s**" for f in flows) + " |")
    if "ffaa" in totals and totals["ffaa"] > 0:
        for f in flows:
            if f != "ffaa":
                lines.append(f"\nffaa is {totals[f] / totals['ffaa']:.2f}x faster than the {names[f]}.")
    return "\n".join(lines)
