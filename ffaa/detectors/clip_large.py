"""DF40's CLIP-Large detector (`CLIPDetector`, released as `clip_large.pth`).

DF40 takes the vision tower of transformers' `openai/clip-vit-large-patch14` (ViT-L/14: width
1024, 24 pre-LN blocks, 16 heads, MLP 4096 with quick_gelu, LayerNorm eps 1e-5, 224 px -> 257
tokens), uses its `pooler_output` (post_layernorm of the CLS token) as the feature and puts a
single `Linear(1024, 2)` on it. Nothing else: no projection, no CLIP normalisation statistics
(the detector is fed mean = std = 0.5 inputs, done outside).

The tower is transformers' own `CLIPVisionModel`, built from a config so that nothing is
downloaded; its state-dict keys are the 4.x `CLIPModel.vision_model` keys the checkpoint holds
(`embeddings.*`, `pre_layrnorm.*`, `encoder.layers.N.*`, `post_layernorm.*`), and its
`position_ids` buffer is non-persistent, so it never shows up as a key.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn
from transformers import CLIPVisionConfig, CLIPVisionModel


class TowerSize(NamedTuple):
    """The widths that differ between the released tower and the golden's tiny twin."""

    hidden: int
    mlp: int
    layers: int
    heads: int


# "tiny" is the same code with a narrow, shallow tower (the golden's second variant).
SIZES = {"full": TowerSize(1024, 4096, 24, 16), "tiny": TowerSize(64, 256, 2, 4)}
# sdpa differs from the original's eager attention by <= 6e-7 on the logits (fixtures README),
# far inside the 1e-4 tolerance, and is faster and lighter on memory.
ATTENTION = "sdpa"


def vision_config(variant: str = "full") -> CLIPVisionConfig:
    """The ViT-L/14 vision config of `openai/clip-vit-large-patch14` (or its tiny test twin)."""
    if variant not in SIZES:
        raise ValueError(f"clip_large has no variant {variant!r}; variants: {', '.join(SIZES)}")
    size = SIZES[variant]
    return CLIPVisionConfig(
        hidden_size=size.hidden, intermediate_size=size.mlp, num_hidden_layers=size.layers,
        num_attention_heads=size.heads, image_size=224, patch_size=14, num_channels=3,
        hidden_act="quick_gelu", layer_norm_eps=1e-5, attention_dropout=0.0, attn_implementation=ATTENTION,
    )


class CLIPLargeDetector(nn.Module):
    """`backbone` (the CLIP vision tower) and `head` (Linear(width, 2)), the checkpoint's two
    prefixes. forward: normalised faces [B, 3, 224, 224] -> logits [B, 2] (real, fake)."""

    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.backbone = CLIPVisionModel(config)
        self.head = nn.Linear(config.hidden_size, 2)

    def features(self, x: Tensor) -> Tensor:
        """[B, 3, 224, 224] -> post_layernorm(CLS) [B, width], DF40's `pooler_output`."""
        return self.backbone(pixel_values=x).pooler_output

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def build(variant: str = "full") -> nn.Module:
    """DF40's CLIP-Large detector ("full") or the golden's tiny variant ("tiny": width 64,
    2 layers, 4 heads, MLP 256, head Linear(64, 2)); weights randomly initialised."""
    return CLIPLargeDetector(vision_config(variant))



def restore_buffers(net: CLIPLargeDetector) -> None:
    """Fill the tensors the state dict does not carry, after a meta-device build: the tower's
    non-persistent `position_ids` (0 .. tokens - 1)."""
    import torch

    embeddings = (net.backbone.vision_model.embeddings if hasattr(net.backbone, "vision_model")
                  else net.backbone.embeddings)
    tokens = embeddings.position_embedding.weight.shape[0]
    embeddings.register_buffer("position_ids", torch.arange(tokens).expand((1, -1)), persistent=False)
