"""The originals' test-time preprocessing of a face crop, bit for bit.

DeepfakeBench, DF40 and StA4Deepfake all do, per frame: RGB uint8 -> `cv2.resize((R, R),
interpolation=cv2.INTER_CUBIC)` -> `ToTensor` (HWC -> CHW float32, / 255) -> `Normalize(mean,
std)`. Pillow's bicubic gives other pixels (up to 15/255 at 256 -> 224), so the resize is
OpenCV's. Clip models stack T consecutive frames as [T, 3, R, R].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..lazy import require


def resize_face(rgb: np.ndarray, resolution: int) -> np.ndarray:
    """An RGB uint8 HxWx3 face crop resized to resolution x resolution with OpenCV's bicubic."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 HxWx3 array, got {rgb.dtype} {rgb.shape}")
    if rgb.shape[:2] == (resolution, resolution):
        return rgb
    cv2 = require("cv2", "faces", "detector preprocessing")
    return cv2.resize(rgb, (resolution, resolution), interpolation=cv2.INTER_CUBIC)


def normalise(pixels: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W], / 255, then (x - mean) / std, as
    torchvision's ToTensor + Normalize compute it (so the values match to the last bit)."""
    x = pixels.movedim(-1, -3).to(torch.float32).div(255)
    shape = (3, 1, 1)
    m = torch.as_tensor(mean, dtype=torch.float32).view(shape)
    s = torch.as_tensor(std, dtype=torch.float32).view(shape)
    return x.sub(m).div(s)


def frame_batch(faces: Sequence[np.ndarray], resolution: int, mean, std) -> Tensor:
    """Face crops -> [N, 3, R, R]."""
    resized = np.stack([resize_face(f, resolution) for f in faces])
    return normalise(torch.from_numpy(resized), mean, std)


def clip_batch(clips: Sequence[Sequence[np.ndarray]], resolution: int, mean, std) -> Tensor:
    """Clips of T face crops each -> [N, T, 3, R, R]."""
    lengths = {len(c) for c in clips}
    if len(lengths) != 1:
        raise ValueError(f"clips of different lengths in one batch: {sorted(lengths)}")
    resized = np.stack([np.stack([resize_face(f, resolution) for f in clip]) for clip in clips])
    return normalise(torch.from_numpy(resized), mean, std)
