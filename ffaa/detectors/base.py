"""A loaded classic detector: its spec, its network in eval mode, and `predict` -> P(fake).

Every architecture module (`xception.py`, `clip_large.py`, ...) only builds a `torch.nn.Module`
whose `state_dict()` keys are the original detector's and whose `forward(x)` returns the
original's logits: [B, 2] (real, fake) for softmax detectors, [B, 1] for I3D's sigmoid head.
`x` is [B, 3, R, R] for frame detectors and [B, T, 3, R, R] for clip detectors. This class adds
what all of them share: loading, preprocessing, batching, the output head and the device.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import file_variant, load_into_network, prepare_state, read_detector_state
from .preprocess import clip_batch, frame_batch
from .registry import DetectorSpec, get_spec

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Detector:
    """One detector, ready to score face crops (frame detectors) or clips (clip detectors)."""

    def __init__(self, spec: DetectorSpec, net: nn.Module, *, weights: str, device: str = "auto",
                 dtype: str = "fp32", variant: str = "full"):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.spec = spec
        self.device = pick_device(device)
        self.dtype = dtype
        self.variant = variant
        self.weights = weights
        self.net = net.to(self.device, DTYPES[dtype]).eval().requires_grad_(False)
        self.seconds = 0.0  # network time spent so far (for per-detector timings)

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_state(cls, name: str, state: Mapping[str, Tensor], *, variant: str = "full",
                   weights: str = "state dict", device: str = "auto", dtype: str = "fp32") -> Detector:
        """A detector from an in-memory state dict in any of the released layouts."""
        spec = get_spec(name)
        state = prepare_state(state, name, variant=variant, source=weights)
        net = load_into_network(spec, state, variant)
        return cls(spec, net, weights=weights, device=device, dtype=dtype, variant=variant)

    @classmethod
    def load(cls, name: str, weights: str | Path, *, variant: str | None = None, device: str = "auto",
             dtype: str = "fp32") -> Detector:
        """A detector from a released checkpoint (`.pth`, read with `weights_only=True`) or
        our converted `.safetensors` (whose metadata names its variant; default full size);
        CheckpointError / WeightsNotFoundError in one line."""
        started = time.perf_counter()
        variant = variant or (file_variant(weights) if Path(weights).expanduser().is_file() else "full")
        state = read_detector_state(weights, name, variant)
        detector = cls.from_state(name, state, variant=variant, weights=str(weights), device=device, dtype=dtype)
        log.info("loaded %s from %s in %.1f s", name, weights, time.perf_counter() - started)
        return detector

    # -- inference --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    def preprocess(self, items: Sequence) -> Tensor:
        """Face crops (RGB uint8 HxWx3 arrays) -> the network's input batch; for clip
        detectors each item is a sequence of `clip_len` crops."""
        s = self.spec
        if s.input_kind == "clip":
            for clip in items:
                if len(clip) != s.clip_len:
                    raise ValueError(f"{s.name} takes clips of {s.clip_len} frames, got {len(clip)}")
            return clip_batch(items, s.resolution, s.mean, s.std)
        return frame_batch(items, s.resolution, s.mean, s.std)

    def logits(self, batch: Tensor) -> Tensor:
        """The network's raw output for a preprocessed batch, as float32 on the CPU."""
        started = time.perf_counter()
        with torch.inference_mode():
            out = self.net(batch.to(self.device, DTYPES[self.dtype]))
        out = out.float().cpu()
        self.seconds += time.perf_counter() - started
        return out

    def fake_probability(self, logits: Tensor) -> Tensor:
        """P(fake) per row, as the original computes it: softmax[:, 1] or sigmoid."""
        if self.spec.output == "sigmoid":
            return torch.sigmoid(logits).reshape(len(logits), -1)[:, 0]
        return torch.softmax(logits, dim=1)[:, 1]

    def predict(self, items: Sequence, batch_size: int = 8) -> np.ndarray:
        """P(fake) for each face crop (or clip), float64, in batches of `batch_size`."""
        out = []
        for start in range(0, len(items), max(1, batch_size)):
            batch = self.preprocess(items[start : start + batch_size])
            out.append(self.fake_probability(self.logits(batch)))
        if not out:
            return np.zeros(0, dtype=np.float64)
        return torch.cat(out).double().numpy()
