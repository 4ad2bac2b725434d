"""Face detection and FFAA's face crop.

FFAA detects faces with dlib's HOG frontal detector (built into dlib, no weight file), pads the
first face by min(40 px, distance to the image border) on each side and resizes the crop to
336x336 with `cv2.resize`'s default bilinear interpolation. This module does the same crop, for
every face rather than only the first, and resizes with the very same `cv2.resize` call so the
crops match what the model was trained on (Pillow's BILINEAR antialiases when shrinking and
gives different pixels).

Detection details:

- Large images are detected on a copy whose longest side is at most `max_side` (1600 px) and
  the boxes are scaled back: the detector's time grows with the pixel count, and a face small
  enough to be lost this way (< ~40 px at that scale) is too small to analyse anyway.
- `upsample=1` (FFAA's setting) lets dlib find faces down to 40 px by doubling the image. Each
  face is taken from the coarsest pass that can see it: faces of 80 px or more come from the
  pass without upsampling, smaller ones from the doubled image. Upsampling blurs the picture,
  and on it the detector also fires on face-like textures (badges, prints) that it rejects at
  native resolution.
- Faces are returned in reading order: left to right by their left edge, then top to bottom,
  so "face 1" is the leftmost face in a report. FFAA's "first face" is the highest-scoring
  one: `max(boxes, key=lambda b: b.score)`.
- The HOG detector finds frontal and near-frontal faces only; profiles are missed.
- dlib's detector is not safe to call from several threads at once: calls are serialised.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from PIL import Image

from .errors import InputError
from .lazy import require
from .types import FaceBox

FaceMode = Literal["faces", "whole", "auto"]

CROP_PAD = 40
CROP_SIZE = 336
DETECT_MAX_SIDE = 1600
HOG_WINDOW = 80  # the smallest face (px) dlib's frontal detector sees without upsampling

_detector = None
_detector_lock = threading.Lock()


@dataclass(frozen=True)
class FaceCrop:
    """One image to analyse: a face crop with its box, or the whole image (box None)."""

    image: Image.Image
    box: FaceBox | None
    note: str = ""


# -- detection -------------------------------------------------------------------------------


def detect_faces(
    image: Image.Image,
    *,
    upsample: int = 1,
    min_size: int = 40,
    min_score: float = 0.0,
    max_side: int = DETECT_MAX_SIDE,
) -> list[FaceBox]:
    """Frontal faces in `image`, as boxes in its own pixels, in reading order.

    upsample: how many times dlib may double the image to find small faces (0: faces of at
      least 80 px of the detection copy; 1: 40 px).
    min_size: drop faces narrower or shorter than this, in source pixels.
    min_score: dlib's detection threshold (its default is 0; higher keeps fewer, surer faces).
    max_side: detect on a copy downscaled to this longest side (boxes are scaled back).
    """
    if upsample < 0:
        raise ValueError("upsample must be 0 or more")
    scale = min(1.0, max_side / max(image.size))
    pixels = np.asarray(_detection_copy(image, scale))
    hits = _detect_coarse_to_fine(pixels, upsample, min_score)
    boxes = [_to_face_box(rect, score, scale, image.size) for rect, score in hits]
    boxes = [b for b in boxes if b.width >= min_size and b.height >= min_size]
    return sorted(boxes, key=lambda b: (b.left, b.top))


def _detection_copy(image: Image.Image, scale: float) -> Image.Image:
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if scale >= 1.0:
        return rgb
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return rgb.resize(size, Image.Resampling.BILINEAR)


def _detect_coarse_to_fine(pixels: np.ndarray, upsample: int, min_score: float) -> list[tuple[object, float]]:
    """Run dlib once per upsampling level; each level only adds faces too small for the last."""
    kept: list[tuple[object, float]] = []
    for level in range(upsample + 1):
        too_big = HOG_WINDOW / 2 ** (level - 1) if level else math.inf
        for rect, score in _run_detector(pixels, level, min_score):
            if rect.width() < too_big and not any(_overlaps(rect, other) for other, _ in kept):
                kept.append((rect, score))
    return _drop_weak_extras(kept)


# dlib's default threshold (0) keeps weak windows. The best face of an image is always kept (a
# blurred real face can score 0.13), but a further face must score at least this much: below
# it, on the test images, were only badges, printed faces and shifted duplicates of a real
# face (the astronaut's mission patch scores 0.01-0.13; real faces there score above 1).
EXTRA_FACE_MIN_SCORE = 0.25


def _drop_weak_extras(hits: list[tuple[object, float]]) -> list[tuple[object, float]]:
    if not hits:
        return hits
    best = max(score for _, score in hits)
    return [(rect, score) for rect, score in hits if score == best or score >= EXTRA_FACE_MIN_SCORE]


def _run_detector(pixels: np.ndarray, upsample: int, min_score: float) -> list[tuple[object, float]]:
    with _detector_lock:
        detector = _get_detector()
        rects, scores, _ = detector.run(pixels, upsample, min_score)
    return list(zip(rects, scores))


def _get_detector():
    """dlib's HOG frontal detector, built on first use (about 0.1 s) and kept."""
    global _detector
    if _detector is None:
        dlib = require("dlib", "faces", "face detection")
        _detector = dlib.get_frontal_face_detector()
    return _detector


