"""The MIDS network: FFAA's image-text matching classifier, in our own code.

Shapes used below: B images, T text rows (candidate answers), L padded text length, P+1 CLIP
tokens (patches + CLS at index 0), d the MIDS width (= T5 `d_model`), C the CLIP width.

    text  --T5 encoder-------------------------------> [T, L, d]
    image --CLIP vision, hidden_states[-1] and [-2]--> 2 x [B, P+1, C] --Linear--> 2 x [B, P+1, d]
    for k in 1, 2:  text->image and image->text cross-attention, each pooled by a learnable query
    [cls1, tii1, itt1, cls2, tii2, itt2] -> 3 self-attention blocks -> flatten -> Linear -> 4 logits

The four classes are `2 * image_is_fake + answer_claims_fake`. Parameter names follow FFAA's
`state_dict` under transformers 5 naming (`image_encoder.<rest>`, no `vision_model.` level), so
FFAA's `mids.pth` loads by name after `normalise_key`.

Two conventions matter for parity with FFAA and are easy to get wrong: the cross-attention has
no residual while the self-attention blocks do, and padded text positions take part in the fusion
(no padding mask) - see `MidsNet.logits_per_row` for how several faces share one forward pass
without changing what each face sees.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ffaa.models import FFAA

FFAA_CLIP = FFAA.clip.repo_id
FFAA_T5 = FFAA.t5.repo_id
FFAA_HEADS = 8
NUM_CLASSES = 4
# Fused tokens fed to the classifier: cls1, tii1, itt1, cls2, tii2, itt2.
NUM_FUSED_TOKENS = 6

# Small encoder configs for tests and examples (random weights only).
TINY_CLIP: dict[str, Any] = {
    "hidden_size": 32, "intermediate_size": 64, "projection_dim": 32, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_channels": 3, "image_size": 56, "patch_size": 14,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
}
TINY_T5: dict[str, Any] = {
    "vocab_size": 384, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4,
    "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "dropout_rate": 0.0, "layer_norm_epsilon": 1e-6, "feed_forward_proj": "relu",
    "is_encoder_decoder": False, "use_cache": False, "pad_token_id": 0, "eos_token_id": 1,
    "decoder_start_token_id": 0,
}


@dataclass
class MidsConfig:
    """What a MIDS network is made of.

    `clip` and `t5` are either config dicts (keyword arguments of `CLIPVisionConfig` /
    `T5Config`) or a model id / local folder holding the pretrained encoder. `dim` must equal the
    T5 width, because FFAA feeds T5's hidden states to the fusion without a projection; `None`
    takes it from the T5 config. `heads` is FFAA's fixed 8.
    """

    clip: dict[str, Any] | str = FFAA_CLIP
    t5: dict[str, Any] | str = FFAA_T5
    dim: int | None = None
    heads: int = FFAA_HEADS
    attn_implementation: str = "sdpa"

    @classmethod
    def ffaa(cls) -> MidsConfig:
        """FFAA's released setup: CLIP ViT-L/14-336, T5-base, dim 768, 8 heads."""
        return cls(clip=FFAA_CLIP, t5=FFAA_T5, dim=768)

    @classmethod
    def tiny(cls) -> MidsConfig:
        """A few-hundred-kB random network for tests (dim 32, 56-px images, 4x4 patch grid)."""
        return cls(clip=dict(TINY_CLIP), t5=dict(TINY_T5), dim=TINY_T5["d_model"])

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MidsConfig:
        return cls(**json.loads(text))


def _clip_config(spec: dict[str, Any] | str, attn: str):
    from transformers import CLIPVisionConfig

    if isinstance(spec, str):
        return CLIPVisionConfig.from_pretrained(spec, attn_implementation=attn)
    return CLIPVisionConfig(**_plain(spec), attn_implementation=attn)


def _t5_config(spec: dict[str, Any] | str, attn: str):
    from transformers import T5Config

    if isinstance(spec, str):
        return T5Config.from_pretrained(spec, attn_implementation=attn)
    return T5Config(**_plain(spec), attn_implementation=attn)


def _plain(spec: dict[str, Any]) -> dict[str, Any]:
    """A saved config dict without the bookkeeping keys a fresh config sets itself."""
    skip = {"attn_implementation", "_attn_implementation", "transformers_version", "architectures", "model_type"}
    return {k: v for k, v in spec.items() if k not in skip}


