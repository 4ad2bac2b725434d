"""One file through the classic detectors: an image (every face) or a video (every face track),
and its record in `ffaa detect`'s JSONL (schema `ffaa.detect/1`).

An item's verdict is its deciding face's: the first face (or track) the ensemble calls fake,
else the largest face (the longest track) — one forged face makes the file fake.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InputError
from ..types import DetectorPanel, FaceBox, Verdict, VideoDetection
from .runner import DetectorSet

SCHEMA = "ffaa.detect/1"


@dataclass(frozen=True)
class ItemDetection:
    path: str
    kind: Literal["image", "video"]
    panel: DetectorPanel | None
    faces: tuple[tuple[FaceBox | None, DetectorPanel], ...] = ()
    video: VideoDetection | None = None
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def verdict(self) -> Verdict | None:
        return self.panel.ensemble.verdict if self.panel else None


def deciding_face(faces: Sequence[tuple[FaceBox | None, DetectorPanel]]) -> int:
    for i, (_, panel) in enumerate(faces):
        if panel.ensemble.verdict is Verdict.FAKE:
            return i
    return max(range(len(faces)), key=lambda i: _area(faces[i][0]))


def _area(box: FaceBox | None) -> int:
    return box.width * box.height if box is not None else 0


def detect_image(dset: DetectorSet, path: str, face_mode: str = "faces", limits=None) -> ItemDetection:
    """Every face of the image at `path` ("faces": an image without one is an InputError;
    "auto": the whole image then; "whole": the whole image only)."""
    from ..faces import detect_faces
    from ..media import LoadLimits, load_image

    started = time.perf_counter()
    loaded = load_image(path, limits or LoadLimits())
    notes = list(loaded.info.notes)
    boxes: list[FaceBox | None] = [] if face_mode == "whole" else list(detect_faces(loaded.image))
    if not boxes:
        if face_mode == "faces":
            raise InputError(f"{path}: no face found; use --fallback-whole to score the whole image when no "
                             "face is found, or --whole-image to always score the whole image")
        if face_mode == "auto":
            notes.append("no face found: the whole image was scored")
        boxes = [None]
    panels = dset.score_image(loaded.image, boxes)
    faces = tuple(zip(boxes, panels))
    chosen = deciding_face(faces)
    if len(faces) > 1:
        notes.append(f"{len(faces)} faces; the image's verdict is face {chosen}'s")
    return ItemDetection(path, "image", faces[chosen][1], faces, None, time.perf_counter() - started, tuple(notes))


def detect_video_item(dset: DetectorSet, path: str) -> ItemDetection:
    from .video import detect_video

    started = time.perf_counter()
    video = detect_video(dset, path)
    return ItemDetection(path, "video", video.panel, (), video, time.perf_counter() - started, video.notes)


def detect_path(dset: DetectorSet, path: str, face_mode: str = "faces", limits=None) -> ItemDetection:
    """An image or a video, told apart by content."""
    from ..media import sniff_kind

    kind = sniff_kind(path)
    if kind == "video":
        return detect_video_item(dset, path)
    return detect_image(dset, path, face_mode, limits)


def item_record(item: ItemDetection, item_id: str, label: str | None, sha256: str | None,
                paths: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON record of one analysed file."""
    from ..report import to_plain, video_detection_to_dict

    return {
        "schema": SCHEMA, "id": item_id, "path": item.path, "paths": list(paths or [item.path]),
        "sha256": sha256, "label": label, "kind": item.kind,
        "verdict": item.verdict.value if item.verdict else None,
        "panel": to_plain(item.panel),
        "faces": [{"face_index": i if box is not None else None, "box": to_plain(box), "panel": to_plain(panel)}
                  for i, (box, panel) in enumerate(item.faces)],
        "video": video_detection_to_dict(item.video) if item.video else None,
        "seconds": round(item.seconds, 4), "notes": list(item.notes), "error": None,
    }


def error_record(item_id: str, path: str, label: str | None, sha256: str | None, error: str) -> dict[str, Any]:
    return {"schema": SCHEMA, "id": item_id, "path": path, "paths": [path], "sha256": sha256, "label": label,
            "kind": None, "verdict": None, "panel": None, "faces": [], "video": None, "seconds": 0.0,
            "notes": [], "error": error}


def is_detect_record(record: dict[str, Any]) -> bool:
    return record.get("schema") == SCHEMA
