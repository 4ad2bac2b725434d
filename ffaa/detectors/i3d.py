"""DF40's I3D detector: SlowFast's ResNet-50 I3D over 16-frame face clips (`i3d.pth`).

DF40's `I3DDetector` holds one child, `resnet`, a single-pathway SlowFast `ResNet` built with
MODEL.ARCH = i3d and DEPTH = 50. Its module names (`s1.pathway0_stem`, `sN.pathway0_resM`,
`branch1`/`branch2.{a,b,c}`, `head.projection`) are the checkpoint's keys, so they are kept:

* stem `s1`: Conv3d 3->64, kernel [5, 7, 7], stride [1, 2, 2], padding [2, 3, 3], no bias,
  BatchNorm3d, ReLU, MaxPool3d [1, 3, 3] / [1, 2, 2] / padding [0, 1, 1];
* `s2`..`s5`: 3, 4, 6, 3 bottlenecks (Tx1x1 -> 1x3x3 -> 1x1x1, spatial stride on the 3x3 of
  each stage's first block: 1, 2, 2, 2) of widths 64/256, 128/512, 256/1024, 512/2048; the
  temporal kernel T of block i cycles through 3 (res2), [3, 1] (res3, res4) and [1, 3] (res5);
  a projection shortcut (`branch1`, 1x1x1 + BN) where width or stride changes;
* `pathway0_pool`: MaxPool3d [2, 1, 1] after `s2` (16 -> 8 frames);
* `head`: AvgPool3d([8, 7, 7], stride 1) -> Dropout(0.5) -> `projection` Linear(2048, 1).

All BatchNorms have eps 1e-5. The original applies a sigmoid inside the head, in eval too; here
`forward` stops at the projection and returns the logit z, [B, 1], because the Detector applies
the sigmoid (registry `output="sigmoid"`). The fixed pooling kernel makes the input size rigid:
[B, 16, 3, 224, 224] (frames first, as DF40's dataset stacks them; permuted to [B, 3, 16, H, W]).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

BN_EPS = 1e-5
BN_MOMENTUM = 0.1
NUM_FRAMES = 16
CROP_SIZE = 224
STAGE_DEPTHS = (3, 4, 6, 3)  # ResNet-50
STAGE_TEMPORAL_KERNELS = ((3,), (3, 1), (3, 1), (1, 3))  # res2..res5, cycled over the blocks
STAGE_STRIDES = (1, 2, 2, 2)
STEM_WIDTH = 64


def _bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class BasicStem(nn.Module):
    """Conv [5, 7, 7] + BN + ReLU + spatial max pool: [B, 3, T, H, W] -> [B, 64, T, H/4, W/4]."""

    def __init__(self, in_channels: int = 3, out_channels: int = STEM_WIDTH, temporal_kernel: int = 5):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, (temporal_kernel, 7, 7), stride=(1, 2, 2),
                              padding=(temporal_kernel // 2, 3, 3), bias=False)
        self.bn = _bn(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool_layer = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool_layer(self.relu(self.bn(self.conv(x))))


class VideoStem(nn.Module):
    """Holds the single pathway's stem under the checkpoint's name `pathway0_stem`."""

    def __init__(self, temporal_kernel: int = 5):
        super().__init__()
        self.pathway0_stem = BasicStem(temporal_kernel=temporal_kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self.pathway0_stem(x)


class Bottleneck(nn.Module):
    """Tx1x1 -> 1x3x3 (carries the spatial stride) -> 1x1x1, BN after each, ReLU after the first
    two: [B, C_in, T, H, W] -> [B, C_out, T, H/stride, W/stride]. No ReLU at the end: the block
    adds the shortcut first."""

    def __init__(self, dim_in: int, dim_out: int, dim_inner: int, temporal_kernel: int, stride: int):
        super().__init__()
        self.a = nn.Conv3d(dim_in, dim_inner, (temporal_kernel, 1, 1),
                           padding=(temporal_kernel // 2, 0, 0), bias=False)
        self.a_bn = _bn(dim_inner)
        self.a_relu = nn.ReLU(inplace=True)
        self.b = nn.Conv3d(dim_inner, dim_inner, (1, 3, 3), stride=(1, stride, stride),
                           padding=(0, 1, 1), bias=False)
        self.b_bn = _bn(dim_inner)
        self.b_relu = nn.ReLU(inplace=True)
        self.c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.c_bn = _bn(dim_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.a_relu(self.a_bn(self.a(x)))
        x = self.b_relu(self.b_bn(self.b(x)))
        return self.c_bn(self.c(x))


class ResBlock(nn.Module):
    """relu(shortcut(x) + branch2(x)); the shortcut is a strided 1x1x1 conv + BN (`branch1`)
    only when the width or the resolution changes, the identity otherwise."""

    def __init__(self, dim_in: int, dim_out: int, dim_inner: int, temporal_kernel: int, stride: int):
        super().__init__()
        self.has_projection = dim_in != dim_out or stride != 1
        if self.has_projection:
            self.branch1 = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
            self.branch1_bn = _bn(dim_out)
        self.branch2 = Bottleneck(dim_in, dim_out, dim_inner, temporal_kernel, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.branch1_bn(self.branch1(x)) if self.has_projection else x
        return self.relu(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """`depth` residual blocks named `pathway0_res{i}`; only the first one strides and widens.
    Block i's temporal kernel is `temporal_kernels[i % len(temporal_kernels)]` (SlowFast repeats
    the stage's pattern over all of its blocks, as NUM_BLOCK_TEMP_KERNEL = depth here)."""

    def __init__(self, dim_in: int, dim_out: int, dim_inner: int, depth: int,
                 temporal_kernels: tuple[int, ...], stride: int):
        super().__init__()
        self.depth = depth
        for i in range(depth):
            block = ResBlock(dim_in if i == 0 else dim_out, dim_out, dim_inner,
                             temporal_kernels[i % len(temporal_kernels)], stride if i == 0 else 1)
            self.add_module(f"pathway0_res{i}", block)

    def forward(self, x: Tensor) -> Tensor:
        for i in range(self.depth):
            x = getattr(self, f"pathway0_res{i}")(x)
        return x


