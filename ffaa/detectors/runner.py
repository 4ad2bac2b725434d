"""A set of loaded detectors, scoring faces: one crop per face shared by every detector.

Per face, the crop is made once per alignment size (DeepfakeBench's five-point alignment at
256 px, StA4Deepfake's at 224 px; a box crop when no landmark model is installed), and each
detector then resizes it to its own resolution and normalises it as its original does. Frame
detectors score single crops; clip detectors score runs of consecutive crops (videos). On a
still image a clip detector abstains unless `still_clips` asks for a clip of repeated frames.

A detector that fails on an item is marked failed for that item (its error in the report) and
the ensemble votes with the others, saying so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import FfaaError, one_line
from ..types import DetectorPanel, FaceBox, MemberScore, Verdict
from .config import DEMO, DetectorsConfig
from .registry import DetectorSpec, get_spec
from .vote import decide, vote

log = logging.getLogger(__name__)

ALIGN_SIZE = {"sta": 224}  # StA4Deepfake's demo aligns at 224 px; DeepfakeBench/DF40 at 256
DEFAULT_ALIGN = 256
BOX_SCALE = 1.6  # box-crop side / face-box side: about the face area of the aligned crop
DEMO_VARIANT = {"clip_large": "tiny", "sta": "reduced_2_layers"}
DEMO_BANNER = (
    "DEMO DETECTORS: networks of the real architectures with RANDOM weights. Their P(fake) is NOISE;\n"
    "pass --detectors NAME=PATH with the released checkpoints for real scores."
)


def align_size(name: str) -> int:
    return ALIGN_SIZE.get(name, DEFAULT_ALIGN)


@dataclass(frozen=True)
class FaceCrops:
    """One face's detector crops (RGB uint8), by alignment size, and how they were made."""

    by_size: dict[int, np.ndarray]
    kind: str  # "aligned" | "box" | "whole"

    def for_detector(self, name: str) -> np.ndarray:
        return self.by_size[align_size(name)]


def face_crops(image: Image.Image | np.ndarray, box: FaceBox | None, sizes: Sequence[int],
               use_landmarks: bool = True) -> FaceCrops:
    """Crops of one face at each size: aligned with landmarks when the shape predictor is
    installed, else a box crop; the whole image (resized) when there is no box."""
    from .. import align

    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if box is None:
        from .preprocess import resize_face

        return FaceCrops({s: resize_face(pixels, s) for s in sizes}, "whole")
    if use_landmarks and align.predictor_available():
        points = align.landmarks(pixels, box)
        return FaceCrops({s: align.aligned_crop(pixels, points, s) for s in sizes}, "aligned")
    return FaceCrops({s: align.box_crop(pixels, box, s, BOX_SCALE) for s in sizes}, "box")


def build_demo_network(spec: DetectorSpec, seed: int = 0, full: bool = False):
    """The spec's network with seeded random weights (small variants where they exist).

    PyTorch's default init makes deep networks give nearly the same output for every input
    (P(fake) = 0.50 everywhere, which looks broken rather than random), so weights are drawn
    with fan-in scaling and BatchNorm statistics are made non-trivial: outputs then vary with
    the input — and still mean nothing. Fixed tensors (SRM filters, DCT matrices) keep the
    values the network was built with."""
    import torch

    from .checkpoint import build_network

    variant = "full" if full else DEMO_VARIANT.get(spec.name, "full")
    torch.manual_seed(seed)
    net = build_network(spec, variant)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point() and not _is_fixed(net, name):
                tensor.copy_(_demo_values(name, tensor, generator))
    return net, variant


def _is_fixed(net, name: str) -> bool:
    """A parameter that is not trained (a fixed filter bank) keeps its constructed value."""
    param = dict(net.named_parameters()).get(name)
    return param is not None and not param.requires_grad


def _demo_values(name: str, tensor, generator):
    import torch

    leaf = name.rsplit(".", 1)[-1]
    n = torch.randn(tensor.shape, generator=generator)
    if leaf == "running_var":
        return 0.5 + torch.rand(tensor.shape, generator=generator)
    if leaf == "running_mean":
        return 0.1 * n
    if leaf.endswith("bias"):
        return 0.02 * n
    if tensor.ndim == 1 and leaf.endswith("weight"):
        return 1.0 + 0.1 * n
    if tensor.ndim >= 2:
        return n / max(1, tensor[0].numel()) ** 0.5
    return 0.02 * n


