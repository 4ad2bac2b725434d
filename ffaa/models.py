"""The models ffaa knows by name, as data: FFAA's release, MIDS's encoders and the vision towers
an original LLaVA checkpoint may name without embedding their config.

One place for these facts, so that a new revision, a mirror or a re-upload is one edit and the
CLI's defaults, the converter, MIDS and the error messages cannot drift apart. Plain frozen
dataclasses and no heavy import: the CLI's help texts read this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import PurePath
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class HubModel:
    """A repository on the Hugging Face hub. `revision` None is the hub's main branch; `size` is
    the download as the README states it (for messages that ask a person to fetch it)."""

    repo_id: str
    size: str
    revision: str | None = None

    @property
    def name(self) -> str:
        """The part after the owner, which is also the folder name of a local copy."""
        return self.repo_id.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ClipVision:
    """A published CLIP vision tower and its config (the keyword arguments of transformers'
    `CLIPVisionConfig`), for checkpoints that name the tower but do not embed its config."""

    model: HubModel
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    patch_size: int
    image_size: int
    hidden_act: str
    layer_norm_eps: float
    projection_dim: int

    @property
    def repo_id(self) -> str:
        return self.model.repo_id

    def config(self) -> dict[str, Any]:
        """`CLIPVisionConfig(**tower.config())` rebuilds the tower's config without a download."""
        fields = asdict(self)
        fields.pop("model")
        return fields


@dataclass(frozen=True)
class Release:
    """FFAA's published weights and what they go with.

    model: the LLaVA checkpoint, in the original LLaVA format (converted once on first use);
    mids_file: MIDS's trained weights, a file in the same repository; clip / t5: MIDS's frozen
    encoders (not in `mids_file`); prompt_set: the version of `prompts/inference.yaml` the
    checkpoint was trained with.
    """

    model: HubModel
    dtype: str
    mids_file: str
    mids_size: str
    clip: ClipVision
    t5: HubModel
    prompt_set: str

    @property
    def model_id(self) -> str:
        return self.model.repo_id

    @property
    def revision(self) -> str | None:
        return self.model.revision


CLIP_VIT_L_336 = ClipVision(
    HubModel("openai/clip-vit-large-patch14-336", "1.7 GB"),
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    patch_size=14,
    image_size=336,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=768,
)
T5_BASE = HubModel("t5-base", "0.9 GB")

# The text model FFAA fine-tuned: Mistral-7B-v0.1 (sliding window off, as in FFAA's config), and
# t5-base's encoder as MIDS uses it: the keyword arguments of transformers' configs, for models
# of the real shape built without a download (benchmarks).
MISTRAL_7B_SHAPE: Mapping[str, Any] = MappingProxyType(dict(
    hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
    head_dim=128, max_position_embeddings=32768, rope_theta=1e6, sliding_window=None, rms_norm_eps=1e-5))
T5_BASE_SHAPE: Mapping[str, Any] = MappingProxyType(dict(
    vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0,
    layer_norm_epsilon=1e-6, feed_forward_proj="relu", is_encoder_decoder=False, use_cache=False,
    pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))

FFAA = Release(
    model=HubModel("thu-huangzc/ffaa-mistral-7b", "15 GB"),
    dtype="fp16",
    mids_file="mids.pth",
    mids_size="216 MB",
    clip=CLIP_VIT_L_336,
    t5=T5_BASE,
    prompt_set="ffaa-v1",
)

# Vision towers by hub id; read-only so that no caller can change what another one sees.
KNOWN_VISION_TOWERS: Mapping[str, ClipVision] = MappingProxyType({CLIP_VIT_L_336.repo_id: CLIP_VIT_L_336})


def known_vision_tower(tower: str) -> ClipVision | None:
    """The known tower that `tower` names: its hub id, or a local copy's folder whose name is
    the repository's (FFAA's config says `models/clip-vit-large-patch14-336`)."""
    if tower in KNOWN_VISION_TOWERS:
        return KNOWN_VISION_TOWERS[tower]
    name = PurePath(tower).name
    return next((t for t in KNOWN_VISION_TOWERS.values() if t.model.name == name), None)
