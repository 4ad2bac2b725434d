"""StA4Deepfake's clip detector (`CLIPAdapterDetector`, released as `sta_best.pth`).

An OpenAI-CLIP ViT-L/14 image encoder cut to its first 14 blocks (width 1024, 16 heads, MLP
4096 with QuickGELU, LayerNorms computed in float32), run on every frame of an 8-frame clip
with a learned per-frame `temporal_embedding`, and a spatiotemporal adapter ("StA") after each
block that lets the frames of one clip talk to each other:

    down 1024 -> 512, GELU; patch tokens as a volume [B, 512, T, 16, 16];
    spatial branch = mean of three depthwise (1,k,k) conv stacks + the volume, k = 3, 5, 7;
    temporal branch = mean of three depthwise (k,1,1) conv stacks + the volume;
    each stack = conv-BN-ReLU-conv-BN-ReLU-conv-BN;
    cross-attention (2 heads) of each branch on the other, over the clip's T*256 tokens;
    mean of the two, GELU; CLS passes through untouched; up 512 -> 1024, GELU; + residual.

The head averages the frames' post-LN CLS features and applies `fc_cls Linear(1024, 2)`.
Module names and parameter layouts are the original's (`nn.MultiheadAttention`'s
`in_proj_weight`, BatchNorm3d buffers), so `sta_best.pth` loads key for key.

One deliberate difference: the original's cross-attention flattens [T, B, HW, C] into a
[T*HW, B, C] sequence with `reshape`, which interleaves the clips of a batch when B > 1. Its
demo scores one clip per batch (B = 1), where that is exact; here every clip attends only to
itself, so a batch gives the B = 1 result for each of its clips.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.nn import functional as F

WIDTH = 1024  # CLIP-L/14; hard-coded in the original's blocks and adapters
HEADS = 16
ADAPTER = 512  # 0.5 * 1024
ADAPTER_HEADS = 2
PATCH = 14
RESOLUTION = 224
FRAMES = 8
LAYERS = {"full": 14, "reduced_2_layers": 2}


class LayerNorm32(nn.LayerNorm):
    """CLIP's LayerNorm that always normalises in float32 (so a half-precision run keeps its
    statistics exact) and returns the input's dtype. Shapes: [..., C] -> [..., C]."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation x * sigmoid(1.702 x), which its weights were trained with."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class DepthwiseStack(nn.Module):
    """Three depthwise Conv3d (same kernel, same padding) with BatchNorm, ReLU between them
    and none after the last: [B, C, T, H, W] -> [B, C, T, H, W]."""

    def __init__(self, channels: int, kernel: tuple[int, int, int]):
        super().__init__()
        pad = tuple(k // 2 for k in kernel)
        for i in (1, 2, 3):
            self.add_module(f"conv{i}", nn.Conv3d(channels, channels, kernel, padding=pad, groups=channels))
            self.add_module(f"bn{i}", nn.BatchNorm3d(channels))

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        return self.bn3(self.conv3(x))


class CrossAttention(nn.Module):
    """The spatial and the temporal branch attend to each other over one clip's tokens.

    Both inputs and outputs are token sequences [B, T*H*W, C]; returns (spatial queried by
    the temporal branch, temporal queried by the spatial branch) as the original names them.
    """

    def __init__(self, dim: int = ADAPTER, heads: int = ADAPTER_HEADS):
        super().__init__()
        self.spatial_to_temporal = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.temporal_to_spatial = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, spatial: Tensor, temporal: Tensor) -> tuple[Tensor, Tensor]:
        s2t = self.spatial_to_temporal(temporal, spatial, spatial, need_weights=False)[0]
        t2s = self.temporal_to_spatial(spatial, temporal, temporal, need_weights=False)[0]
        return s2t, t2s


