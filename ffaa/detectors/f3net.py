"""F3Net (Qian et al., ECCV 2020, "Thinking in frequency") as DeepfakeBench trains and tests it
(`f3net_best.pth`): only the Frequency-Aware Decomposition (FAD) branch, followed by Xception.

FAD takes the 2-D DCT of each colour channel (D x D^T with the 256x256 DCT-II matrix), keeps
four frequency bands (masks over i + j: low, middle, high, all), each widened by a learnable
soft mask 2 * sigmoid(w) - 1, transforms every band back (D^T y D) and stacks the 4 x 3 results
as 12 channels for an Xception whose first conv takes 12 channels. The head is
Sequential(Dropout(0.5), Linear(2048, 2)) (keys `backbone.last_linear.1.*`), Dropout being the
identity at test time. Input: normalised faces [B, 3, 256, 256]; output: logits [B, 2].

The DCT matrices (`FAD_head._DCT_all` and its transpose `_DCT_all_T`) and the band masks
(`filters.i.base`) are parameters without gradient, stored in the checkpoint and loaded from it;
the values computed here only initialise a fresh network.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .xception import Xception

SIZE = 256  # the DCT matrices and masks are built for the detector's resolution


def dct_matrix(size: int) -> Tensor:
    """The orthonormal DCT-II matrix [size, size]: row i is frequency i, column j is pixel j.
    Built in float64 and rounded to float32, as the original does."""
    freq = torch.arange(size, dtype=torch.float64)[:, None]
    pixel = torch.arange(size, dtype=torch.float64)[None, :]
    scale = torch.full((size, 1), math.sqrt(2.0 / size), dtype=torch.float64)
    scale[0] = math.sqrt(1.0 / size)
    return (scale * torch.cos((pixel + 0.5) * math.pi * freq / size)).float()


def band_mask(start: float, end: float, size: int) -> Tensor:
    """1 where start <= i + j <= end, else 0: a diagonal band of DCT frequencies [size, size]."""
    index = torch.arange(size, dtype=torch.float32)
    total = index[:, None] + index[None, :]
    return ((total >= start) & (total <= end)).float()


class Filter(nn.Module):
    """One frequency band: the fixed mask `base` plus the learnable soft mask
    2 * sigmoid(`learnable`) - 1 (in (-1, 1)), both [size, size], multiplied into a spectrum
    [B, C, size, size]."""

    def __init__(self, size: int, start: float, end: float):
        super().__init__()
        self.base = nn.Parameter(band_mask(start, end, size), requires_grad=False)
        self.learnable = nn.Parameter(torch.empty(size, size).normal_(0.0, 0.1))

    def mask(self) -> Tensor:
        """The band's effective mask [size, size]."""
        return self.base + (2.0 * torch.sigmoid(self.learnable) - 1.0)


class FADHead(nn.Module):
    """Frequency-aware decomposition: [B, 3, S, S] -> [B, 12, S, S], channel 3 * band + colour,
    bands in the order low, middle, high, all."""

    def __init__(self, size: int = SIZE):
        super().__init__()
        dct = dct_matrix(size)
        self._DCT_all = nn.Parameter(dct, requires_grad=False)
        self._DCT_all_T = nn.Parameter(dct.t().contiguous(), requires_grad=False)
        # Band edges on i + j, in the original's floor-divided units (size // 2.82 is 90.0 at 256).
        low, middle = size // 2.82, size // 2
        self.filters = nn.ModuleList([
            Filter(size, 0, low), Filter(size, low, middle), Filter(size, middle, size * 2),
            Filter(size, 0, size * 2),
        ])

    def forward(self, x: Tensor) -> Tensor:
        # Both matrices come from the checkpoint, so each is used as loaded (not one as the
        # other's transpose), in the original's left-to-right product order.
        spectrum = self._DCT_all @ x @ self._DCT_all_T  # [B, 3, S, S]
        masks = torch.stack([f.mask() for f in self.filters])[:, None]  # [4, 1, S, S]
        bands = spectrum.unsqueeze(1) * masks  # [B, 4, 3, S, S]
        images = self._DCT_all_T @ bands @ self._DCT_all
        return images.flatten(1, 2)


class F3NetDetector(nn.Module):
    """DeepfakeBench's `F3netDetector` at test time: FAD head, then a 12-channel Xception.
    [B, 3, 256, 256] -> logits [B, 2]."""

    def __init__(self, size: int = SIZE):
        super().__init__()
        self.backbone = Xception(in_channels=12, num_classes=2, dropout=0.5)
        self.FAD_head = FADHead(size)

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(self.FAD_head(x))


def build(variant: str = "full") -> nn.Module:
    """The released architecture (there are no smaller variants)."""
    if variant != "full":
        raise ValueError(f"f3net has no variant {variant!r}")
    return F3NetDetector()