class DetectorSet:
    """Loaded detectors and the rule that combines them."""

    def __init__(self, detectors: Sequence, config: DetectorsConfig):
        self.detectors = list(detectors)
        self.config = config

    @classmethod
    def load(cls, config: DetectorsConfig, log_line: Callable[[str], None] | None = None) -> DetectorSet:
        """Every detector of `config`, loaded; the first that cannot be is one FfaaError."""
        from .base import Detector

        if config.demo and log_line:
            log_line(DEMO_BANNER)
        loaded = []
        for choice in config.choices:
            started = time.perf_counter()
            if choice.weights == DEMO:
                net, variant = build_demo_network(get_spec(choice.name))
                det = Detector(get_spec(choice.name), net, weights=DEMO, device=config.device,
                               dtype=config.dtype, variant=variant)
            else:
                det = Detector.load(choice.name, choice.weights, device=config.device, dtype=config.dtype)
            if log_line:
                log_line(f"detector {choice.name}: {det.weights} ({time.perf_counter() - started:.1f} s)")
            loaded.append(det)
        return cls(loaded, config)

    # -- facts ------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.detectors]

    @property
    def sizes(self) -> list[int]:
        return sorted({align_size(d.name) for d in self.detectors})

    @property
    def max_clip_len(self) -> int:
        return max((d.spec.clip_len for d in self.detectors if d.spec.input_kind == "clip"), default=0)

    @property
    def demo(self) -> bool:
        return any(d.weights == DEMO for d in self.detectors)

    def batch_for(self, det) -> int:
        """Units per forward pass: `batch_size` counts frames, so a clip detector takes
        batch_size // clip_len clips (at least one). On two CPU cores a batch of eight StA clips
        (64 frames through ViT-L) ran slower per clip than one at a time."""
        frames = self.config.batch_size
        return max(1, frames // det.spec.clip_len) if det.spec.input_kind == "clip" else frames

    # -- scoring ----------------------------------------------------------------------------

    def member(self, det, units: Sequence, note: str = "") -> MemberScore:
        """One detector over a face's units (crops or clips): mean P(fake), or its failure."""
        threshold = self.config.rule.threshold_for(det.name)
        kind = det.spec.input_kind
        if not units:
            return MemberScore(det.name, det.spec.title, None, None, threshold, kind,
                               error=note or "nothing to score")
        before = det.seconds
        try:
            probs = det.predict(list(units), self.batch_for(det))
        except (FfaaError, ValueError, RuntimeError, MemoryError) as exc:
            log.warning("%s failed: %s", det.name, one_line(exc))
            return MemberScore(det.name, det.spec.title, None, None, threshold, kind,
                               seconds=det.seconds - before, error=one_line(exc), note=note)
        p = float(np.mean(probs))
        return MemberScore(det.name, det.spec.title, p, vote(p, threshold), threshold, kind,
                           tuple(float(x) for x in probs), det.seconds - before, note=note)

    def provenance(self) -> tuple[tuple[str, str], ...]:
        """Each detector's weights as reports record them (variant added when not full size)."""
        return tuple((d.name, d.weights + (f" ({d.variant})" if d.variant != "full" else "")) for d in self.detectors)

    def panel(self, members: Sequence[MemberScore], crop: str, ffaa_verdict: Verdict | None = None,
              notes: Sequence[str] = ()) -> DetectorPanel:
        ensemble = decide({m.detector: m.probability for m in members}, self.config.rule, ffaa_verdict)
        if self.demo:
            notes = ["DEMO detectors (random weights): their P(fake) is noise", *notes]
        return DetectorPanel(tuple(members), ensemble, crop, tuple(notes))

    def score_still(self, crops: FaceCrops, ffaa_verdict: Verdict | None = None) -> DetectorPanel:
        """Every detector on one face of a still image."""
        members = []
        for det in self.detectors:
            crop = crops.for_detector(det.name)
            if det.spec.input_kind == "frame":
                members.append(self.member(det, [crop]))
            elif self.config.still_clips:
                note = f"still image: a clip of {det.spec.clip_len} copies of the frame"
                members.append(self.member(det, [[crop] * det.spec.clip_len], note))
            else:
                members.append(self.member(det, [], "a clip detector needs a video (still_clips repeats the frame)"))
        return self.panel(members, crops.kind, ffaa_verdict)

    def score_image(self, image: Image.Image, boxes: Sequence[FaceBox | None],
                    ffaa_verdicts: Sequence[Verdict | None] | None = None) -> list[DetectorPanel]:
        """One panel per face box of a still image (None: the whole image)."""
        verdicts = list(ffaa_verdicts) if ffaa_verdicts is not None else [None] * len(boxes)
        return [self.score_still(face_crops(image, box, self.sizes), v) for box, v in zip(boxes, verdicts)]