def _overlaps(a, b) -> bool:
    """True when the intersection covers more than a third of the smaller rectangle."""
    inter = a.intersect(b)
    if inter.is_empty():
        return False
    return inter.area() > min(a.area(), b.area()) / 3


def _to_face_box(rect, score: float, scale: float, size: tuple[int, int]) -> FaceBox:
    """dlib's inclusive rectangle on the detection copy -> exclusive box in source pixels."""
    width, height = size
    left = max(0, math.floor(rect.left() / scale))
    top = max(0, math.floor(rect.top() / scale))
    right = min(width, math.ceil((rect.right() + 1) / scale))
    bottom = min(height, math.ceil((rect.bottom() + 1) / scale))
    return FaceBox(left, top, right, bottom, detector="dlib-hog", score=round(float(score), 4))


# -- cropping --------------------------------------------------------------------------------


def crop_box(box: FaceBox, size: tuple[int, int], pad: int = CROP_PAD) -> tuple[int, int, int, int]:
    """FFAA's crop rectangle: the box grown by `pad` px per side, stopped at the image border."""
    width, height = size
    left, top = max(0, box.left - pad), max(0, box.top - pad)
    right, bottom = min(width, box.right + pad), min(height, box.bottom + pad)
    if right <= left or bottom <= top:
        corners = (box.left, box.top, box.right, box.bottom)
        raise ValueError(f"face box {corners} lies outside a {width}x{height} image")
    return left, top, right, bottom


def crop_face(
    image: Image.Image, box: FaceBox, *, pad: int = CROP_PAD, size: int = CROP_SIZE
) -> tuple[Image.Image, FaceBox]:
    """FFAA's face crop, resized to size x size (not aspect-preserving, as FFAA does).

    Returns the crop and the box with `crop` set to the rectangle taken from the source.
    """
    rect = crop_box(box, image.size, pad)
    region = np.asarray(image.crop(rect).convert("RGB"))
    cv2 = require("cv2", "faces", "face cropping")
    resized = cv2.resize(region, (size, size), interpolation=cv2.INTER_LINEAR)
    return Image.fromarray(resized), replace(box, crop=rect)


def crop_faces(
    image: Image.Image,
    mode: FaceMode = "faces",
    *,
    name: str | None = None,
    pad: int = CROP_PAD,
    size: int = CROP_SIZE,
    upsample: int = 1,
    min_size: int = 40,
) -> list[FaceCrop]:
    """The images to analyse, per mode.

    "faces": every detected face; an image without one is an InputError.
    "whole": the whole image, unchanged, as a single item without a box.
    "auto": every face, or the whole image with a note when there is none.
    `name` (the file) prefixes the error message.
    """
    if mode not in ("faces", "whole", "auto"):
        raise ValueError(f"unknown face mode {mode!r}; expected 'faces', 'whole' or 'auto'")
    if mode == "whole":
        return [FaceCrop(image, None)]
    boxes = detect_faces(image, upsample=upsample, min_size=min_size)
    if boxes:
        return [FaceCrop(*crop_face(image, box, pad=pad, size=size)) for box in boxes]
    if mode == "auto":
        return [FaceCrop(image, None, "no face found: the whole image was analysed")]
    prefix = f"{name}: " if name else ""
    raise InputError(f"{prefix}no face found; use --fallback-whole to analyse the whole image when no face "
                     "is found, or --whole-image to always analyse the whole image")
