"""Convert an original-format LLaVA checkpoint (FFAA's release) into transformers' LLaVA layout.

FFAA's checkpoint (`thu-huangzc/ffaa-mistral-7b`) was saved by the original LLaVA code: one
flat config with `mm_*` fields and tensors named `model.mm_projector.*`,
`model.vision_tower.vision_tower.vision_model.*`. transformers runs the same network as
`LlavaForConditionalGeneration`, but with other tensor names, a nested config, an explicit
`<image>` token in the vocabulary and a processor that pads, resizes and expands `<image>` into
576 placeholders. This module does that translation once, checks everything it cannot
translate (and refuses it with a `CheckpointError` naming the problem), and caches the result.

What makes the converted model give the original logits (verified on the golden fixture):
- the vision tower comes from the checkpoint itself (it was fine-tuned), not from openai's CLIP;
- `rope_theta`, `sliding_window` (null) and `rms_norm_eps` are copied, never defaulted;
- the tokenizer keeps `legacy: true`, so the text after `<image>` gets its own `▁` prefix;
- images are padded to a square with the CLIP mean colour before the resize (`do_pad=True`);
- the vocabulary is padded for `<image>`/`<pad>` with zero `lm_head` rows, which are also
  suppressed in the saved generation config, so greedy decoding cannot pick them.

Heavy libraries (torch, transformers, safetensors) are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError, WeightsNotFoundError, one_line
from ..jsonio import read_json
from ..lazy import require

if TYPE_CHECKING:
    import torch
    from transformers import CLIPVisionConfig, PreTrainedConfig, PreTrainedTokenizerBase

# Bump when the converted layout changes; caches written by another format are rebuilt.
CONVERSION_FORMAT = 1
MARKER_FILE = "ffaa_conversion.json"
IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
# llava-hf pads the vocabulary to a multiple of 64 (32000 -> 32064) for matmul-friendly shapes.
VOCAB_MULTIPLE = 64

# Original `model_type` / `architectures` -> transformers text family. `llava_llama` is what
# FFAA's LoRA merge may have written for its Mistral fine-tune: the original code then ran it as
# a Llama, which is the same network when `sliding_window` is null.
_MODEL_TYPES = {"llava_mistral": "mistral", "llava_llama": "llama", "llava": "llama"}
_ARCHITECTURES = {"LlavaMistralForCausalLM": "mistral", "LlavaLlamaForCausalLM": "llama"}

# Published CLIP configs that original checkpoints name by hub id but do not embed.
_KNOWN_CLIP = {
    "openai/clip-vit-large-patch14-336": dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        patch_size=14,
        image_size=336,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=768,
    ),
}

# Original tensor-name prefixes. Order matters: the generic `model.` rule comes last.
_ORIG_VISION = "model.vision_tower.vision_tower.vision_model."
_ORIG_PROJ_1 = "model.mm_projector.0."
_ORIG_PROJ_2 = "model.mm_projector.2."
_ORIG_LM_HEAD = "lm_head."
_ORIG_TEXT = "model."
# Tensors of the original model that transformers' Llava has no counterpart for (1.6 `unpad`).
_DROPPED = ("model.image_newline",)


# --------------------------------------------------------------------------------------------
# Small shared helpers (also used by tiny.py)
# --------------------------------------------------------------------------------------------


def ffaa_cache_root() -> Path:
    """ffaa's cache folder: `$FFAA_CACHE`, else `~/.cache/ffaa`."""
    env = os.environ.get("FFAA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ffaa"


def padded_vocab_size(n_tokens: int) -> int:
    """The embedding rows for `n_tokens` real tokens, rounded up to a multiple of 64."""
    return -(-n_tokens // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def add_llava_tokens(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """Add `<image>` and `<pad>` as special tokens; return their ids (32000, 32001 for Mistral).

    `<image>` must be one atomic token so the processor can expand it; `<pad>` gives batched
    generation a padding id that is neither `<unk>` nor `</s>`.
    """
    from tokenizers import AddedToken

    tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    tokenizer.add_special_tokens({"pad_token": AddedToken(PAD_TOKEN, special=True, normalized=False)})
    ids = tokenizer.convert_tokens_to_ids([IMAGE_TOKEN, PAD_TOKEN])
    return int(ids[0]), int(ids[1])


def vicuna_chat_template() -> str:
    """The Vicuna "v1" chat template FFAA was trained with (from `prompts/`)."""
    from ..prompts import load_prompt_set

    return load_prompt_set().chat_template


def save_processor(processor: Any, dst: Path, *, legacy: bool, probe: str) -> None:
    """Save `processor` into `dst` and check that its tokenizer reloads identically.

    transformers 5 does not write the tokenizer's `legacy` flag, and a Llama tokenizer reloaded
    without it prefixes only the first chunk with `▁`: the text after `<image>` then loses a
    token and every later position shifts. We write the flag (and the padding side, also not
    always saved) ourselves and verify on `probe`.
    """
    processor.save_pretrained(str(dst))
    config_path = dst / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["legacy"] = legacy
    config["padding_side"] = processor.tokenizer.padding_side
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    transformers = require("transformers", "torch", "converting checkpoints")
    reloaded = transformers.AutoTokenizer.from_pretrained(str(dst))
    want, got = processor.tokenizer(probe).input_ids, reloaded(probe).input_ids
    if want != got:
        raise CheckpointError(
            f"the saved tokenizer in {dst} does not reload identically: {probe!r} gives "
            f"{got[:12]}... instead of {want[:12]}..."
        )


def build_atomically(
    final: Path, build: Callable[[Path], Any], done: Callable[[Path], bool] | None = None
) -> Path:
    """Run `build(tmp)` in a fresh folder beside `final`, then rename it to `final`.

    A conversion interrupted at any point (error, Ctrl-C) leaves no folder named `final`, so a
    half-written cache can never be mistaken for a finished one. Leftovers of a killed process
    are hidden `.partial-*` folders, removed on the next build of the same name. If another
    process finished `final` meanwhile (`done(final)` is true), its result is kept and ours
    dropped, so a folder someone may already be loading is never swapped out.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(final)
    tmp = final.parent / f".partial-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        build(tmp)
        if done is not None and done(final):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`, moving an existing `dst` out of the way first."""
    old = None
    if dst.exists():
        old = dst.parent / f".old-{dst.name}-{uuid.uuid4().hex[:8]}"
        dst.rename(old)
    src.rename(dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_stale_partials(final: Path) -> None:
    """Delete `.partial-<name>-<pid>-*` folders whose process is gone (killed conversions)."""
    pattern = re.compile(rf"^\.partial-{re.escape(final.name)}-(\d+)-[0-9a-f]{{8}}$")
    for entry in final.parent.iterdir():
        match = pattern.match(entry.name)
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path, expect=dict, error=CheckpointError, unreadable="cannot read {path}: {exc}",
                     wrong_type="{path}: expected a JSON object")


# --------------------------------------------------------------------------------------------
# Reading and checking the original config
# --------------------------------------------------------------------------------------------


def is_original_llava_checkpoint(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a folder holding an original-format LLaVA config (not llava-hf).

    Original configs are flat, name a llava model type or architecture and carry `mm_*` fields;
    transformers' own LLaVA configs nest `text_config`/`vision_config` instead.
    """
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        return False
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if not isinstance(config, dict) or "text_config" in config:
        return False
    named = config.get("model_type") in _MODEL_TYPES or any(
        a in _ARCHITECTURES for a in config.get("architectures") or ()
    )
    has_mm = any(k in config for k in ("mm_projector_type", "mm_vision_tower", "mm_hidden_size"))
    return named and has_mm


@dataclass(frozen=True)
class LlavaSettings:
    """The original config's multimodal fields, checked and translated to transformers terms."""

    text_family: str  # "mistral" or "llama"
    vision_tower: str  # mm_vision_tower: a hub id or a folder
    mm_hidden_size: int
    feature_layer: int  # mm_vision_select_layer -> vision_feature_layer
    select_strategy: str  # "default" drops CLS (patch), "full" keeps it (cls_patch)
    pad_to_square: bool  # image_aspect_ratio "pad"


def read_llava_settings(config: Mapping[str, Any], where: str) -> LlavaSettings:
    """Check every original field that changes the computation; refuse what we cannot map."""
    _refuse_unsupported(config, where)
    strategy = {"patch": "default", "cls_patch": "full"}.get(config.get("mm_vision_select_feature", "patch"))
    if strategy is None:
        raise CheckpointError(
            f"{where}: mm_vision_select_feature={config['mm_vision_select_feature']!r} is not supported "
            "(only 'patch' and 'cls_patch')"
        )
    for key in ("mm_vision_tower", "mm_hidden_size"):
        if key not in config:
            raise CheckpointError(f"{where}: missing {key!r}, needed to rebuild the vision tower")
    return LlavaSettings(
        text_family=_text_family(config, where),
        vision_tower=str(config["mm_vision_tower"]),
        mm_hidden_size=int(config["mm_hidden_size"]),
        feature_layer=int(config.get("mm_vision_select_layer", -2)),
        select_strategy=strategy,
        pad_to_square=config.get("image_aspect_ratio") == "pad",
    )


def _refuse_unsupported(config: Mapping[str, Any], where: str) -> None:
    """Raise on settings that transformers' plain Llava cannot reproduce."""
    aspect = config.get("image_aspect_ratio")
    if aspect not in (None, "pad", "square"):
        raise CheckpointError(
            f"{where}: image_aspect_ratio={aspect!r} is not supported: only 'pad' (one padded view, "
            "FFAA's setting) or 'square' can be converted to LlavaForConditionalGeneration; "
            "AnyRes checkpoints need LLaVA-NeXT and are not handled by this converter"
        )
    merge = config.get("mm_patch_merge_type", "flat")
    if merge != "flat":
        raise CheckpointError(
            f"{where}: mm_patch_merge_type={merge!r} is not supported: only 'flat' (spatial/unpad "
            "merging belongs to LLaVA-NeXT AnyRes)"
        )
    projector = config.get("mm_projector_type", "linear")
    if projector != "mlp2x_gelu":
        raise CheckpointError(
            f"{where}: mm_projector_type={projector!r} is not supported: only 'mlp2x_gelu' maps "
            "onto transformers' LlavaMultiModalProjector (Linear, GELU, Linear)"
        )
    for flag in ("mm_use_im_start_end", "mm_use_im_patch_token"):
        if config.get(flag):
            raise CheckpointError(
                f"{where}: {flag}=true is not supported: it adds image marker tokens that "
                "transformers' Llava processor does not insert"
            )
    if config.get("mm_resampler_type"):
        raise CheckpointError(f"{where}: mm_resampler_type={config['mm_resampler_type']!r} is not supported")
    if config.get("tie_word_embeddings"):
        raise CheckpointError(f"{where}: tie_word_embeddings=true is not supported (LLaVA's models are untied)")
    if config.get("rope_scaling"):
        raise CheckpointError(f"{where}: rope_scaling={config['rope_scaling']!r} is not supported")


def _text_family(config: Mapping[str, Any], where: str) -> str:
    family = _MODEL_TYPES.get(config.get("model_type", ""))
    for arch in config.get("architectures") or ():
        family = family or _ARCHITECTURES.get(arch)
    if family is None:
        raise CheckpointError(
            f"{where}: model_type={config.get('model_type')!r} / architectures="
            f"{config.get('architectures')} is not an original LLaVA checkpoint "
            f"(expected one of {sorted(_MODEL_TYPES)} or {sorted(_ARCHITECTURES)})"
        )
    return family


def text_config_from_original(
    config: Mapping[str, Any], family: str, vocab_size: int, pad_token_id: int
) -> PreTrainedConfig:
    """A Mistral or Llama config with every field copied from the original, never defaulted.

    The transformers defaults differ from Mistral-7B-v0.2's (rope_theta 1e4 vs 1e6, a 4096
    sliding window vs none) and each of those changes the logits by O(1).
    """
    transformers = require("transformers", "torch", "converting checkpoints")
    needed = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "rms_norm_eps")
    absent = [k for k in needed if k not in config]
    if absent:
        raise CheckpointError(f"config.json lacks {absent}, needed to rebuild the language model")
    common = dict(
        vocab_size=vocab_size,
        hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"],
        num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=config["num_attention_heads"],
        num_key_value_heads=config.get("num_key_value_heads", config["num_attention_heads"]),
        hidden_act=config.get("hidden_act", "silu"),
        max_position_embeddings=config.get("max_position_embeddings", 4096),
        rms_norm_eps=config["rms_norm_eps"],
        rope_theta=config.get("rope_theta", 10000.0),
        attention_dropout=config.get("attention_dropout", 0.0),
        tie_word_embeddings=False,
        bos_token_id=config.get("bos_token_id", 1),
        eos_token_id=config.get("eos_token_id", 2),
        pad_token_id=pad_token_id,
    )
    if "head_dim" in config:
        common["head_dim"] = config["head_dim"]
    if family == "mistral":
        return transformers.MistralConfig(sliding_window=config.get("sliding_window"), **common)
    return transformers.LlamaConfig(
        attention_bias=bool(config.get("attention_bias", False)),
        mlp_bias=bool(config.get("mlp_bias", False)),
        **common,
    )


# --------------------------------------------------------------------------------------------
# The CLIP vision config (the original config only names the tower)
# --------------------------------------------------------------------------------------------


def resolve_vision_config(
    src: Path, tower: str, vision_config: CLIPVisionConfig | str | os.PathLike[str] | None
) -> tuple[CLIPVisionConfig, Path | None]:
    """The CLIP config of the tower, and the CLIP folder it came from (None for a built-in).

    Order: the caller's `vision_config`; `mm_vision_tower` as a folder (absolute, or relative
    to the checkpoint folder or to its parent, where the original code ran from); a published
    config for a known hub id.
    """
    transformers = require("transformers", "torch", "converting checkpoints")
    if isinstance(vision_config, transformers.CLIPVisionConfig):
        return vision_config, None
    if vision_config is not None:
        candidates = [Path(vision_config).expanduser()]
    elif Path(tower).is_absolute():
        candidates = [Path(tower)]
    else:
        candidates = [src / tower, src.parent / tower]
    for folder in candidates:
        if (folder / "config.json").is_file():
            return transformers.CLIPVisionConfig.from_pretrained(str(folder)), folder
    if vision_config is not None:
        raise CheckpointError(f"vision_config folder {vision_config} has no config.json")
    known = _KNOWN_CLIP.get(tower) or _KNOWN_CLIP.get(_known_by_basename(tower), None)
    if known is None:
        raise CheckpointError(
            f"mm_vision_tower={tower!r} is neither a local CLIP folder nor a known CLIP "
            f"({', '.join(_KNOWN_CLIP)}); pass vision_config=<folder with its config.json>"
        )
    return transformers.CLIPVisionConfig(**known), None


def _known_by_basename(tower: str) -> str:
    """Map e.g. `models/clip-vit-large-patch14-336` (FFAA's local copy) to its hub id."""
    name = Path(tower).name
    return next((hub_id for hub_id in _KNOWN_CLIP if hub_id.split("/")[-1] == name), "")


def check_vision_shapes(
    vision: CLIPVisionConfig, shapes: Mapping[str, tuple[int, ...]], mm_hidden: int
) -> None:
    """Cross-check the CLIP config against the checkpoint's tower tensors; raise on mismatch.

    The config comes from outside the checkpoint (a folder or a built-in table), so a wrong one
    must not slip through: width, patch, image size, MLP width and depth are all in the shapes.
    """
    patch = shapes.get(_ORIG_VISION + "embeddings.patch_embedding.weight")  # [hidden, 3, p, p]
    pos = shapes.get(_ORIG_VISION + "embeddings.position_embedding.weight")  # [(S/p)^2 + 1, hidden]
    fc1 = shapes.get(_ORIG_VISION + "encoder.layers.0.mlp.fc1.weight")  # [intermediate, hidden]
    if patch is None or pos is None or fc1 is None:
        raise CheckpointError(
            "the checkpoint has no vision tower tensors "
            f"({_ORIG_VISION}embeddings.*, encoder.layers.*): converting a checkpoint whose CLIP "
            "was not saved with it is not supported"
        )
    layer_key = re.compile(re.escape(_ORIG_VISION) + r"encoder\.layers\.(\d+)\.")
    layers = {m.group(1) for k in shapes if (m := layer_key.match(k))}
    found = dict(
        hidden_size=patch[0],
        patch_size=patch[-1],
        image_size=patch[-1] * round((pos[0] - 1) ** 0.5),
        intermediate_size=fc1[0],
        num_hidden_layers=len(layers),
    )
    wrong = {k: (getattr(vision, k), v) for k, v in found.items() if getattr(vision, k) != v}
    if wrong:
        detail = ", ".join(f"{k}: config {c} vs tensors {t}" for k, (c, t) in wrong.items())
        raise CheckpointError(f"the CLIP config does not match the checkpoint's vision tower ({detail})")
    if mm_hidden != vision.hidden_size:
        raise CheckpointError(
            f"mm_hidden_size={mm_hidden} but the vision tower is {vision.hidden_size} wide"
        )


# --------------------------------------------------------------------------------------------
# Tensors: reading, renaming, checking
# --------------------------------------------------------------------------------------------


def weight_files(src: Path) -> list[Path]:
    """The checkpoint's weight shards: safetensors if any, else pytorch `.bin` files."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = src / index_name
        if index.is_file():
            names = sorted(set(_read_json(index).get("weight_map", {}).values()))
            missing = [n for n in names if not (src / n).is_file()]
            if missing:
                raise CheckpointError(f"{index} lists {len(missing)} missing shard(s): {missing[:3]}")
            return [src / n for n in names]
    files = sorted(src.glob("*.safetensors")) or sorted(src.glob("pytorch_model*.bin"))
    if not files:
        raise CheckpointError(f"{src} has no weights (*.safetensors or pytorch_model*.bin)")
    return files


def load_original_weights(src: Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint by original name. `.bin` shards load with weights_only."""
    torch = require("torch", "torch", "converting checkpoints")
    safetensors_torch = require("safetensors.torch", "torch", "converting checkpoints")
    weights: dict[str, torch.Tensor] = {}
    for path in weight_files(src):
        try:
            if path.suffix == ".safetensors":
                shard = safetensors_torch.load_file(str(path))
            else:
                shard = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # corrupt, truncated, or a pickle holding more than tensors
            raise CheckpointError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
        duplicated = sorted(set(shard) & set(weights))
        if duplicated:
            raise CheckpointError(
                f"{path.name} repeats {len(duplicated)} tensor(s) of other shards: {duplicated[:3]}"
            )
        weights.update(shard)
    return weights


@dataclass(frozen=True)
class KeyMap:
    """Prefix rules from original names to the names of the model built in this process.

    The target prefixes are read from the model's own state dict (by anchor tensors), so the
    map follows transformers' in-memory layout instead of hard-coding one version's names.
    """

    rules: tuple[tuple[str, str], ...]  # (original prefix, target prefix), most specific first

    @classmethod
    def for_model(cls, target_keys: Iterable[str]) -> KeyMap:
        keys = list(target_keys)

        def prefix(anchor: str) -> str:
            hits = [k[: -len(anchor)] for k in keys if k.endswith(anchor)]
            if len(hits) != 1:
                raise CheckpointError(
                    f"cannot locate {anchor!r} in the transformers model ({len(hits)} matches)"
                )
            return hits[0]

        return cls(
            (
                (_ORIG_VISION, prefix("embeddings.patch_embedding.weight")),
                (_ORIG_PROJ_1, prefix("linear_1.weight") + "linear_1."),
                (_ORIG_PROJ_2, prefix("linear_2.weight") + "linear_2."),
                (_ORIG_LM_HEAD, prefix("lm_head.weight") + "lm_head."),
                (_ORIG_TEXT, prefix("embed_tokens.weight")),
            )
        )

    def to_target(self, name: str) -> str | None:
        return _swap_prefix(name, self.rules)

    def to_original(self, name: str) -> str | None:
        inverse = sorted(((t, o) for o, t in self.rules), key=lambda r: -len(r[0]))
        return _swap_prefix(name, inverse)


def _swap_prefix(name: str, rules: Iterable[tuple[str, str]]) -> str | None:
    for old, new in rules:
        if name.startswith(old):
            return new + name[len(old) :]
    return None


def map_weights(
    weights: Mapping[str, torch.Tensor],
    target_shapes: Mapping[str, tuple[int, ...]],
    keymap: KeyMap,
    vocab_rows: Mapping[str, int],
) -> dict[str, torch.Tensor]:
    """Rename every original tensor; raise on unexpected, missing or mis-shaped tensors.

    `vocab_rows` names the target tensors whose first dimension is padded (embeddings and
    lm_head): their original row count must equal the original vocab, the rest must match.
    """
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for name, tensor in weights.items():
        if name in _DROPPED:
            continue
        target = keymap.to_target(name)
        if target is None or target not in target_shapes:
            unexpected.append(name)
        else:
            mapped[target] = tensor
    if unexpected:
        raise CheckpointError(
            f"{len(unexpected)} tensor(s) in the checkpoint have no place in LlavaForConditionalGeneration: "
            f"{sorted(unexpected)[:5]}"
        )
    missing = sorted(k for k in target_shapes if k not in mapped)
    if missing:
        names = [keymap.to_original(k) or k for k in missing]
        raise CheckpointError(f"{len(missing)} tensor(s) missing from the checkpoint: {names[:5]}")
    _check_shapes(mapped, target_shapes, keymap, vocab_rows)
    return mapped


def _check_shapes(
    mapped: Mapping[str, torch.Tensor],
    target_shapes: Mapping[str, tuple[int, ...]],
    keymap: KeyMap,
    vocab_rows: Mapping[str, int],
) -> None:
    wrong = []
    for name, tensor in mapped.items():
        want = tuple(target_shapes[name])
        if name in vocab_rows:
            want = (vocab_rows[name],) + want[1:]
        if tuple(tensor.shape) != want:
            wrong.append(f"{keymap.to_original(name)}: {tuple(tensor.shape)} vs expected {want}")
    if wrong:
        raise CheckpointError(f"{len(wrong)} tensor(s) have unexpected shapes: {wrong[:5]}")


def pad_rows(tensor: torch.Tensor, rows: int, fill: str) -> torch.Tensor:
    """Grow a [vocab, hidden] matrix to [rows, hidden].

    `fill="mean"` (input embeddings): new tokens start at the mean embedding, a neutral input.
    `fill="zero"` (lm_head): their logit is exactly 0, and generation suppresses them anyway.
    """
    torch = require("torch", "torch", "converting checkpoints")
    extra = rows - tensor.shape[0]
    if fill == "mean":
        new = tensor.float().mean(dim=0, keepdim=True).to(tensor.dtype).expand(extra, -1)
    else:
        new = tensor.new_zeros((extra, tensor.shape[1]))
    return torch.cat([tensor, new], dim=0)


# --------------------------------------------------------------------------------------------
# Building and writing the converted model
# --------------------------------------------------------------------------------------------


def _to_dtype(dtype: Any, default: torch.dtype) -> torch.dtype:
    """The output dtype: the one asked for (a torch dtype or a name such as "fp16"), else `default`."""
    torch = require("torch", "torch", "converting checkpoints")
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32", "float": "float32"}
    resolved = getattr(torch, names.get(str(dtype), str(dtype)), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"unknown dtype {dtype!r}; use float16, bfloat16 or float32")
    return resolved


def _empty_model(config: PreTrainedConfig) -> Any:
    """`LlavaForConditionalGeneration` with parameters on the meta device (no memory, no init).

    Loading with `assign=True` then puts the converted tensors in place, so a 7B conversion
    holds one copy of the weights, not two. Buffers (rotary frequencies, CLIP position ids)
    stay real: they are computed, not loaded.
    """
    transformers = require("transformers", "torch", "converting checkpoints")
    accelerate = require("accelerate", "torch", "converting checkpoints")
    with accelerate.init_empty_weights(include_buffers=False):
        return transformers.LlavaForConditionalGeneration(config)


def _load_tokenizer(src: Path, orig_vocab: int) -> tuple[Any, bool]:
    """The checkpoint's tokenizer, read with the defaults transformers 4.x applied to it.

    transformers 4.x's slow Llama tokenizer treated a missing `legacy` as true and added BOS
    by default; 5.x defaults both to false. We pass the 4.x values explicitly so the ids match
    what the model was trained on. Padding goes on the left, as batched generation needs.
    Its size must be the model's vocabulary, so that `<image>`/`<pad>` get the next ids.
    """
    transformers = require("transformers", "torch", "converting checkpoints")
    if not any((src / n).is_file() for n in ("tokenizer.model", "tokenizer.json")):
        raise CheckpointError(f"{src} has no tokenizer (tokenizer.model or tokenizer.json)")
    tok_config_path = src / "tokenizer_config.json"
    tok_config = _read_json(tok_config_path) if tok_config_path.is_file() else {}
    legacy = bool(tok_config.get("legacy", True))
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        str(src),
        legacy=legacy,
        add_bos_token=bool(tok_config.get("add_bos_token", True)),
        add_eos_token=bool(tok_config.get("add_eos_token", False)),
        padding_side="left",
        # config.json is not a transformers config; LLaVA's tokenizers are Llama's.
        config=transformers.LlamaConfig(),
    )
    if len(tokenizer) != orig_vocab:
        raise CheckpointError(
            f"the tokenizer has {len(tokenizer)} tokens but config.json says vocab_size={orig_vocab}; "
            "`<image>` and `<pad>` must get ids right after the model's vocabulary"
        )
    return tokenizer, legacy


def build_image_processor(image_size: int, clip_folder: Path | None, pad_to_square: bool) -> Any:
    """LLaVA's preprocessing as transformers' PIL-backend Llava image processor.

    `do_pad=True` pads to a square with the CLIP mean colour (int(mean*255)), then resizes
    the shortest edge and centre-crops, exactly like the original `expand2square` + CLIP.
    Mean/std/resampling come from the CLIP folder's preprocessor config when there is one.
    """
    transformers = require("transformers", "torch", "converting checkpoints")
    pre = clip_folder / "preprocessor_config.json" if clip_folder else None
    clip = _read_json(pre) if pre is not None and pre.is_file() else {}
    kwargs: dict[str, Any] = {
        "size": {"shortest_edge": image_size},
        "crop_size": {"height": image_size, "width": image_size},
        "do_pad": pad_to_square,
    }
    for key in ("image_mean", "image_std", "resample"):
        if key in clip:
            kwargs[key] = clip[key]
    return transformers.LlavaImageProcessorPil(**kwargs)


def build_processor(tokenizer: Any, image_processor: Any, patch_size: int, strategy: str) -> Any:
    """A `LlavaProcessor` that expands `<image>` to one placeholder per vision feature.

    `num_additional_image_tokens=1` accounts for CLIP's CLS token, which the "default"
    strategy then drops again: 577 - 1 = 576 placeholders for a 336/14 tower.
    """
    transformers = require("transformers", "torch", "converting checkpoints")
    return transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
        chat_template=vicuna_chat_template(),
    )


def _tokenizer_probe() -> str:
    """A prompt that exercises the `<image>` boundary, rendered with FFAA's template."""
    from ..prompts import load_prompt_set

    prompts = load_prompt_set()
    return prompts.chat([(prompts.questions[0], None)])


def convert_original_checkpoint(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    vision_config: CLIPVisionConfig | str | os.PathLike[str] | None = None,
    dtype: Any = None,
) -> Path:
    """Convert the original LLaVA checkpoint in `src` into a transformers folder `dst`.

    `dst` gets the model (`save_pretrained`, safetensors), the processor with FFAA's chat
    template, and `ffaa_conversion.json` describing the source. `dtype` (e.g. "float16")
    casts floating tensors; by default the checkpoint's dtype is kept. Raises CheckpointError
    on anything that would not reproduce the original model.
    """
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if dst.exists() and any(dst.iterdir()):
        raise FileExistsError(f"{dst} is not empty; convert into a new folder")
    original = _read_json(src / "config.json")
    settings = read_llava_settings(original, str(src / "config.json"))
    weights = load_original_weights(src)
    vision, clip_folder = resolve_vision_config(src, settings.vision_tower, vision_config)
    check_vision_shapes(vision, {k: tuple(v.shape) for k, v in weights.items()}, settings.mm_hidden_size)
    orig_vocab = int(original.get("vocab_size", 32000))
    tokenizer, legacy = _load_tokenizer(src, orig_vocab)
    image_id, pad_id = add_llava_tokens(tokenizer)
    model = _empty_model(_llava_config(original, settings, vision, len(tokenizer), image_id, pad_id))
    state = _converted_state(weights, model, orig_vocab, dtype)
    del weights
    model.load_state_dict(state, strict=True, assign=True)
    _set_generation_config(model.eval(), src, pad_id, orig_vocab)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dst), max_shard_size="5GB")
    image_processor = build_image_processor(vision.image_size, clip_folder, settings.pad_to_square)
    processor = build_processor(tokenizer, image_processor, vision.patch_size, settings.select_strategy)
    save_processor(processor, dst, legacy=legacy, probe=_tokenizer_probe())
    _write_marker(dst, source=str(src), fingerprint=source_fingerprint(src))
    return dst


def _llava_config(
    original: Mapping[str, Any],
    settings: LlavaSettings,
    vision: CLIPVisionConfig,
    n_tokens: int,
    image_id: int,
    pad_id: int,
) -> PreTrainedConfig:
    """The nested LlavaConfig: text config from the original fields, CLIP, projector, image ids."""
    transformers = require("transformers", "torch", "converting checkpoints")
    text = text_config_from_original(original, settings.text_family, padded_vocab_size(n_tokens), pad_id)
    patches = (vision.image_size // vision.patch_size) ** 2
    return transformers.LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_id,
        image_seq_length=patches + (settings.select_strategy == "full"),
        projector_hidden_act="gelu",  # nn.GELU() in mlp2x_gelu: exact erf GELU
        vision_feature_select_strategy=settings.select_strategy,
        vision_feature_layer=settings.feature_layer,
        multimodal_projector_bias=True,
        tie_word_embeddings=False,
    )


def _converted_state(
    weights: Mapping[str, torch.Tensor], model: Any, orig_vocab: int, dtype: Any
) -> dict[str, torch.Tensor]:
    """Renamed, checked, vocab-padded and cast tensors for the (meta) `model`.

    Embeddings and lm_head grow from [orig_vocab, h] to [padded_vocab, h]; every floating
    tensor is cast to `dtype` (default: the dtype of the checkpoint's embeddings).
    """
    target_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    keymap = KeyMap.for_model(target_shapes)
    embed = keymap.to_target(_ORIG_TEXT + "embed_tokens.weight")
    head = keymap.to_target(_ORIG_LM_HEAD + "weight")
    state = map_weights(weights, target_shapes, keymap, {embed: orig_vocab, head: orig_vocab})
    rows = target_shapes[embed][0]
    out_dtype = _to_dtype(dtype, state[embed].dtype)
    state[embed] = pad_rows(state[embed], rows, "mean")
    state[head] = pad_rows(state[head], rows, "zero")
    return {k: v.to(out_dtype) if v.is_floating_point() else v for k, v in state.items()}


def _set_generation_config(model: Any, src: Path, pad_id: int, orig_vocab: int) -> None:
    """Keep the checkpoint's bos/eos, add the pad id, and never generate padded vocab ids."""
    source = src / "generation_config.json"
    saved = _read_json(source) if source.is_file() else {}
    gen = model.generation_config
    gen.bos_token_id = saved.get("bos_token_id", model.config.text_config.bos_token_id)
    gen.eos_token_id = saved.get("eos_token_id", model.config.text_config.eos_token_id)
    gen.pad_token_id = pad_id
    gen.suppress_tokens = list(range(orig_vocab, model.config.text_config.vocab_size))


# --------------------------------------------------------------------------------------------
# The conversion cache
# --------------------------------------------------------------------------------------------


def source_fingerprint(src: Path) -> dict[str, Any]:
    """What identifies a source checkpoint cheaply: its config's hash, weight names and sizes.

    Hashing 15 GB of weights on every start would take minutes; a changed shard almost surely
    changes its size or the config, and a new download gets a new snapshot folder anyway.
    """
    config_bytes = (src / "config.json").read_bytes()
    files = [*weight_files(src)]
    tokenizer_files = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json")
    files += [src / n for n in tokenizer_files if (src / n).is_file()]
    return {
        "config_sha256": hashlib.sha256(config_bytes).hexdigest(),
        "files": [[p.name, p.stat().st_size] for p in files],
    }


def _write_marker(dst: Path, *, source: str, fingerprint: Mapping[str, Any]) -> None:
    """Record where `dst` came from, so a cache can be checked against its source."""
    import importlib.metadata

    from .. import __version__

    versions = {}
    for package in ("transformers", "torch"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    marker = {
        "conversion_format": CONVERSION_FORMAT,
        "source": source,
        "source_config_sha256": fingerprint["config_sha256"],
        "source_files": fingerprint["files"],
        "ffaa_version": __version__,
        "versions": versions,
    }
    (dst / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The conversion marker of `folder`, or None when it is absent or unreadable."""
    try:
        data = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _cache_is_valid(folder: Path, fingerprint: Mapping[str, Any] | None) -> bool:
    """A finished conversion of this format, and of this source when `fingerprint` is given."""
    marker = read_marker(folder)
    if marker is None or marker.get("conversion_format") != CONVERSION_FORMAT:
        return False
    if not (folder / "config.json").is_file() or not (folder / "tokenizer_config.json").is_file():
        return False
    if fingerprint is None:
        return True
    return (
        marker.get("source_config_sha256") == fingerprint["config_sha256"]
        and marker.get("source_files") == fingerprint["files"]
    )


def _cache_folder(root: Path, name: str, identity: str) -> Path:
    """`<root>/converted/<name>-<12 hex>`, the hash taken over the source's identity."""
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"
    return root / "converted" / f"{safe}-{digest}"


def _local_name(src: Path) -> str:
    """A readable cache name: `owner--name` for a hub-cache snapshot, else the folder name."""
    for part in src.parts:
        if part.startswith("models--"):
            return part[len("models--") :]
    return src.name


def ensure_converted(
    src_or_hub_id: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    revision: str | None = None,
) -> Path:
    """A converted transformers folder for an original LLaVA checkpoint, converting only once.

    `src_or_hub_id` is a local original-format folder or a hub id such as
    `thu-huangzc/ffaa-mistral-7b`. The result lives in `cache_dir` (default
    `$FFAA_CACHE/converted`, i.e. `~/.cache/ffaa/converted`) and is reused while its
    `ffaa_conversion.json` matches the source. A hub id whose conversion is cached is reused
    without contacting the hub; otherwise it is downloaded first (WeightsNotFoundError offline).
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else ffaa_cache_root()
    local = Path(src_or_hub_id).expanduser()
    if local.is_dir():
        src = local.resolve()
        final = _cache_folder(root, _local_name(src), f"local:{src}")
    else:
        repo_id = _check_hub_id(str(src_or_hub_id))
        final = cached_conversion(repo_id, cache_dir, revision=revision)
        if final is not None:
            return final
        final = _cache_folder(root, repo_id.replace("/", "--"), f"hub:{repo_id}@{revision or 'main'}")
        src = download_checkpoint(repo_id, revision)
    if not is_original_llava_checkpoint(src):
        raise CheckpointError(f"{src} is not an original-format LLaVA checkpoint (see its config.json)")
    fingerprint = source_fingerprint(src)
    if _cache_is_valid(final, fingerprint):
        return final
    return build_atomically(
        final,
        lambda tmp: convert_original_checkpoint(src, tmp),
        done=lambda folder: _cache_is_valid(folder, fingerprint),
    )


def cached_conversion(
    repo_id: str, cache_dir: str | os.PathLike[str] | None = None, *, revision: str | None = None
) -> Path | None:
    """The finished conversion of hub checkpoint `repo_id`, if one is cached (no network)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else ffaa_cache_root()
    final = _cache_folder(root, repo_id.replace("/", "--"), f"hub:{repo_id}@{revision or 'main'}")
    return final if _cache_is_valid(final, None) else None


def _check_hub_id(value: str) -> str:
    """`owner/name` or raise: anything else was meant as a local folder that is not there."""
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", value) and not value.startswith((".", "/", "~")):
        return value
    raise WeightsNotFoundError(f"checkpoint folder not found: {value}")


def download_checkpoint(repo_id: str, revision: str | None = None) -> Path:
    """The hub checkpoint's folder: an earlier complete download, else a fresh one, or raise.

    Only what a conversion needs is fetched (not FFAA's `mids.pth`). A complete download in
    the hub cache is used without any network access.
    """
    hub = require("huggingface_hub", "torch", "downloading checkpoints")
    cached = _cached_snapshot(hub, repo_id, revision)
    if cached is not None:
        return cached
    try:
        patterns = _download_patterns(hub.HfApi().list_repo_files(repo_id, revision=revision))
        return Path(hub.snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except Exception as exc:  # offline, unknown repo, auth: all end the same way for a user
        raise WeightsNotFoundError(_not_found_message(repo_id, exc)) from None


def _cached_snapshot(hub: Any, repo_id: str, revision: str | None) -> Path | None:
    """A snapshot in the hub cache with a config, a tokenizer and every weight shard."""
    try:
        folder = Path(hub.snapshot_download(repo_id, revision=revision, local_files_only=True))
        weight_files(folder)
    except Exception:  # nothing cached, or an incomplete download: fetch it
        return None
    has_tokenizer = any((folder / n).is_file() for n in ("tokenizer.model", "tokenizer.json"))
    return folder if has_tokenizer and is_original_llava_checkpoint(folder) else None


def _download_patterns(files: Iterable[str]) -> list[str]:
    """Config, tokenizer and one weight format (safetensors preferred, never both)."""
    files = list(files)
    weights = ["*.safetensors", "*.safetensors.index.json"]
    if not any(f.endswith(".safetensors") for f in files):
        weights = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]
    return ["config.json", "generation_config.json", "tokenizer*", "special_tokens_map.json", *weights]


def _not_found_message(repo_id: str, error: Exception) -> str:
    return (
        f"cannot download '{repo_id}' from the Hugging Face hub ({one_line(error, limit=200)}). On a machine with "
        f"access run `hf download {repo_id} --local-dir DIR` (FFAA's 7B checkpoint is about 15 GB "
        "in fp16), copy DIR here and pass that folder instead of the hub id; it is converted "
        f"once into {ffaa_cache_root() / 'converted'} (set FFAA_CACHE to move it)."
    )
