"""SRM (Luo et al., CVPR 2021, "Generalizing face forgery detection with high-frequency features")
as DeepfakeBench trains and tests it (`srm_best.pth`).

Two Xception streams: `backbone_rgb` on the image and `backbone_srm` on its SRM noise residuals
(three fixed 5x5 high-pass filters, clipped to [-3, 3]). After each of the two stem convolutions
the RGB features also feed the SRM stream through per-channel SRM filters (`srm_conv1`,
`srm_conv2`); an attention map computed from the residuals reweights the RGB stem output
(`srm_sa`, `srm_sa_post`); dual cross-modal attention exchanges information between the streams
after the entry flow and after the first half of the middle flow (`dual_cma0/1`); the two
2048-channel outputs are fused with channel attention (`fusion`) and classified by
`backbone_rgb`'s head. Input: normalised faces [B, 3, 256, 256] (the cross-modal attention's
linear layers are fixed to 16x16 feature maps); output: logits [B, 2].

The released model was trained with AM-Softmax (scale 30, margin 0.45) but the original test
code takes a plain softmax of these logits, so its P(fake) sits close to 0.5.

Kept only because the checkpoint holds them: the Gaussian blur kernel (`blur.weight`, training
augmentation only), and `backbone_srm.last_linear` / both streams' `adjust_channel`. The SRM
kernels are parameters without gradient, loaded from the checkpoint like everything else.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .xception import FEATURES, MIDDLE_CHANNELS, Xception

CLIP = 3.0  # the residuals are truncated to [-CLIP, CLIP]


def srm_filters() -> Tensor:
    """The three SRM high-pass kernels [3, 5, 5] (KB, KV and the horizontal second-order one),
    each scaled so that its central weight is -1."""
    kb = torch.zeros(5, 5)
    kb[1:4, 1:4] = torch.tensor([[-1.0, 2.0, -1.0], [2.0, -4.0, 2.0], [-1.0, 2.0, -1.0]])
    kv = torch.tensor([[-1.0, 2.0, -2.0, 2.0, -1.0], [2.0, -6.0, 8.0, -6.0, 2.0],
                       [-2.0, 8.0, -12.0, 8.0, -2.0], [2.0, -6.0, 8.0, -6.0, 2.0],
                       [-1.0, 2.0, -2.0, 2.0, -1.0]])
    horizontal = torch.zeros(5, 5)
    horizontal[2, 1:4] = torch.tensor([1.0, -2.0, 1.0])
    return torch.stack([kb / 4.0, kv / 12.0, horizontal / 2.0])


class SRMFilter(nn.Module):
    """The SRM residuals of an image: every filter sums over all input channels.
    `kernel` [3, C, 5, 5]; [B, C, H, W] -> [B, 3, H, W], values in [-3, 3]."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        kernel = srm_filters().unsqueeze(1).expand(3, in_channels, 5, 5).clone()
        self.kernel = nn.Parameter(kernel, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.hardtanh(F.conv2d(x, self.kernel, stride=1, padding=2), -CLIP, CLIP)


class SRMSeparate(nn.Module):
    """SRM filters on a feature map, 3 per group of the grouped conv, then a 1x1 conv + BN + ReLU.

    `kernel` [3C, 1, 5, 5] with `groups=C`; [B, C, H, W] -> [B, 3C, H, W] -> [B, O, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.groups = in_channels
        kernel = srm_filters().unsqueeze(1).repeat_interleave(in_channels, dim=0)
        self.kernel = nn.Parameter(kernel, requires_grad=False)
        self.out_conv = nn.Sequential(nn.Conv2d(3 * in_channels, out_channels, 1, bias=False),
                                      nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        residual = F.conv2d(x, self.kernel, stride=1, padding=2, groups=self.groups)
        return self.out_conv(F.hardtanh(residual, -CLIP, CLIP))


class GaussianBlur(nn.Module):
    """Holds the 7x7 depthwise Gaussian kernel `weight` [3, 1, 7, 7] (sigma 0.8), a persistent
    buffer of the checkpoint. The original only blurs while training; at test time it is
    never applied, so this module has no forward."""

    def __init__(self, channels: int = 3, size: int = 7, sigma: float = 0.8):
        super().__init__()
        offsets = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        bell = 1 / (sigma * math.sqrt(2 * math.pi)) * torch.exp(-((offsets / sigma) ** 2) / 2)
        kernel = bell[:, None] * bell[None, :]
        kernel = (kernel / kernel.sum()).expand(channels, 1, size, size).clone()
        self.register_buffer("weight", kernel)


class SpatialAttention(nn.Module):
    """A one-channel attention map from the channel mean and max: 7x7 conv (no bias) + sigmoid.
    [B, C, H, W] -> [B, 1, H, W]."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class SRMPixelAttention(nn.Module):
    """The attention map that reweights the RGB stem output, computed from the SRM residuals
    (which it filters once more with its own `srm` kernel, as the original does) through a
    small copy of the Xception stem. [B, 3, 256, 256] -> [B, 1, 125, 125]."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.srm = SRMFilter(in_channels)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, 2, 0, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        )
        self.pa = SpatialAttention()

    def forward(self, x: Tensor) -> Tensor:
        return self.pa(self.conv(self.srm(x)))


class DualCrossModalAttention(nn.Module):
    """Each stream attends to the other; residual outputs scaled by `gamma1` / `gamma2` [1].

    Shared keys from both streams (728 -> 91 -> 91 channels) give an energy [B, N, N] over the
    N = size * size pixels; `linear1` (rows) and `linear2` (transposed) remix it before a
    softmax. x, y: [B, 728, 16, 16] -> (x', y'), same shapes.
    """

    def __init__(self, in_dim: int = MIDDLE_CHANNELS, size: int = 16, ratio: int = 8):
        super().__init__()
        n, key_dim = size * size, in_dim // ratio
        self.key_conv1 = nn.Conv2d(in_dim, key_dim, 1)
        self.key_conv2 = nn.Conv2d(in_dim, key_dim, 1)
        self.key_conv_share = nn.Conv2d(key_dim, key_dim, 1)
        self.linear1 = nn.Linear(n, n)
        self.linear2 = nn.Linear(n, n)
        self.value_conv1 = nn.Conv2d(in_dim, in_dim, 1)
        self.gamma1 = nn.Parameter(torch.zeros(1))
        self.value_conv2 = nn.Conv2d(in_dim, in_dim, 1)
        self.gamma2 = nn.Parameter(torch.zeros(1))

    def _attention(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(attention of x's pixels over y's, of y's over x's), each [B, N, N] rows summing to 1."""
        key_x = self.key_conv_share(self.key_conv1(x)).flatten(2).transpose(1, 2)  # [B, N, 91]
        key_y = self.key_conv_share(self.key_conv2(y)).flatten(2)  # [B, 91, N]
        energy = torch.bmm(key_x, key_y)  # [B, N, N]
        y_on_x = torch.softmax(self.linear1(energy), dim=-1)
        x_on_y = torch.softmax(self.linear2(energy.transpose(1, 2)), dim=-1)
        return y_on_x, x_on_y

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        y_on_x, x_on_y = self._attention(x, y)
        from_y = torch.bmm(self.value_conv2(y).flatten(2), y_on_x.transpose(1, 2)).view_as(x)
        from_x = torch.bmm(self.value_conv1(x).flatten(2), x_on_y.transpose(1, 2)).view_as(y)
        return self.gamma1 * from_y + x, self.gamma2 * from_x + y


class ChannelAttention(nn.Module):
    """Per-channel gates from a shared bottleneck MLP (1x1 convs without bias) applied to the
    average- and max-pooled map: [B, C, H, W] -> [B, C, 1, 1] in (0, 1)."""

    def __init__(self, channels: int, ratio: int = 16):
        super().__init__()
        self.sharedMLP = nn.Sequential(nn.Conv2d(channels, channels // ratio, 1, bias=False), nn.ReLU(),
                                       nn.Conv2d(channels // ratio, channels, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        avg = self.sharedMLP(F.adaptive_avg_pool2d(x, 1))
        peak = self.sharedMLP(F.adaptive_max_pool2d(x, 1))
        return torch.sigmoid(avg + peak)


class FeatureFusionModule(nn.Module):
    """Concatenate both streams, 1x1 conv (no bias) + BN + ReLU, then gate the channels
    (multiplied by the gate, no residual, as in the released code).
    x, y: [B, 2048, 8, 8] -> [B, 2048, 8, 8]."""

    def __init__(self, in_channels: int = 2 * FEATURES, out_channels: int = FEATURES):
        super().__init__()
        self.convblk = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
                                     nn.BatchNorm2d(out_channels), nn.ReLU())
        self.ca = ChannelAttention(out_channels, ratio=16)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fused = self.convblk(torch.cat((x, y), dim=1))
        return fused * self.ca(fused)


class SRMDetector(nn.Module):
    """DeepfakeBench's `SRMDetector` at test time: [B, 3, 256, 256] -> logits [B, 2]."""

    def __init__(self):
        super().__init__()
        self.backbone_rgb = Xception(in_channels=3, num_classes=2)
        self.backbone_srm = Xception(in_channels=3, num_classes=2)
        self.blur = GaussianBlur(channels=3, size=7, sigma=0.8)
        self.srm_conv0 = SRMFilter(3)
        self.srm_conv1 = SRMSeparate(32, 32)
        self.srm_conv2 = SRMSeparate(64, 64)
        self.srm_sa = SRMPixelAttention(3)
        self.srm_sa_post = nn.Sequential(nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        self.dual_cma0 = DualCrossModalAttention(MIDDLE_CHANNELS)
        self.dual_cma1 = DualCrossModalAttention(MIDDLE_CHANNELS)
        self.fusion = FeatureFusionModule()

    def _stems(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Both stems, the SRM stream fed by the RGB one and the RGB output reweighted by the
        residuals' attention: [B, 3, 256, 256] -> (rgb, srm), each [B, 64, 125, 125]."""
        residuals = self.srm_conv0(image)
        rgb = self.backbone_rgb.stem_a(image)
        srm = torch.relu(self.backbone_srm.stem_a(residuals) + self.srm_conv1(rgb))
        rgb = self.backbone_rgb.stem_b(rgb)
        srm = torch.relu(self.backbone_srm.stem_b(srm) + self.srm_conv2(rgb))
        rgb = self.srm_sa_post(rgb * self.srm_sa(residuals) + rgb)
        return rgb, srm

    def features(self, image: Tensor) -> Tensor:
        """The fused feature map before the classifier: [B, 3, 256, 256] -> [B, 2048, 8, 8]."""
        rgb, srm = self._stems(image)
        rgb, srm = self.dual_cma0(self.backbone_rgb.entry_flow(rgb), self.backbone_srm.entry_flow(srm))
        rgb, srm = self.dual_cma1(self.backbone_rgb.middle_flow_a(rgb), self.backbone_srm.middle_flow_a(srm))
        rgb = self.backbone_rgb.exit_flow(self.backbone_rgb.middle_flow_b(rgb))
        srm = self.backbone_srm.exit_flow(self.backbone_srm.middle_flow_b(srm))
        return self.fusion(rgb, srm)

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone_rgb.classifier(self.features(x))


def build(variant: str = "full") -> nn.Module:
    """The released architecture (there are no smaller variants)."""
    if variant != "full":
        raise ValueError(f"srm has no variant {variant!r}")
    return SRMDetector()