class AttentionBlock(nn.Module):
    """`LayerNorm(MHA(q, kv, kv) [+ q])`. FFAA's cross-attention has no residual; its
    self-attention blocks add one. Both name their parts `cross_attn` and `norm`.

    q: [N, Lq, d], kv: [N, Lk, d], key_padding_mask: [N, Lk] bool (True = ignore) or None.
    Returns [N, Lq, d].
    """

    def __init__(self, dim: int, heads: int, residual: bool):
        super().__init__()
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.residual = residual

    def forward(self, q: Tensor, kv: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        out, _ = self.cross_attn(q, kv, kv, key_padding_mask=key_padding_mask, need_weights=False)
        return self.norm(out + q if self.residual else out)


class FusionBlock(nn.Module):
    """Cross-attention between text and each of the two CLIP layers, pooled by learnable queries.

    For layer k: `tii_k` (queries = text tokens, keys = image tokens) and `itt_k` (queries =
    image tokens, keys = text tokens), each reduced to one token by its own learnable query.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        for name in ("lr_tii1", "lr_tii2", "lr_itt1", "lr_itt2"):
            self.register_parameter(name, nn.Parameter(torch.empty(1, dim)))
        for name in ("cr_tii1", "cr_tii2", "cr_itt1", "cr_itt2",
                     "cr_tii1_lr", "cr_tii2_lr", "cr_itt1_lr", "cr_itt2_lr"):
            self.add_module(name, AttentionBlock(dim, heads, residual=False))
        self.reset_queries()

    def reset_queries(self) -> None:
        for name in ("lr_tii1", "lr_tii2", "lr_itt1", "lr_itt2"):
            nn.init.trunc_normal_(getattr(self, name), std=0.02)

    def layer(self, k: int, text: Tensor, image: Tensor, text_pad: Tensor | None,
              record: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Fuse text [T, L, d] with CLIP layer k's tokens [T, P+1, d] -> two [T, 1, d] tokens.

        `text_pad` [T, L] masks text positions beyond the row's own group padding (see
        `MidsNet.logits_per_row`); None reproduces FFAA exactly.
        """
        n = text.shape[0]
        tii = getattr(self, f"cr_tii{k}")(text, image)
        itt = getattr(self, f"cr_itt{k}")(image, text, key_padding_mask=text_pad)
        q_tii = getattr(self, f"lr_tii{k}").unsqueeze(0).expand(n, -1, -1)
        q_itt = getattr(self, f"lr_itt{k}").unsqueeze(0).expand(n, -1, -1)
        tii_f = getattr(self, f"cr_tii{k}_lr")(q_tii, tii, key_padding_mask=text_pad)
        itt_f = getattr(self, f"cr_itt{k}_lr")(q_itt, itt)
        if record is not None:
            record.update({f"fusion_tii{k}": tii, f"fusion_itt{k}": itt,
                           f"fusion_tii{k}_feature": tii_f, f"fusion_itt{k}_feature": itt_f})
        return tii_f, itt_f


class MidsNet(nn.Module):
    """FFAA's MIDS. Build it with `build_random` or `build_from_encoders`, not directly."""

    def __init__(self, config: MidsConfig, image_encoder: nn.Module, text_encoder: nn.Module):
        super().__init__()
        clip_width = image_encoder.config.hidden_size
        dim = text_encoder.config.d_model
        if config.dim is not None and config.dim != dim:
            raise ValueError(f"MIDS dim {config.dim} differs from the T5 width {dim}; "
                             "FFAA feeds T5 states to the fusion unprojected, so they must match")
        if dim % config.heads:
            raise ValueError(f"MIDS dim {dim} is not divisible by {config.heads} heads")
        self.config = config
        self.dim = dim
        # Registration order = FFAA's state_dict order.
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.projector_layer1 = nn.Linear(clip_width, dim)
        self.projector_layer2 = nn.Linear(clip_width, dim)
        self.cls_token_layer1 = nn.Linear(dim, dim)
        self.cls_token_layer2 = nn.Linear(dim, dim)
        self.fusion_block = FusionBlock(dim, config.heads)
        self.se_attn = nn.ModuleList(AttentionBlock(dim, config.heads, residual=True) for _ in range(3))
        self.classifier = nn.Linear(NUM_FUSED_TOKENS * dim, NUM_CLASSES)
        self.reset_head()

    def reset_head(self) -> None:
        """Random head: xavier-normal Linear weights and zero biases (FFAA's training init)."""
        for lin in (self.projector_layer1, self.projector_layer2, self.cls_token_layer1,
                    self.cls_token_layer2, self.classifier):
            nn.init.xavier_normal_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.fusion_block.reset_queries()

    # --- the two encoders -------------------------------------------------------------------

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """T5 encoder states [T, L, d], final norm included, padded positions kept."""
        return self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def encode_image(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        """CLIP's last two encoder-layer outputs, each [B, P+1, C], CLS at index 0.

        These are raw layer outputs: no post_layernorm.
        """
        out = self.image_encoder(pixel_values=pixel_values, output_hidden_states=True)
        return out.hidden_states[-1], out.hidden_states[-2]

    # --- forward ----------------------------------------------------------------------------

    def forward(self, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """FFAA's call: logits [B, S, 4] for images [B, 3, H, W] and text rows [B*S, L].

        Text rows are image-major (row = image * S + answer), S = rows / images.
        """
        b, t = pixel_values.shape[0], input_ids.shape[0]
        if b == 0 or t % b:
            raise ValueError(f"{t} text rows cannot be split evenly over {b} images")
        s = t // b
        image_index = torch.arange(b, device=input_ids.device).repeat_interleave(s)
        return self.logits_per_row(pixel_values, input_ids, attention_mask, image_index).view(b, s, NUM_CLASSES)

    def logits_per_row(self, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor,
                       image_index: Tensor, record: dict[str, Tensor] | None = None) -> Tensor:
        """Logits [T, 4] for text rows [T, L] paired with images [B, 3, H, W] by `image_index` [T].

        Each image is encoded once and its features are gathered for its rows, so faces with
        different numbers of candidates can share one forward pass.

        Padding: FFAA tokenises one image's answers together, so the text positions MIDS sees for
        an image run up to the longest of *its* answers, pads included (the fusion uses no mask).
        When rows of several images are padded to a common length, the extra positions beyond an
        image's own longest answer are masked out of the fusion; the result then equals scoring
        each image alone. If no row has such extra positions, no mask is used at all.

        `record`, if given, receives the live intermediate tensors by name (for debugging and
        Grad-CAM).
        """
        text = self.encode_text(input_ids, attention_mask)
        layer1, layer2 = self.encode_image(pixel_values)
        img1, img2 = self.projector_layer1(layer1), self.projector_layer2(layer2)
        cls1 = self.cls_token_layer1(img1[:, 0:1])
        cls2 = self.cls_token_layer2(img2[:, 0:1])
        if record is not None:
            record.update({"t5_last_hidden_state": text, "clip_hidden_states_m1": layer1,
                           "clip_hidden_states_m2": layer2, "proj_layer1": img1, "proj_layer2": img2,
                           "cls_token1": cls1, "cls_token2": cls2})
        text_pad = group_padding_mask(attention_mask, image_index, pixel_values.shape[0])
        tokens = []
        for k, (img, cls) in enumerate(((img1, cls1), (img2, cls2)), start=1):
            tii_f, itt_f = self.fusion_block.layer(k, text, img[image_index], text_pad, record)
            tokens += [cls[image_index], tii_f, itt_f]
        x = torch.cat(tokens, dim=1)  # [T, 6, d]
        if record is not None:
            record["fused_tokens_before_self_attn"] = x
        for i, block in enumerate(self.se_attn):
            x = block(x, x)
            if record is not None:
                record[f"self_attn_{i}_out"] = x
        return self.classifier(x.flatten(1))


def group_padding_mask(attention_mask: Tensor, image_index: Tensor, num_images: int) -> Tensor | None:
    """[T, L] bool, True at positions beyond the longest answer of the row's own image.

    None when every image's longest answer fills the whole padded length (FFAA's exact case).
    """
    lengths = attention_mask.sum(dim=1)
    longest = torch.zeros(num_images, dtype=lengths.dtype, device=lengths.device)
    longest = longest.scatter_reduce(0, image_index, lengths, reduce="amax", include_self=True)
    limit = longest[image_index]
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    mask = positions.unsqueeze(0) >= limit.unsqueeze(1)
    return mask if bool(mask.any()) else None


# --- parameter names ---------------------------------------------------------------------------

def normalise_key(name: str) -> str:
    """FFAA / DeepSpeed / transformers-4 name -> our name.

    Drops leading `module.` wrappers and the `vision_model.` level transformers 4 had inside
    `CLIPVisionModel`.
    """
    while name.startswith("module."):
        name = name[len("module."):]
    prefix = "image_encoder.vision_model."
    if name.startswith(prefix):
        name = "image_encoder." + name[len(prefix):]
    return name


def ffaa_trainable(name: str, clip_layers: int) -> bool:
    """Whether FFAA trains (and so saves in `mids.pth`) the parameter `name`.

    T5 is frozen; CLIP is frozen except its last two encoder layers; the head is trained.
    """
    if name.startswith("text_encoder."):
        return False
    if name.startswith("image_encoder."):
        last_two = (f"image_encoder.encoder.layers.{clip_layers - 2}.",
                    f"image_encoder.encoder.layers.{clip_layers - 1}.")
        return name.startswith(last_two)
    return True


def checkpoint_keys(net: MidsNet) -> list[str]:
    """The names a `mids.pth` holds for this network, in state_dict order (112 for FFAA's)."""
    layers = net.image_encoder.config.num_hidden_layers
    return [k for k in net.state_dict() if ffaa_trainable(k, layers)]


def freeze_like_ffaa(net: MidsNet) -> list[str]:
    """Set `requires_grad` as FFAA trains; returns the trainable names."""
    layers = net.image_encoder.config.num_hidden_layers
    names = []
    for name, param in net.named_parameters():
        param.requires_grad_(ffaa_trainable(name, layers))
        if param.requires_grad:
            names.append(name)
    return names


# --- builders ----------------------------------------------------------------------------------

# The options that give the encoders' sources, named when one is missing: the decider's, which
# every command that analyses takes; `ffaa mids train-mids` passes its own (--clip, --t5).
DECIDER_FLAGS = ("--mids-clip", "--mids-t5")
TRAINING_FLAGS = ("--clip", "--t5")


def build_random(config: MidsConfig, seed: int | None = None) -> MidsNet:
    """A MIDS with random encoders and head, from config dicts (or the configs of model folders)."""
    from transformers import CLIPVisionModel, T5EncoderModel

    if seed is not None:
        torch.manual_seed(seed)
    clip = CLIPVisionModel(_clip_config(config.clip, config.attn_implementation))
    t5 = T5EncoderModel(_t5_config(config.t5, config.attn_implementation))
    return MidsNet(config, clip, t5).float().eval()


def build_from_encoders(clip: str | Path = FFAA_CLIP, t5: str | Path = FFAA_T5, *,
                        heads: int = FFAA_HEADS, attn_implementation: str = "sdpa",
                        local_files_only: bool = False, flags: tuple[str, str] = DECIDER_FLAGS) -> MidsNet:
    """A MIDS whose encoders come from pretrained checkpoints (a model id or a local folder);
    the head is random until a `mids.pth` is overlaid (`ffaa.mids.checkpoint.overlay`).

    Raises `WeightsNotFoundError` when an encoder cannot be found or downloaded; its message
    names `flags`, the command's options that give the CLIP and T5 sources.
    """
    from transformers import CLIPVisionModel, T5EncoderModel

    from ffaa.errors import WeightsNotFoundError

    kwargs = {"attn_implementation": attn_implementation, "dtype": torch.float32,
              "local_files_only": local_files_only}
    try:
        image_encoder = CLIPVisionModel.from_pretrained(str(clip), **kwargs)
    except OSError as exc:
        raise WeightsNotFoundError(_encoder_missing("image", str(clip), flags[0], exc)) from exc
    try:
        text_encoder = T5EncoderModel.from_pretrained(str(t5), **kwargs)
    except OSError as exc:
        raise WeightsNotFoundError(_encoder_missing("text", str(t5), flags[1], exc)) from exc
    config = MidsConfig(clip=str(clip), t5=str(t5), dim=text_encoder.config.d_model, heads=heads,
                        attn_implementation=attn_implementation)
    return MidsNet(config, image_encoder, text_encoder).float().eval()


def _encoder_missing(kind: str, source: str, flag: str, exc: OSError) -> str:
    """One line: which encoder, why (the first line of the hub client's message), and the fix."""
    why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return (f"MIDS {kind} encoder {source!r} is not available ({why}). Download it where the hub is "
            f"reachable (`hf download {source}`) into the Hugging Face cache (or HF_HOME), or give "
            f"{flag} DIR with a local copy")


def encoder_configs(net: MidsNet) -> dict[str, Mapping[str, Any]]:
    """The two encoder configs as plain dicts (to rebuild the network without its sources)."""
    return {"clip": net.image_encoder.config.to_diff_dict(), "t5": net.text_encoder.config.to_diff_dict()}