class StAdapter(nn.Module):
    """The spatiotemporal adapter after each block (the original's `ViT_Adapter`):
    tokens [B*T, 1+H*W, 1024] -> [B*T, 1+H*W, 1024], frames of one clip consecutive."""

    def __init__(self, width: int = WIDTH, hidden: int = ADAPTER):
        super().__init__()
        self.down = nn.Linear(width, hidden)
        for i, k in enumerate((3, 5, 7), start=1):
            self.add_module(f"s_conv{i}", DepthwiseStack(hidden, (1, k, k)))
            self.add_module(f"t_conv{i}", DepthwiseStack(hidden, (k, 1, 1)))
        self.up = nn.Linear(hidden, width)
        self.cross_attention = CrossAttention(hidden)

    def mix(self, volume: Tensor) -> Tensor:
        """Conv branches + cross-attention: [B, C, T, H, W] -> tokens [B, T*H*W, C]."""
        spatial = (self.s_conv1(volume) + self.s_conv2(volume) + self.s_conv3(volume)) / 3 + volume
        temporal = (self.t_conv1(volume) + self.t_conv2(volume) + self.t_conv3(volume)) / 3 + volume
        s2t, t2s = self.cross_attention(_as_tokens(spatial), _as_tokens(temporal))
        return F.gelu((s2t + t2s) / 2)

    def forward(self, x: Tensor, frames: int) -> Tensor:
        bt, n, _ = x.shape
        side = math.isqrt(n - 1)
        h = F.gelu(self.down(x))
        cls, patches = h[:, :1], h[:, 1:]
        # [B*T, H*W, C] -> [B, C, T, H, W] (a view, no copy)
        volume = patches.reshape(bt // frames, frames, side, side, -1).permute(0, 4, 1, 2, 3)
        mixed = self.mix(volume).reshape(bt, n - 1, -1)
        return x + F.gelu(self.up(torch.cat([cls, mixed], dim=1)))


def _as_tokens(volume: Tensor) -> Tensor:
    """[B, C, T, H, W] -> [B, T*H*W, C] (time-major, as the original orders the sequence)."""
    return volume.flatten(2).transpose(1, 2)


class ResidualAttentionBlock(nn.Module):
    """A pre-LN CLIP block followed by the StA adapter: [B*T, N, 1024] -> [B*T, N, 1024]."""

    def __init__(self, width: int = WIDTH, heads: int = HEADS):
        super().__init__()
        self.ln_1 = LayerNorm32(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = LayerNorm32(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(4 * width, width)),
        ]))
        self.Adapter = StAdapter(width)

    def forward(self, x: Tensor, frames: int) -> Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.ln_2(x))
        return self.Adapter(x, frames)


class Transformer(nn.Module):
    """The stack of blocks (`transformer.resblocks.N` in the checkpoint)."""

    def __init__(self, layers: int):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock() for _ in range(layers))

    def forward(self, x: Tensor, frames: int) -> Tensor:
        for block in self.resblocks:
            x = block(x, frames)
        return x


class VisionTransformer(nn.Module):
    """The `backbone` (the original's `ViT_CLIP`): clips [B, T, 3, 224, 224] -> per-frame
    post-LN CLS features [B, T, 1024]. OpenAI CLIP's visual layout without `proj`."""

    def __init__(self, layers: int, frames: int = FRAMES, width: int = WIDTH):
        super().__init__()
        tokens = (RESOLUTION // PATCH) ** 2 + 1
        self.conv1 = nn.Conv2d(3, width, PATCH, stride=PATCH, bias=False)
        self.class_embedding = nn.Parameter(width**-0.5 * torch.randn(width))
        self.positional_embedding = nn.Parameter(width**-0.5 * torch.randn(tokens, width))
        self.temporal_embedding = nn.Parameter(torch.zeros(1, frames, width))
        self.ln_pre = LayerNorm32(width)
        self.transformer = Transformer(layers)
        self.ln_post = LayerNorm32(width)

    def embed(self, x: Tensor) -> Tensor:
        """[B, T, 3, 224, 224] -> tokens [B*T, 257, 1024] with class, position and frame
        embeddings added (before ln_pre)."""
        b, t = x.shape[:2]
        patches = self.conv1(x.flatten(0, 1)).flatten(2).transpose(1, 2)  # [B*T, 256, C]
        cls = self.class_embedding.to(patches.dtype).expand(b * t, 1, -1)
        tokens = torch.cat([cls, patches], dim=1) + self.positional_embedding.to(patches.dtype)
        frame = self.temporal_embedding.to(patches.dtype).unsqueeze(2)  # [1, T, 1, C]
        return (tokens.unflatten(0, (b, t)) + frame).flatten(0, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, t = x.shape[:2]
        if t != self.temporal_embedding.shape[1]:
            raise ValueError(f"StA takes clips of {self.temporal_embedding.shape[1]} frames, got {t}")
        tokens = self.transformer(self.ln_pre(self.embed(x)), t)
        return self.ln_post(tokens[:, 0]).unflatten(0, (b, t))


class ClipHead(nn.Module):
    """The original's `I3DHead` on [B, T, 1024]: average over the frames (its
    AdaptiveAvgPool3d), dropout (identity in eval), `fc_cls` -> logits [B, 2]."""

    def __init__(self, width: int = WIDTH, classes: int = 2):
        super().__init__()
        self.dropout = nn.Dropout(0.5)
        self.fc_cls = nn.Linear(width, classes)

    def forward(self, features: Tensor) -> Tensor:
        return self.fc_cls(self.dropout(features.mean(dim=1)))


class StADetector(nn.Module):
    """`backbone` + `head`, the checkpoint's two prefixes. forward: normalised clips
    [B, 8, 3, 224, 224] -> logits [B, 2] (real, fake), one row per clip."""

    def __init__(self, layers: int):
        super().__init__()
        self.backbone = VisionTransformer(layers)
        self.head = ClipHead()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


def build(variant: str = "full") -> nn.Module:
    """StA4Deepfake's detector ("full": 14 blocks) or the golden's "reduced_2_layers" (the
    same code with 2 blocks, every width unchanged); weights randomly initialised."""
    if variant not in LAYERS:
        raise ValueError(f"sta has no variant {variant!r}; variants: {', '.join(LAYERS)}")
    return StADetector(LAYERS[variant])
