"""DeepfakeBench's EfficientNet-B4 detector (`EfficientDetector`, `networks/efficientnetb4.py`).

The backbone is `efficientnet_pytorch` 0.7.1's `EfficientNet.from_name("efficientnet-b4")`
(width 1.4, depth 1.8, built for 380-px images), changed by DeepfakeBench in two ways that the
released weights depend on:

* the stem is replaced by a plain `Conv2d(3, 48, 3, stride=2, bias=False)`: no padding at all,
  so a 256-px face becomes 127 x 127 (TF-style "same" padding would give 128);
* the ImageNet classifier `_fc` is an identity; the detector's own head is adaptive average
  pooling -> flatten -> `last_layer` Linear(1792, 2) (dropout is off in the yaml).

Every other convolution keeps efficientnet_pytorch's *static* "same" padding, which is computed
once for image_size 380 and does not follow the real input: with a 256-px input it is not "same"
any more, and the feature maps shrink differently (127 -> 63 -> 32 -> 16 -> 8). Only the
depthwise convolutions have a kernel above 1, so only they are padded; the amounts (left/right =
top/bottom) are those of the 380-px size chain 190, 95, 48, 24, 12. BatchNorm eps 1e-3 and
momentum 0.01 (TF's 0.99), swish (SiLU) activations, squeeze-and-excitation with ratio 0.25 of
each block's input width, identity skip where stride is 1 and widths match; drop-connect only
acts in training. Keys: `backbone.efficientnet.*` and `backbone.last_layer.*`.
Input [B, 3, 256, 256] in [-1, 1] (mean = std = 0.5); output logits [B, 2] (real, fake).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WIDTH_MULT = 1.4
DEPTH_MULT = 1.8
PADDING_IMAGE_SIZE = 380  # efficientnet-b4's nominal resolution, used for the static padding
BN_EPS = 1e-3
BN_MOMENTUM = 1 - 0.99  # PyTorch's convention for TF's decay 0.99
SE_RATIO = 0.25
CHANNEL_DIVISOR = 8
HEAD_WIDTH = 1280  # before width scaling: 1792 for B4
STEM_WIDTH = 32  # before width scaling: 48 for B4


@dataclass(frozen=True)
class StageSpec:
    """One EfficientNet-B0 stage before scaling: repeats, depthwise kernel, stride of its first
    block, expansion ratio, input and output widths."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    width_in: int
    width_out: int


B0_STAGES = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)


def scale_width(channels: int, mult: float = WIDTH_MULT, divisor: int = CHANNEL_DIVISOR) -> int:
    """Width times `mult`, rounded to the nearest multiple of `divisor` but never more than 10%
    below the exact product (the TF reference's rule): 32 -> 48, 320 -> 448, 1280 -> 1792."""
    exact = channels * mult
    rounded = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * exact else rounded)


