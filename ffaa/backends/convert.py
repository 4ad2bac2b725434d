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

Pieces live beside this module: `llava_layout.py` (tokens, vocabulary padding, the processor,
shared with the tiny model), `llava_weights.py` (the original tensors: reading, renaming,
checking), `hub.py` (the hub, ffaa's cache folder and building into it atomically).

Heavy libraries (torch, transformers, safetensors) are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from ..lazy import require
from ..models import KNOWN_VISION_TOWERS, known_vision_tower
from . import hub
from .hub import build_atomically, ffaa_cache_root
from .llava_layout import (
    add_llava_tokens,
    build_image_processor,
    build_processor,
    padded_vocab_size,
    read_json_object,
    save_processor,
)
from .llava_weights import (
    ORIG_LM_HEAD,
    ORIG_TEXT,
    KeyMap,
    check_vision_shapes,
    load_original_weights,
    map_weights,
    pad_rows,
    weight_files,
)

if TYPE_CHECKING:
    import torch
    from transformers import CLIPVisionConfig, PreTrainedConfig

# Bump when the converted layout changes; caches written by another format are rebuilt.
CONVERSION_FORMAT = 1
MARKER_FILE = "ffaa_conversion.json"


# Original `model_type` / `architectures` -> transformers text family. `llava_llama` is what
# FFAA's LoRA merge may have written for its Mistral fine-tune: the original code then ran it as
# a Llama, which is the same network when `sliding_window` is null.
_MODEL_TYPES = {"llava_mistral": "mistral", "llava_llama": "llama", "llava": "llama"}
_ARCHITECTURES = {"LlavaMistralForCausalLM": "mistral", "LlavaLlamaForCausalLM": "llama"}

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
    known = known_vision_tower(tower)  # published configs, named by hub id or a local copy's name
    if known is None:
        raise CheckpointError(
            f"mm_vision_tower={tower!r} is neither a local CLIP folder nor a known CLIP "
            f"({', '.join(KNOWN_VISION_TOWERS)}); pass vision_config=<folder with its config.json>"
        )
    return transformers.CLIPVisionConfig(**known.config()), None


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
    tok_config = read_json_object(tok_config_path) if tok_config_path.is_file() else {}
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
    original = read_json_object(src / "config.json")
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
    embed = keymap.to_target(ORIG_TEXT + "embed_tokens.weight")
    head = keymap.to_target(ORIG_LM_HEAD + "weight")
    state = map_weights(weights, target_shapes, keymap, {embed: orig_vocab, head: orig_vocab})
    rows = target_shapes[embed][0]
    out_dtype = _to_dtype(dtype, state[embed].dtype)
    state[embed] = pad_rows(state[embed], rows, "mean")
    state[head] = pad_rows(state[head], rows, "zero")
    return {k: v.to(out_dtype) if v.is_floating_point() else v for k, v in state.items()}


def _set_generation_config(model: Any, src: Path, pad_id: int, orig_vocab: int) -> None:
    """Keep the checkpoint's bos/eos, add the pad id, and never generate padded vocab ids."""
    source = src / "generation_config.json"
    saved = read_json_object(source) if source.is_file() else {}
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
        repo_id = hub.check_hub_id(str(src_or_hub_id))
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


def download_checkpoint(repo_id: str, revision: str | None = None) -> Path:
    """The hub checkpoint's folder: an earlier complete download, else a fresh one, or raise.

    Only what a conversion needs is fetched (not FFAA's `mids.pth`). A complete download in
    the hub cache is used without any network access.
    """
    cached = hub.cached_snapshot(repo_id, revision, _complete_original)
    if cached is not None:
        return cached
    return hub.download_snapshot(repo_id, revision, _download_patterns)


def _complete_original(folder: Path) -> bool:
    """An original checkpoint with a tokenizer and every weight shard (raises if one is missing)."""
    weight_files(folder)
    has_tokenizer = any((folder / n).is_file() for n in ("tokenizer.model", "tokenizer.json"))
    return has_tokenizer and is_original_llava_checkpoint(folder)


def _download_patterns(files: Iterable[str]) -> list[str]:
    """Config, tokenizer and one weight format (safetensors preferred, never both)."""
    files = list(files)
    weights = ["*.safetensors", "*.safetensors.index.json"]
    if not any(f.endswith(".safetensors") for f in files):
        weights = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]
    return ["config.json", "generation_config.json", "tokenizer*", "special_tokens_map.json", *weights]
