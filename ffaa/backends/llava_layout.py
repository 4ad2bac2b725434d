"""transformers' LLaVA layout as ffaa builds it: the vocabulary padding, the `<image>` and `<pad>`
tokens, the processor (LLaVA's pad-to-square preprocessing, FFAA's chat template) and saving it
so that it reloads identically.

Shared by the converter (`convert.py`), the tiny model (`tiny.py`) and the GPU benchmark's
random model, so the three write the same layout. Heavy libraries are imported inside the
functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from ..jsonio import read_json
from ..lazy import require
from .base import round_up

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
# llava-hf pads the vocabulary to a multiple of 64 (32000 -> 32064) for matmul-friendly shapes.
VOCAB_MULTIPLE = 64


def read_json_object(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON file (config, index, preprocessor) as a dict, or a CheckpointError."""
    return read_json(path, expect=dict, error=CheckpointError, unreadable="cannot read {path}: {exc}",
                     wrong_type="{path}: expected a JSON object")


def padded_vocab_size(n_tokens: int) -> int:
    """The embedding rows for `n_tokens` real tokens, rounded up to a multiple of 64."""
    return round_up(n_tokens, VOCAB_MULTIPLE)


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



def build_image_processor(image_size: int, clip_folder: Path | None, pad_to_square: bool) -> Any:
    """LLaVA's preprocessing as transformers' PIL-backend Llava image processor.

    `do_pad=True` pads to a square with the CLIP mean colour (int(mean*255)), then resizes
    the shortest edge and centre-crops, exactly like the original `expand2square` + CLIP.
    Mean/std/resampling come from the CLIP folder's preprocessor config when there is one.
    """
    transformers = require("transformers", "torch", "converting checkpoints")
    pre = clip_folder / "preprocessor_config.json" if clip_folder else None
    clip = read_json_object(pre) if pre is not None and pre.is_file() else {}
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