def scale_depth(repeats: int, mult: float = DEPTH_MULT) -> int:
    """Repeats times `mult`, rounded up: B4 has 2, 4, 4, 6, 6, 8, 2 blocks (32 in all)."""
    return int(math.ceil(mult * repeats))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TF "same" padding for a square `size` input, as F.pad's (left, right, top, bottom): the
    total `(ceil(size / stride) - 1) * stride + kernel - size`, the extra pixel on the right."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2, total // 2, total - total // 2)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class StaticPadConv2d(nn.Conv2d):
    """A Conv2d whose zero padding is fixed at construction (possibly asymmetric): the padding
    efficientnet_pytorch computes for `image_size`, whatever size the input really has.
    [B, C, H, W] -> [B, O, (H + pad_h - k) // s + 1, (W + pad_w - k) // s + 1]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = False, image_size: int = PADDING_IMAGE_SIZE):
        left, right, top, bottom = same_padding(image_size, kernel_size, stride)
        symmetric = left == right and top == bottom  # then the convolution pads: no extra copy
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=(top, left) if symmetric else 0,
                         groups=groups, bias=bias)
        self.symmetric = symmetric
        self.pad = (left, right, top, bottom)

    def forward(self, x: Tensor) -> Tensor:
        if not self.symmetric:
            x = F.pad(x, self.pad)
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Inverted residual: [1x1 expand, BN, swish] -> kxk depthwise (stride s), BN, swish ->
    squeeze-excite -> 1x1 project, BN (no activation) -> + input when shapes allow.
    [B, C_in, H, W] -> [B, C_out, H', W'] with H' set by the static padding."""

    def __init__(self, width_in: int, width_out: int, expand: int, kernel: int, stride: int, image_size: int):
        super().__init__()
        inner = width_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = StaticPadConv2d(width_in, inner, 1, image_size=image_size)
            self._bn0 = batch_norm(inner)
        self._depthwise_conv = StaticPadConv2d(inner, inner, kernel, stride, groups=inner, image_size=image_size)
        self._bn1 = batch_norm(inner)
        squeezed = max(1, int(width_in * SE_RATIO))
        self._se_reduce = nn.Conv2d(inner, squeezed, 1)
        self._se_expand = nn.Conv2d(squeezed, inner, 1)
        self._project_conv = nn.Conv2d(inner, width_out, 1, bias=False)
        self._bn2 = batch_norm(width_out)
        self.skip = stride == 1 and width_in == width_out

    def squeeze_excite(self, x: Tensor) -> Tensor:
        """Channel gates from the global average: x * sigmoid(expand(swish(reduce(mean(x)))))."""
        gate = self._se_expand(F.silu(self._se_reduce(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(gate)

    def forward(self, inputs: Tensor) -> Tensor:
        x = F.silu(self._bn0(self._expand_conv(inputs))) if self.expand else inputs
        x = F.silu(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(self.squeeze_excite(x)))
        return x + inputs if self.skip else x


def build_blocks(stages: tuple[StageSpec, ...] = B0_STAGES) -> nn.ModuleList:
    """The 32 scaled MBConv blocks, each told the nominal (380-px chain) size of its input so
    that its depthwise padding is efficientnet_pytorch's: the stage's first block sees the size
    before the stride, the repeats the size after it."""
    blocks = nn.ModuleList()
    size = math.ceil(PADDING_IMAGE_SIZE / 2)  # after the stride-2 stem: 190
    for st in stages:
        width_in, width_out = scale_width(st.width_in), scale_width(st.width_out)
        blocks.append(MBConvBlock(width_in, width_out, st.expand, st.kernel, st.stride, size))
        size = math.ceil(size / st.stride)
        for _ in range(scale_depth(st.repeats) - 1):
            blocks.append(MBConvBlock(width_out, width_out, st.expand, st.kernel, 1, size))
    return blocks


class EfficientNetB4(nn.Module):
    """efficientnet_pytorch's B4 feature extractor with DeepfakeBench's unpadded stem:
    [B, 3, H, W] -> [B, 1792, H', W'] (8 x 8 for 256-px faces). `_fc` stays an identity."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        stem = scale_width(STEM_WIDTH)
        self._conv_stem = nn.Conv2d(in_channels, stem, 3, stride=2, bias=False)
        self._bn0 = batch_norm(stem)
        self._blocks = build_blocks()
        last = scale_width(B0_STAGES[-1].width_out)
        self._conv_head = nn.Conv2d(last, scale_width(HEAD_WIDTH), 1, bias=False)
        self._bn1 = batch_norm(scale_width(HEAD_WIDTH))
        self._fc = nn.Identity()

    def extract_features(self, x: Tensor) -> Tensor:
        x = F.silu(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.silu(self._bn1(self._conv_head(x)))


class EfficientNetB4Backbone(nn.Module):
    """DeepfakeBench's `EfficientNetB4` network: features, then pool -> flatten -> last_layer."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.efficientnet = EfficientNetB4()
        self.last_layer = nn.Linear(scale_width(HEAD_WIDTH), num_classes)

    def classifier(self, features: Tensor) -> Tensor:
        """[B, 1792, h, w] -> [B, num_classes]."""
        return self.last_layer(F.adaptive_avg_pool2d(features, 1).flatten(1))


class EfficientDetector(nn.Module):
    """The detector wrapper: its only child is `backbone`, as in the checkpoint's keys."""

    def __init__(self):
        super().__init__()
        self.backbone = EfficientNetB4Backbone()

    def forward(self, x: Tensor) -> Tensor:
        """[B, 3, 256, 256] normalised faces -> [B, 2] logits (real, fake)."""
        return self.backbone.classifier(self.backbone.efficientnet.extract_features(x))


def build(variant: str = "full") -> nn.Module:
    """The released architecture; `full` is the only variant."""
    if variant != "full":
        raise ValueError(f"efficientnetb4 has no variant {variant!r}")
    return EfficientDetector()
