"""Grad-CAM for MIDS: which face regions drove its score for one answer.

The activations are the projected CLIP tokens of the last layer (`proj_layer1`, [1, P+1, d]);
the gradients are those of one class logit with respect to them. Each channel is weighted by
its mean gradient over the patches, the weighted sum is clipped at 0 and laid out on the
g x g patch grid (g = image_size / patch_size; CLS excluded), then scaled to [0, 1].

FFAA targets class 0 (real image, real claim) when the chosen answer says real and class 3
(fake, fake) when it says fake; `target_for` gives that choice.

The map covers what CLIP saw: the centre square after resizing the shortest edge. The overlay
shown to users is drawn on the face crop at the crop's own size (336 x 336 for FFAA's crop),
whatever CLIP's input size: the map is upsampled (bilinear) onto the crop's centre square, which
is all of a square crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from PIL import Image

    from .decider import MidsDecider
    from .net import MidsNet


@dataclass(frozen=True)
class Heatmap:
    """A [g, g] float32 map in [0, 1], the class it explains, and its overlay image (the size
    of the face it explains)."""

    grid: np.ndarray
    target_class: int
    overlay: Image.Image


def target_for(claims_fake: bool) -> int:
    """FFAA's Grad-CAM target: class 3 (fake/fake) for a fake answer, 0 (real/real) otherwise."""
    return 3 if claims_fake else 0


def grad_cam(net: MidsNet, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor,
             target_class: int) -> np.ndarray:
    """Grad-CAM map [g, g] (float32, [0, 1]) for one image [1, 3, H, W] and one answer [1, L]."""
    if pixel_values.shape[0] != 1 or input_ids.shape[0] != 1:
        raise ValueError("grad_cam explains one image and one answer at a time")
    if not 0 <= target_class < 4:
        raise ValueError(f"target_class must be 0..3, got {target_class}")
    record: dict[str, Tensor] = {}
    with torch.enable_grad():
        pixels = pixel_values.detach().clone().requires_grad_(True)  # keeps a graph when weights are frozen
        index = torch.zeros(1, dtype=torch.long, device=input_ids.device)
        logits = net.logits_per_row(pixels, input_ids, attention_mask, index, record)
        acts = record["proj_layer1"]
        (grads,) = torch.autograd.grad(logits[0, target_class], acts)
    patches, weights = acts[0, 1:].detach(), grads[0, 1:].mean(dim=0)  # [P, d], [d]
    cam = torch.relu(patches @ weights)
    side = round(cam.numel() ** 0.5)
    if side * side != cam.numel():
        raise ValueError(f"{cam.numel()} patches do not form a square grid")
    cam = cam.view(side, side).float().cpu().numpy()
    top = float(cam.max())
    return (cam / top if top > 0 else np.zeros_like(cam)).astype(np.float32)


def overlay(image: Image.Image, grid: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The map coloured (blue = 0 -> red = 1) and blended over `image` at its own size.

    Drawn on CLIP's input instead, a small encoder (the demo's 56 px) would give users a thumbnail
    of their crop. The map goes over the centre square CLIP saw; the rest of a non-square image
    is left untinted, since the map says nothing about it.
    """
    from PIL import Image

    base = image.convert("RGB")
    left, top, side = centre_square(base.size)
    heat = Image.fromarray(np.asarray(grid, dtype=np.float32)).resize((side, side), Image.Resampling.BILINEAR)
    colours = base.copy()
    colours.paste(Image.fromarray(_jet(np.clip(np.asarray(heat), 0.0, 1.0))), (left, top))
    return Image.blend(base, colours, alpha)


def centre_square(size: tuple[int, int]) -> tuple[int, int, int]:
    """(left, top, side) of the centre square of a `size` = (width, height) image: what CLIP
    sees of it once the shortest edge is resized and the longer one centre-cropped."""
    width, height = size
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def clip_view(image: Image.Image, size: int) -> Image.Image:
    """The RGB square CLIP sees: shortest edge resized to `size` (bicubic), centre crop."""
    from PIL import Image

    rgb = image.convert("RGB")
    w, h = rgb.size
    scale = size / min(w, h)
    new = (size, max(size, int(h * scale))) if w <= h else (max(size, int(w * scale)), size)
    resized = rgb.resize(new, Image.Resampling.BICUBIC)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return resized.crop((left, top, left + size, top + size))


def _jet(x: np.ndarray) -> np.ndarray:
    """A jet-like colour map: [H, W] in [0, 1] -> [H, W, 3] uint8."""
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def explain(decider: MidsDecider, face: Image.Image, text: str, target_class: int,
            alpha: float = 0.45) -> Heatmap:
    """Grad-CAM of `decider`'s MIDS for one face and one masked answer text."""
    from .preprocess import pixel_values as to_pixels
    from .preprocess import tokenize

    pixels = to_pixels(decider.image_processor, [face]).to(decider.device)
    tokens = tokenize(decider.tokenizer, [text], decider.max_length)
    grid = grad_cam(decider.net, pixels, tokens.input_ids.to(decider.device),
                    tokens.attention_mask.to(decider.device), target_class)
    return Heatmap(grid, target_class, overlay(face, grid, alpha))