class BasicHead(nn.Module):
    """Average over the whole [T', H', W'] feature map (a fixed kernel, as the original), dropout,
    linear projection: [B, 2048, T', H', W'] -> [B, num_classes] (pre-sigmoid)."""

    def __init__(self, dim_in: int, num_classes: int, pool_size: tuple[int, int, int], dropout: float = 0.5):
        super().__init__()
        self.pathway0_avgpool = nn.AvgPool3d(pool_size, stride=1)
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(dim_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        if x.device.type == "cpu" and dtype != torch.float32:  # no half-precision avg_pool3d on CPU
            x = x.float()
        x = self.pathway0_avgpool(x).flatten(1).to(dtype)  # [B, 2048, 1, 1, 1] -> [B, 2048]
        return self.projection(self.dropout(x))


class I3DResNet(nn.Module):
    """SlowFast's single-pathway ResNet-50 I3D: [B, 3, T, H, W] -> logits [B, num_classes]."""

    def __init__(self, num_frames: int = NUM_FRAMES, crop_size: int = CROP_SIZE, num_classes: int = 1):
        super().__init__()
        self.s1 = VideoStem(temporal_kernel=5)
        widths = [STEM_WIDTH] + [STEM_WIDTH * 4 * 2**n for n in range(4)]  # 64, 256, 512, 1024, 2048
        for n in range(4):
            stage = ResStage(widths[n], widths[n + 1], widths[n + 1] // 4, STAGE_DEPTHS[n],
                             STAGE_TEMPORAL_KERNELS[n], STAGE_STRIDES[n])
            self.add_module(f"s{n + 2}", stage)
        self.pathway0_pool = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))  # applied after s2
        self.head = BasicHead(widths[-1], num_classes, (num_frames // 2, crop_size // 32, crop_size // 32))

    def forward(self, x: Tensor) -> Tensor:
        """[B, 3, 16, 224, 224] -> s1 [B, 64, 16, 56, 56] -> s2 [B, 256, 16, 56, 56] -> pool
        [B, 256, 8, 56, 56] -> s3 [B, 512, 8, 28, 28] -> s4 [.., 14, 14] -> s5 [B, 2048, 8, 7, 7]
        -> head [B, 1]."""
        x = self.pathway0_pool(self.s2(self.s1(x)))
        return self.head(self.s5(self.s4(self.s3(x))))


class I3DDetector(nn.Module):
    """DF40's detector wrapper: its only child is `resnet`, as in the checkpoint's keys.
    Takes [B, T, 3, H, W] clips (T = `num_frames`, H = W = `crop_size`; 16 and 224 for the
    released model) and returns the projection's logit z, [B, 1]; P(fake) = sigmoid(z)."""

    def __init__(self, num_frames: int = NUM_FRAMES, crop_size: int = CROP_SIZE):
        super().__init__()
        self.num_frames = num_frames
        self.crop_size = crop_size
        self.resnet = I3DResNet(num_frames, crop_size)

    def check_input(self, x: Tensor) -> None:
        """A ValueError unless `x` is [B, T, 3, S, S]: the head's pooling kernel is fixed, so any
        other clip length or size would silently give several outputs per clip (or fail)."""
        want = (self.num_frames, 3, self.crop_size, self.crop_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != want:
            raise ValueError(f"I3D takes clips of shape [B, {', '.join(map(str, want))}] "
                             f"(batch, frames, channels, height, width); got {list(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        """[B, T, 3, S, S] normalised clips -> [B, 1] logits."""
        self.check_input(x)
        return self.resnet(x.permute(0, 2, 1, 3, 4))


def build(variant: str = "full") -> nn.Module:
    """The released architecture (16 frames of 224 x 224); `full` is the only variant."""
    if variant != "full":
        raise ValueError(f"i3d has no variant {variant!r}")
    return I3DDetector()
