"""The tiny random LLaVA: same classes as the real model, loads through the Auto classes,
generates on CPU, in fp32 and in bitsandbytes 4-bit, deterministically for a seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("mistral_common", reason="the tiny model's tokenizer ships in mistral-common")
from PIL import Image  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from ffaa.backends import tiny  # noqa: E402
from ffaa.prompts import load_prompt_set  # noqa: E402

KEEP_UNQUANTIZED = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_tiny_llava(tmp_path_factory.mktemp("tiny") / "llava", seed=0)


@pytest.fixture(scope="module")
def processor(tiny_dir: Path):
    return transformers.AutoProcessor.from_pretrained(tiny_dir, backend="pil")


def _prompt(question: str = "Is it real or fake?") -> str:
    return load_prompt_set().chat([(question, None)])


def _image(width: int = 300, height: int = 200) -> Image.Image:
    gradient = torch.linspace(0, 255, width).to(torch.uint8).expand(height, width)
    return Image.fromarray(torch.stack([gradient, gradient.flip(1), gradient // 2], dim=-1).numpy())


def test_folder_loads_with_the_real_classes(tiny_dir: Path, processor) -> None:
    model = transformers.AutoModelForImageTextToText.from_pretrained(tiny_dir)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert type(processor).__name__ == "LlavaProcessor"
    text = model.config.text_config
    assert (text.model_type, text.sliding_window, text.vocab_size) == ("mistral", None, 32064)
    assert (model.config.image_token_index, model.generation_config.pad_token_id) == (32000, 32001)
    assert json.loads((tiny_dir / tiny.MARKER_FILE).read_text())["random_weights"] is True


def test_processor_expands_image_and_uses_the_vicuna_template(processor) -> None:
    inputs = processor(images=_image(), text=_prompt(), return_tensors="pt")
    assert int((inputs["input_ids"] == 32000).sum()) == 576
    assert inputs["pixel_values"].shape == (1, 3, 336, 336)
    messages = [
        {"role": "system", "content": [{"type": "text", "text": load_prompt_set().system}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q1"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a1"}]},
        {"role": "user", "content": [{"type": "text", "text": "q2"}]},
    ]
    rendered = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered == load_prompt_set().chat([("q1", "a1"), ("q2", None)])
    assert rendered.endswith(" USER: <image>\nq1 ASSISTANT: a1</s>USER: q2 ASSISTANT:")


def test_generates_deterministically_and_in_batches(tiny_dir: Path, processor) -> None:
    model = transformers.AutoModelForImageTextToText.from_pretrained(tiny_dir).eval()
    single = processor(images=_image(), text=_prompt(), return_tensors="pt")
    out1 = model.generate(**single, max_new_tokens=6, do_sample=False)
    out2 = model.generate(**single, max_new_tokens=6, do_sample=False)
    assert torch.equal(out1, out2) and out1.shape[1] == single["input_ids"].shape[1] + 6
    batch = processor(
        images=[_image(), _image(181, 260)], text=[_prompt(), _prompt("A longer question here, why?")],
        return_tensors="pt", padding=True,
    )
    assert batch["attention_mask"][0, 0] == 0 and batch["input_ids"][0, 0] == 32001  # left padded
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    new = out[:, batch["input_ids"].shape[1] :]
    assert new.shape == (2, 4) and bool((new < 32000).all())
    assert torch.equal(new[0], out1[0, single["input_ids"].shape[1] :][:4])  # padding changes nothing


def test_4bit_on_cpu(tiny_dir: Path, processor) -> None:
    bnb = pytest.importorskip("bitsandbytes")
    config = transformers.BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32,
        llm_int8_skip_modules=KEEP_UNQUANTIZED,
    )
    model = transformers.AutoModelForImageTextToText.from_pretrained(tiny_dir, quantization_config=config)
    layer = model.model.language_model.layers[0]
    assert isinstance(layer.self_attn.k_proj, bnb.nn.Linear4bit)
    assert isinstance(layer.mlp.down_proj, bnb.nn.Linear4bit)
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)
    assert not isinstance(model.model.multi_modal_projector.linear_1, bnb.nn.Linear4bit)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.model.vision_tower.modules())
    inputs = processor(images=_image(), text=_prompt(), return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4


def test_same_seed_same_weights(tiny_dir: Path, tmp_path: Path) -> None:
    reference = load_file(str(tiny_dir / "model.safetensors"))
    again = load_file(str(tiny.build_tiny_llava(tmp_path / "again", seed=0) / "model.safetensors"))
    assert reference.keys() == again.keys()
    assert all(torch.equal(reference[k], again[k]) for k in reference)
    other = tiny._random_model(transformers.AutoConfig.from_pretrained(tiny_dir), seed=1, kind="llava")
    (head,) = [k for k in reference if k.endswith("lm_head.weight")]  # on-disk name varies by version
    assert not torch.equal(other.lm_head.weight, reference[head])


def test_building_leaves_the_global_rng_alone(tiny_dir: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny._random_model(transformers.AutoConfig.from_pretrained(tiny_dir), seed=5, kind="llava")
    assert torch.equal(torch.rand(3), expected)


def test_llava_next_kind(tmp_path: Path) -> None:
    folder = tiny.build_tiny_llava(tmp_path / "next", kind="llava_next")
    model = transformers.AutoModelForImageTextToText.from_pretrained(folder).eval()
    processor = transformers.AutoProcessor.from_pretrained(folder, backend="pil")
    assert type(model).__name__ == "LlavaNextForConditionalGeneration"
    assert processor.image_processor.image_grid_pinpoints == model.config.image_grid_pinpoints
    inputs = processor(images=_image(336, 336), text=_prompt(), return_tensors="pt")
    assert int((inputs["input_ids"] == 32000).sum()) == 1176  # base view + 2x1 tiles, with newlines
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


def test_tiny_model_dir_builds_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FFAA_CACHE", str(tmp_path))
    first = tiny.tiny_model_dir()
    assert first == tmp_path / "tiny" / "llava-seed0"

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached tiny model should have been reused")

    monkeypatch.setattr(tiny, "build_tiny_llava", no_rebuild)
    assert tiny.tiny_model_dir() == first
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["llava-seed0"]


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind must be 'llava' or 'llava_next'"):
        tiny.build_tiny_llava(tmp_path / "x", kind="qwen")  # type: ignore[arg-type]
