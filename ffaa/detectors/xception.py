"""Xception (Chollet, 2017) as DeepfakeBench trains and tests it (`xception_best.pth`, DF40's
`xception.pth`), and the same backbone reused by the SRM and F3Net detectors.

This is the FaceForensics++ variant of the network (DeepfakeBench `networks/xception.py`): the
first two convolutions have no padding, so a 256x256 face gives feature maps of 127, 125, 63, 32,
16 (entry flow), 16 (middle flow) and 8 (exit flow) pixels. The submodule names are the
checkpoint's: `blockN.rep.M` counts the ReLU and MaxPool layers of each block too, so the ReLUs
are real modules at their original positions in `rep`. `adjust_channel` (a 2048 -> 512 conv + BN
built in every mode) is held only because the released files contain it; mode "original" never
calls it. Test-time output: logits = last_linear(mean over pixels of relu(features)).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

FEATURES = 2048  # channels of the exit flow's output
MIDDLE_CHANNELS = 728


class SeparableConv2d(nn.Module):
    """A depthwise 3x3 conv (`conv1`, weight [C, 1, 3, 3]) then a pointwise 1x1 conv
    (`pointwise`, weight [O, C, 1, 1]), both without bias: [B, C, H, W] -> [B, O, H, W]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.conv1(x))


def _unit(in_channels: int, out_channels: int) -> list[nn.Module]:
    """ReLU -> separable conv -> BN: three `rep` entries, as the checkpoint numbers them."""
    return [nn.ReLU(inplace=True), SeparableConv2d(in_channels, out_channels), nn.BatchNorm2d(out_channels)]


class Block(nn.Module):
    """One Xception block: `reps` (ReLU, separable conv, BN) units plus a residual.

    grow_first: the first unit changes the channel count (entry and middle flow); otherwise the
    last one does (block12). start_with_relu=False drops the leading ReLU (block1, which follows
    a ReLU already). A stride of 2 ends `rep` with MaxPool(3, 2, 1) and makes the residual a
    strided 1x1 conv + BN (`skip`, `skipbn`); so does a change of channels. Without either the
    residual is the input itself. [B, I, H, W] -> [B, O, H / stride, W / stride] (rounded up).
    """

    def __init__(self, in_channels: int, out_channels: int, reps: int, stride: int = 1,
                 start_with_relu: bool = True, grow_first: bool = True):
        super().__init__()
        if out_channels != in_channels or stride != 1:
            self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.skipbn = nn.BatchNorm2d(out_channels)
        else:
            self.skip = None
        if grow_first:
            widths = [in_channels] + [out_channels] * reps
        else:
            widths = [in_channels] * reps + [out_channels]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += _unit(cin, cout)
        # The first ReLU must not overwrite the block's input: the residual still needs it.
        layers[0] = nn.ReLU(inplace=False)
        if not start_with_relu:
            layers = layers[1:]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.rep(x)
        out += self.skipbn(self.skip(x)) if self.skip is not None else x
        return out


class Xception(nn.Module):
    """The DeepfakeBench Xception backbone (checkpoint prefix `backbone.`, `backbone_rgb.`, ...).

    The flow is split into the stages that SRM interleaves with its own modules:
    stem_a -> stem_b -> entry_flow -> middle_flow_a -> middle_flow_b -> exit_flow.
    in_channels: 3 (RGB) or 12 (F3Net's frequency bands). dropout > 0 turns `last_linear` into
    Sequential(Dropout, Linear) (keys `last_linear.1.*`), as F3Net's config asks; identity in eval.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 2, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.block1 = Block(64, 128, 2, 2, start_with_relu=False)
        self.block2 = Block(128, 256, 2, 2)
        self.block3 = Block(256, MIDDLE_CHANNELS, 2, 2)
        for i in range(4, 12):
            self.add_module(f"block{i}", Block(MIDDLE_CHANNELS, MIDDLE_CHANNELS, 3, 1))
        self.block12 = Block(MIDDLE_CHANNELS, 1024, 2, 2, grow_first=False)
        self.conv3 = SeparableConv2d(1024, 1536)
        self.bn3 = nn.BatchNorm2d(1536)
        self.conv4 = SeparableConv2d(1536, FEATURES)
        self.bn4 = nn.BatchNorm2d(FEATURES)
        linear = nn.Linear(FEATURES, num_classes)
        self.last_linear = nn.Sequential(nn.Dropout(dropout), linear) if dropout else linear
        self.adjust_channel = nn.Sequential(nn.Conv2d(FEATURES, 512, 1, 1), nn.BatchNorm2d(512),
                                            nn.ReLU(inplace=False))

    def _blocks(self, first: int, last: int, x: Tensor) -> Tensor:
        for i in range(first, last + 1):
            x = getattr(self, f"block{i}")(x)
        return x

    def stem_a(self, x: Tensor) -> Tensor:
        """conv1 (3x3, stride 2, no padding) -> BN -> ReLU: [B, C, 256, 256] -> [B, 32, 127, 127]."""
        return self.relu(self.bn1(self.conv1(x)))

    def stem_b(self, x: Tensor) -> Tensor:
        """conv2 (3x3, no padding) -> BN -> ReLU: [B, 32, 127, 127] -> [B, 64, 125, 125]."""
        return self.relu(self.bn2(self.conv2(x)))

    def entry_flow(self, x: Tensor) -> Tensor:
        """Blocks 1-3: [B, 64, 125, 125] -> [B, 728, 16, 16]."""
        return self._blocks(1, 3, x)

    def middle_flow_a(self, x: Tensor) -> Tensor:
        """Blocks 4-7 (shape kept): [B, 728, 16, 16] -> [B, 728, 16, 16]."""
        return self._blocks(4, 7, x)

    def middle_flow_b(self, x: Tensor) -> Tensor:
        """Blocks 8-11 and the exit flow's block12: [B, 728, 16, 16] -> [B, 1024, 8, 8]."""
        return self._blocks(8, 12, x)

    def exit_flow(self, x: Tensor) -> Tensor:
        """conv3 -> BN -> ReLU -> conv4 -> BN (no final ReLU: the classifier applies it):
        [B, 1024, 8, 8] -> [B, 2048, 8, 8]."""
        return self.bn4(self.conv4(self.relu(self.bn3(self.conv3(x)))))

    def features(self, x: Tensor) -> Tensor:
        """The whole network up to the classifier: [B, C, 256, 256] -> [B, 2048, 8, 8]."""
        x = self.entry_flow(self.stem_b(self.stem_a(x)))
        return self.exit_flow(self.middle_flow_b(self.middle_flow_a(x)))

    def classifier(self, features: Tensor) -> Tensor:
        """ReLU -> global average pool -> last_linear: [B, 2048, h, w] -> [B, num_classes].
        The ReLU is out of place so the caller's feature map is left as it was."""
        pooled = nn.functional.adaptive_avg_pool2d(torch.relu(features), 1).flatten(1)
        return self.last_linear(pooled)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class XceptionDetector(nn.Module):
    """DeepfakeBench's `XceptionDetector`: its only child is `backbone`, as in the checkpoint.
    forward: the normalised faces [B, 3, 256, 256] -> logits [B, 2] (real, fake)."""

    def __init__(self):
        super().__init__()
        self.backbone = Xception(in_channels=3, num_classes=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)


def build(variant: str = "full") -> nn.Module:
    """The released architecture (there are no smaller variants)."""
    if variant != "full":
        raise ValueError(f"xception has no variant {variant!r}")
    return XceptionDetector()
