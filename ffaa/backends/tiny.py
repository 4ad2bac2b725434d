"""A tiny random LLaVA of the real classes, for tests and `ffaa analyze --demo`.

The model is built from config objects (no download): transformers' own
`LlavaForConditionalGeneration` (or `LlavaNextForConditionalGeneration`) with a 2-layer CLIP
and a 2-layer Mistral, so every code path of the real backend (processor, chat template,
batching, bitsandbytes 4-bit, generation) runs on CPU in well under a second. Its tokenizer
is the REAL Mistral-7B SentencePiece model shipped in the PyPI package `mistral-common`, so
prompts tokenise to the same ids as with FFAA's checkpoint. Its weights are random: the text
it writes is noise.

Sizes: CLIP 64 wide (336 px, patch 14 -> 576 patches); Mistral 64 wide, 4 heads of 32,
2 KV heads, so every quantised Linear is at least 64 wide (bitsandbytes' CPU 4-bit needs it).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from ..errors import MissingDependencyError
from ..lazy import require
from .hub import build_atomically, ffaa_cache_root
from .llava_layout import (
    add_llava_tokens,
    build_image_processor,
    build_processor,
    padded_vocab_size,
    save_processor,
    vicuna_chat_template,
)

Kind = Literal["llava", "llava_next"]
# Bump when the tiny model's layout or sizes change; cached builds of another format are rebuilt.
TINY_FORMAT = 1
MARKER_FILE = "ffaa_tiny.json"
IMAGE_SIZE = 336
PATCH_SIZE = 14
# LLaVA-1.6's AnyRes grid, identical in processor and model config (a mismatch tiles wrongly).
GRID_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
_PROBE = "USER: <image>\nIs it real or fake? ASSISTANT:"


def mistral_tokenizer_file() -> Path:
    """`tokenizer.model.v1` (Mistral-7B v1 SentencePiece, 32000 pieces) from `mistral-common`.

    Located without importing the package, which is slow to import and not needed here.
    """
    spec = importlib.util.find_spec("mistral_common")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("mistral-common", "dev", "the tiny demo model")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "tokenizer.model.v1"
    if not path.is_file():
        raise MissingDependencyError("mistral-common", "dev", "the tiny demo model (tokenizer.model.v1)")
    return path


def load_mistral_tokenizer() -> Any:
    """The real Mistral-7B tokenizer with `<image>` (32000) and `<pad>` (32001) added.

    Loaded with `legacy=True` and BOS, as FFAA's checkpoint tokenizer is, so the text after
    `<image>` keeps its own `▁` prefix; padding on the left for batched generation.
    transformers reads a SentencePiece file only as `tokenizer.model` in a folder, hence the
    temporary copy.
    """
    transformers = require("transformers", "torch", "the tiny demo model")
    require("sentencepiece", "torch", "the tiny demo model")
    require("google.protobuf", "torch", "the tiny demo model")
    with tempfile.TemporaryDirectory(prefix="ffaa-tok-") as folder:
        shutil.copyfile(mistral_tokenizer_file(), Path(folder) / "tokenizer.model")
        tokenizer = transformers.LlamaTokenizer.from_pretrained(
            folder, legacy=True, add_bos_token=True, add_eos_token=False, model_max_length=2048,
            padding_side="left",
        )
    add_llava_tokens(tokenizer)
    return tokenizer


def tiny_configs(n_tokens: int, image_id: int, pad_id: int, kind: Kind) -> Any:
    """The LlavaConfig / LlavaNextConfig of the tiny model (vocab padded like a conversion)."""
    transformers = require("transformers", "torch", "the tiny demo model")
    vision = transformers.CLIPVisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=64, hidden_act="quick_gelu",
    )
    text = transformers.MistralConfig(
        vocab_size=padded_vocab_size(n_tokens), hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        max_position_embeddings=4096, sliding_window=None, rope_theta=1e6, rms_norm_eps=1e-5,
        bos_token_id=1, eos_token_id=2, pad_token_id=pad_id, tie_word_embeddings=False,
    )
    common = dict(
        vision_config=vision, text_config=text, image_token_index=image_id,
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2, projector_hidden_act="gelu",
        vision_feature_select_strategy="default", vision_feature_layer=-2, tie_word_embeddings=False,
    )
    if kind == "llava_next":
        return transformers.LlavaNextConfig(image_grid_pinpoints=GRID_PINPOINTS, **common)
    return transformers.LlavaConfig(**common)


def _tiny_processor(tokenizer: Any, kind: Kind) -> Any:
    """The processor matching the model: LLaVA-1.5 pad-to-square, or NeXT AnyRes tiling."""
    if kind == "llava":
        image_processor = build_image_processor(IMAGE_SIZE, None, pad_to_square=True)
        return build_processor(tokenizer, image_processor, PATCH_SIZE, "default")
    transformers = require("transformers", "torch", "the tiny demo model")
    image_processor = transformers.LlavaNextImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_grid_pinpoints=GRID_PINPOINTS,
    )
    return transformers.LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        image_token="<image>", chat_template=vicuna_chat_template(),
    )


def _random_model(config: Any, seed: int, kind: Kind) -> Any:
    """The model with weights drawn from `seed`, without touching the caller's RNG state."""
    torch = require("torch", "torch", "the tiny demo model")
    transformers = require("transformers", "torch", "the tiny demo model")
    if kind == "llava_next":
        cls = transformers.LlavaNextForConditionalGeneration
    else:
        cls = transformers.LlavaForConditionalGeneration
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    return model.eval()


