"""What MIDS reads: CLIP pixels for the face and T5 token ids for each masked answer.

* Pixels: CLIP's own preprocessing for clip-vit-large-patch14-336 (convert to RGB, resize the
  shortest edge to the model's image size with bicubic resampling, centre crop to a square,
  scale to [0, 1], normalise with CLIP's mean/std). This is not LLaVA's pad-to-square.
* Text: the T5 tokenizer, padding to the longest row, truncation at 512 tokens, `</s>` at the
  end of each row, pad id 0.

`tiny_tokenizer` builds a small T5-style tokenizer offline for tests and examples only; it is
not T5's vocabulary and a network scored with it means nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from PIL import Image

T5_MAX_LENGTH = 512


def clip_image_processor(image_size: int = 336, source: str | Path | None = None) -> Any:
    """CLIP's PIL image processor (no torchvision needed).

    With a local CLIP folder holding `preprocessor_config.json`, its values are used; otherwise
    the published defaults of clip-vit-large-patch14-336, with `image_size` as resize and crop size.
    """
    try:  # the PIL backend, which needs no torchvision (recent transformers 5.x)
        from transformers.models.clip.image_processing_pil_clip import (
            CLIPImageProcessorPil as processor_class,
        )
    except ImportError:
        from transformers import CLIPImageProcessor as processor_class

    if source is not None and (Path(source) / "preprocessor_config.json").is_file():
        return processor_class.from_pretrained(str(source))
    return processor_class(size={"shortest_edge": image_size},
                           crop_size={"height": image_size, "width": image_size})


def pixel_values(processor: Any, images: Sequence[Image.Image]) -> Tensor:
    """[B, 3, S, S] float32 pixels for a list of PIL images (any mode; converted to RGB)."""
    rgb = [im.convert("RGB") for im in images]
    return processor(images=rgb, return_tensors="pt")["pixel_values"].to(torch.float32)


@dataclass(frozen=True)
class Tokens:
    """Token ids [T, L] and attention mask [T, L] (right-padded with 0), and which rows were cut."""

    input_ids: Tensor
    attention_mask: Tensor
    truncated: tuple[bool, ...]


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int = T5_MAX_LENGTH) -> Tokens:
    """Tokenise answers as FFAA does: padding to the longest, truncation at `max_length`.

    Truncation is detected by tokenising with one more token allowed (no long-input warning).
    """
    if not texts:
        raise ValueError("nothing to tokenise")
    probe = tokenizer(list(texts), truncation=True, max_length=max_length + 1)["input_ids"]
    enc = tokenizer(list(texts), padding="longest", truncation=True, max_length=max_length,
                    return_tensors="pt")
    return Tokens(enc["input_ids"], enc["attention_mask"], tuple(len(ids) > max_length for ids in probe))


def load_t5_tokenizer(source: str | Path, local_files_only: bool = False) -> Any:
    """The T5 tokenizer of a model id or folder (t5-base for FFAA)."""
    from transformers import AutoTokenizer

    from ffaa.errors import WeightsNotFoundError

    try:
        return AutoTokenizer.from_pretrained(str(source), local_files_only=local_files_only)
    except (OSError, ValueError) as exc:
        raise WeightsNotFoundError(f"T5 tokenizer {str(source)!r} is not available: {exc}") from exc


_TINY_CORPUS = (
    "Image description: The image shows a young woman facing the camera under soft, even lighting.",
    "Image description: A middle-aged man with short grey hair, light skin and a neutral expression.",
    "Image description: An elderly person smiling, wearing glasses and earrings; the resolution is low.",
    "Image description: A child with dark skin looks slightly to the left; the background is blurred.",
    "Forgery reasoning: The skin around the eyes and nose is too smooth and lacks natural texture.",
    "Forgery reasoning: A blending boundary is visible along the jaw, and the skin colour is inconsistent.",
    "Forgery reasoning: The mouth and teeth are blurred and pixelated compared with the rest of the face.",
    "Forgery reasoning: Hair merges unnaturally with the background and the ears are asymmetric.",
    "Forgery reasoning: Lighting, shadows and reflections are consistent; the organs look natural.",
    "Forgery reasoning: No tampering of attributes is visible, the face integrates well with the hair.",
    "The eyes, eyebrows, lips and cheeks show fine detail, pores and wrinkles appropriate for the age.",
    "Compression artefacts are uniform across the image, so the face was not pasted from another source.",
)


def tiny_tokenizer(vocab_size: int = 256) -> Any:
    """A T5-style Unigram tokenizer built offline from a dozen sentences (tests only).

    Same layout as T5's: `<pad>`=0, `</s>`=1, `<unk>`=2, metaspace pieces, `</s>` appended.
    The pieces are every character of the corpus, then its most frequent words; scores are log
    frequencies. Built by counting (not by a trainer) so it is identical on every run. It has at
    most `vocab_size` entries, so it fits a tiny T5 of that size.
    """
    import math
    from collections import Counter

    from transformers import T5Tokenizer

    words = Counter("\u2581" + w for line in _TINY_CORPUS for w in line.split())
    chars = Counter(ch for line in _TINY_CORPUS for ch in line.replace(" ", "\u2581"))
    chars["\u2581"] += 1
    total = sum(words.values()) + sum(chars.values())
    pieces = sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))
    pieces += sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))
    room = vocab_size - 3
    if len(chars) > room:
        raise ValueError(f"vocab_size {vocab_size} is too small for the {len(chars)} characters of the corpus")
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(piece, math.log(count / total)) for piece, count in pieces[:room]]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=T5_MAX_LENGTH)
    assert tokenizer.pad_token_id == 0 and tokenizer.eos_token_id == 1 and len(tokenizer) <= vocab_size
    return tokenizer
