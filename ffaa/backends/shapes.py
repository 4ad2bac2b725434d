"""Random-weight LLaVA models of FFAA's exact shape (Mistral-7B text model + CLIP ViT-L/14-336,
576 image tokens), built from config objects around the real Mistral tokenizer file, for
`scripts/gpu_bench.py` (timings do not depend on the weights' values). Nothing is downloaded.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..models import CLIP_VIT_L_336, MISTRAL_7B_SHAPE


def tokenizer_from_file(path: Path) -> Any:
    """The Mistral-7B SentencePiece tokenizer with LLaVA's `<image>` and `<pad>` added, read the
    way FFAA's checkpoint tokenizer is (legacy, BOS, left padding)."""
    import transformers

    from .llava_layout import add_llava_tokens

    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    with tempfile.TemporaryDirectory(prefix="ffaa-tok-") as folder:
        shutil.copyfile(path, Path(folder) / "tokenizer.model")
        tokenizer = transformers.LlamaTokenizer.from_pretrained(
            folder, legacy=True, add_bos_token=True, add_eos_token=False, model_max_length=4096,
            padding_side="left")
    add_llava_tokens(tokenizer)
    return tokenizer


def llava_config(tokenizer: Any, tiny: bool) -> Any:
    """FFAA's LlavaConfig (or the tiny test model's config for a dry run)."""
    import transformers

    from .llava_layout import padded_vocab_size

    image_id, pad_id = tokenizer.convert_tokens_to_ids(["<image>", "<pad>"])
    if tiny:
        from .tiny import tiny_configs

        return tiny_configs(len(tokenizer), image_id, pad_id, "llava")
    vision = transformers.CLIPVisionConfig(**CLIP_VIT_L_336.config())
    text = transformers.MistralConfig(vocab_size=padded_vocab_size(len(tokenizer)), bos_token_id=1, eos_token_id=2,
                                      pad_token_id=pad_id, tie_word_embeddings=False, **MISTRAL_7B_SHAPE)
    return transformers.LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=image_id, image_seq_length=576,
        projector_hidden_act="gelu", vision_feature_select_strategy="default", vision_feature_layer=-2,
        tie_word_embeddings=False)


def build_model(dst: Path, tokenizer_path: Path, tiny: bool, device: str) -> Path:
    """Random-weight model (bf16 on the GPU, fp32 for a dry run) plus processor, saved in `dst`."""
    import torch
    import transformers

    from ..prompts import load_prompt_set
    from .llava_layout import build_image_processor, build_processor, save_processor

    tokenizer = tokenizer_from_file(tokenizer_path)
    config = llava_config(tokenizer, tiny)
    dtype = torch.float32 if tiny else torch.bfloat16
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        with torch.device(device):
            model = transformers.LlavaForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(previous)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = 1, 2, config.text_config.pad_token_id
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dst))
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    processor = build_processor(tokenizer, build_image_processor(336, None, pad_to_square=True), 14, "default")
    ps = load_prompt_set()
    save_processor(processor, dst, legacy=True, probe=ps.chat([(ps.questions[0], None)]))
    return dst