def build_tiny_llava(dst: str | Path, *, seed: int = 0, kind: Kind = "llava") -> Path:
    """Build and save a tiny random model of the real LLaVA classes into `dst`.

    Same `seed` and `kind` give identical weights. The folder holds the model, a processor
    with the real Mistral tokenizer and the Vicuna chat template, and `ffaa_tiny.json`.
    """
    if kind not in ("llava", "llava_next"):
        raise ValueError(f"kind must be 'llava' or 'llava_next', not {kind!r}")
    dst = Path(dst)
    tokenizer = load_mistral_tokenizer()
    image_id, pad_id = tokenizer.convert_tokens_to_ids(["<image>", "<pad>"])
    model = _random_model(tiny_configs(len(tokenizer), image_id, pad_id, kind), seed, kind)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = 1, 2, pad_id
    gen.suppress_tokens = list(range(tokenizer.vocab_size, model.config.text_config.vocab_size))
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dst))
    save_processor(_tiny_processor(tokenizer, kind), dst, legacy=True, probe=_PROBE)
    (dst / MARKER_FILE).write_text(json.dumps(_marker(seed, kind), indent=2) + "\n", encoding="utf-8")
    return dst


def _marker(seed: int, kind: Kind) -> dict[str, Any]:
    """What a cached build must match: format, seed, kind and the transformers that wrote it."""
    import importlib.metadata

    return {
        "tiny_format": TINY_FORMAT,
        "seed": seed,
        "kind": kind,
        "transformers": importlib.metadata.version("transformers"),
        "random_weights": True,
    }


def tiny_model_dir(cache: bool = True, *, seed: int = 0, kind: Kind = "llava") -> Path:
    """A folder with the tiny model: built once under `$FFAA_CACHE/tiny/` and then reused.

    With `cache=False` a fresh copy is built in a new temporary folder (the caller owns it).
    """
    if not cache:
        return build_tiny_llava(tempfile.mkdtemp(prefix="ffaa-tiny-"), seed=seed, kind=kind)
    final = ffaa_cache_root() / "tiny" / f"{kind}-seed{seed}"
    if _is_built(final, seed, kind):
        return final
    return build_atomically(
        final, lambda tmp: build_tiny_llava(tmp, seed=seed, kind=kind), done=lambda f: _is_built(f, seed, kind)
    )


def _is_built(folder: Path, seed: int, kind: Kind) -> bool:
    """A finished build of this seed, kind and format, written by this transformers version."""
    try:
        return json.loads((folder / MARKER_FILE).read_text(encoding="utf-8")) == _marker(seed, kind)
    except (OSError, json.JSONDecodeError):
        return False
