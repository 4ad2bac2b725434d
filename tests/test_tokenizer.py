"""The real Mistral-7B tokenizer from mistral-common gives the original LLaVA code's ids."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")
pytest.importorskip("mistral_common", reason="the tokenizer file ships in mistral-common")

from ffaa.backends.tiny import load_mistral_tokenizer, mistral_tokenizer_file  # noqa: E402
from ffaa.prompts import load_prompt_set  # noqa: E402

# sha256 of Mistral-7B v1's SentencePiece model, as recorded in the golden fixture's README.
MISTRAL_V1_SHA256 = "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"


@pytest.fixture(scope="module")
def tokenizer():
    return load_mistral_tokenizer()


@pytest.fixture(scope="module")
def golden(shared_fixtures: Path) -> dict:
    path = shared_fixtures / "llava" / "golden.json"
    if not path.is_file():
        pytest.skip(f"LLaVA golden fixture not found: {path}")
    return json.loads(path.read_text())


def test_file_is_mistral_7b_v1() -> None:
    assert hashlib.sha256(mistral_tokenizer_file().read_bytes()).hexdigest() == MISTRAL_V1_SHA256


def test_added_tokens(tokenizer) -> None:
    assert tokenizer.vocab_size == 32000 and len(tokenizer) == 32002
    assert tokenizer.convert_tokens_to_ids(["<image>", "<pad>"]) == [32000, 32001]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (1, 2, 32001)
    assert tokenizer.padding_side == "left"
    assert tokenizer("[INST]", add_special_tokens=False).input_ids == [733, 16289, 28793]


@pytest.mark.parametrize("index", [0, 1])
def test_golden_prompt_gives_the_original_ids(tokenizer, golden: dict, index: int) -> None:
    case = golden["cases"][index]
    prompt = load_prompt_set().chat([(case["question"], None)])
    assert prompt == case["prompt"]
    ids = tokenizer(prompt).input_ids
    assert ids == case["input_ids_hf_unexpanded"]
    # The original code's ids are the same with -200 where `<image>` is.
    assert [-200 if i == 32000 else i for i in ids] == case["input_ids_original"]
    position = case["image_token_position"]
    assert ids[position - 1 : position + 3] == [28705, 32000, 28705, 13]  # '▁' on both sides, then '\n'

