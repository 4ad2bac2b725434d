"""The checkpoint converter against the original LLaVA code's golden outputs, its refusals and
its cache.

Golden data: ../shared/fixtures/llava (a tiny original-format checkpoint, FFAA's prompts, the
original code's input_ids, pixel values and last-5 logits). The golden tests skip when the
fixtures are absent; everything runs on CPU in float32.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

from ffaa.backends import convert  # noqa: E402
from ffaa.errors import CheckpointError, WeightsNotFoundError  # noqa: E402
from ffaa.prompts import load_prompt_set  # noqa: E402

ORIGINAL_VOCAB = 32000


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def llava_dir(shared_fixtures: Path) -> Path:
    folder = shared_fixtures / "llava"
    if not (folder / "tiny_original" / "model.safetensors").is_file():
        pytest.skip(f"LLaVA golden fixture not found in {folder}")
    return folder


@pytest.fixture(scope="session")
def original(llava_dir: Path) -> Path:
    return llava_dir / "tiny_original"


@pytest.fixture(scope="session")
def golden(llava_dir: Path) -> dict:
    data = json.loads((llava_dir / "golden.json").read_text())
    data["tensors"] = load_file(str(llava_dir / "golden_logits.safetensors"))
    return data


@pytest.fixture(scope="session")
def converted(original: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert.convert_original_checkpoint(original, tmp_path_factory.mktemp("conv") / "tiny")


@pytest.fixture(scope="session")
def model_and_processor(converted: Path):
    model = transformers.AutoModelForImageTextToText.from_pretrained(converted).eval()
    processor = transformers.AutoProcessor.from_pretrained(converted, backend="pil")
    return model, processor


def _case(golden: dict, name: str) -> dict:
    return next(c for c in golden["cases"] if c["name"] == name)


CASES = ["case_a_free", "case_b_hypothesis_fake"]


def _inputs(processor, llava_dir: Path, case: dict):
    from PIL import Image

    with Image.open(llava_dir / case["image_file"]) as image:
        return processor(images=image.convert("RGB"), text=case["prompt"], return_tensors="pt")


# ------------------------------------------------------------------ golden equality


@pytest.mark.parametrize("name", CASES)
def test_prompt_renders_exactly_as_the_original(golden: dict, name: str) -> None:
    case = _case(golden, name)
    assert load_prompt_set().system == golden["system_prompt"]
    assert load_prompt_set().chat([(case["question"], None)]) == case["prompt"]


@pytest.mark.parametrize("name", CASES)
def test_processor_gives_golden_ids_and_pixels(model_and_processor, golden, llava_dir, name) -> None:
    _, processor = model_and_processor
    case = _case(golden, name)
    inputs = _inputs(processor, llava_dir, case)
    assert inputs["input_ids"][0].tolist() == case["input_ids_hf_expanded"]
    assert int((inputs["input_ids"] == golden["image_token_index_hf"]).sum()) == golden["num_image_tokens"]
    expected = golden["tensors"][f"{name}.pixel_values"]
    assert inputs["pixel_values"].shape == expected.shape == (1, 3, 336, 336)
    torch.testing.assert_close(inputs["pixel_values"], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", CASES)
def test_logits_and_greedy_token_match_the_original(model_and_processor, golden, llava_dir, name) -> None:
    model, processor = model_and_processor
    case = _case(golden, name)
    inputs = _inputs(processor, llava_dir, case)
    with torch.no_grad():
        logits = model(**inputs).logits[0, -golden["n_last_positions"] :, :ORIGINAL_VOCAB]
    expected = golden["tensors"][f"{name}.logits_last5"]
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
    assert int(logits[-1].argmax()) == case["greedy_next_token_id"]
    assert logits[-1].topk(5).indices.tolist() == case["top5_next_token_ids"]


def test_generate_starts_with_the_golden_token(model_and_processor, golden, llava_dir) -> None:
    """generate() uses the saved generation config (pad id, suppressed padded vocab ids)."""
    model, processor = model_and_processor
    case = _case(golden, "case_a_free")
    inputs = _inputs(processor, llava_dir, case)
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    assert new[0] == case["greedy_next_token_id"]
    assert all(t < ORIGINAL_VOCAB for t in new)


# ------------------------------------------------------------------ what the folder holds


def test_converted_config_keeps_the_original_fields(converted: Path) -> None:
    config = transformers.AutoConfig.from_pretrained(converted)
    text = config.text_config
    assert (config.model_type, text.model_type) == ("llava", "mistral")
    assert text.rope_parameters["rope_theta"] == 1e6
    assert text.sliding_window is None
    assert text.rms_norm_eps == 1e-5
    assert (text.vocab_size, config.image_token_index, text.pad_token_id) == (32064, 32000, 32001)
    assert (config.vision_feature_layer, config.vision_feature_select_strategy) == (-2, "default")
    assert (config.image_seq_length, config.projector_hidden_act) == (576, "gelu")
    assert (config.vision_config.hidden_size, config.vision_config.hidden_act) == (32, "quick_gelu")
    generation = json.loads((converted / "generation_config.json").read_text())
    assert generation["pad_token_id"] == 32001
    assert generation["suppress_tokens"] == list(range(32000, 32064))


def test_padded_vocab_rows(model_and_processor, original: Path) -> None:
    """lm_head rows for new ids are zero; new embedding rows are the mean embedding."""
    model, _ = model_and_processor
    source = load_file(str(original / "model.safetensors"))
    embed = model.get_input_embeddings().weight.detach()
    head = model.get_output_embeddings().weight.detach()
    assert torch.equal(embed[:ORIGINAL_VOCAB], source["model.embed_tokens.weight"])
    assert torch.equal(head[:ORIGINAL_VOCAB], source["lm_head.weight"])
    assert torch.count_nonzero(head[ORIGINAL_VOCAB:]) == 0
    mean = source["model.embed_tokens.weight"].mean(dim=0)
    torch.testing.assert_close(embed[ORIGINAL_VOCAB:], mean.expand(64, -1))


def test_vision_tower_comes_from_the_checkpoint(model_and_processor, original: Path, llava_dir: Path) -> None:
    """The fine-tuned tower in the checkpoint (W1), not the stand-in CLIP folder (W0)."""
    model, _ = model_and_processor
    source = load_file(str(original / "model.safetensors"))
    stand_in = load_file(str(llava_dir / "tiny_clip_vit_336" / "model.safetensors"))
    tower = model.model.vision_tower
    ours = getattr(tower, "vision_model", tower).embeddings.patch_embedding.weight.detach()  # older releases nest it
    key = "embeddings.patch_embedding.weight"
    assert torch.equal(ours, source["model.vision_tower.vision_tower.vision_model." + key])
    assert not torch.equal(ours, stand_in["vision_model." + key])


def test_marker_and_detection(converted: Path, original: Path, llava_dir: Path, tmp_path: Path) -> None:
    marker = json.loads((converted / convert.MARKER_FILE).read_text())
    assert marker["source"] == str(original)
    assert marker["source_config_sha256"] == convert.hashlib.sha256((original / "config.json").read_bytes()).hexdigest()
    assert marker["conversion_format"] == convert.CONVERSION_FORMAT
    assert marker["ffaa_version"]
    assert convert.is_original_llava_checkpoint(original)
    assert not convert.is_original_llava_checkpoint(converted)
    assert not convert.is_original_llava_checkpoint(llava_dir / "tiny_clip_vit_336")
    assert not convert.is_original_llava_checkpoint(tmp_path)


# ------------------------------------------------------------------ other inputs that must work


def _variant(tmp_path: Path, original: Path, llava_dir: Path, *, config=None, tensors=None) -> Path:
    """A copy of the fixture with config changes and/or other tensors (tokenizer linked)."""
    folder = tmp_path / "variant"
    folder.mkdir()
    cfg = json.loads((original / "config.json").read_text())
    cfg["mm_vision_tower"] = str(llava_dir / "tiny_clip_vit_336")
    cfg.update(config or {})
    (folder / "config.json").write_text(json.dumps(cfg))
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        (folder / name).symlink_to(original / name)
    if tensors is None:
        (folder / "model.safetensors").symlink_to(original / "model.safetensors")
    else:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def _weights(folder: Path) -> dict:
    return load_file(str(next(folder.glob("*.safetensors"))))


def test_pytorch_bin_shards_convert_identically(original, llava_dir, converted, tmp_path) -> None:
    """Sharded `.bin` checkpoints with an index give the same tensors as safetensors."""
    source = _variant(tmp_path, original, llava_dir)
    (source / "model.safetensors").unlink()
    tensors = load_file(str(original / "model.safetensors"))
    names = sorted(tensors)
    shards = {"pytorch_model-00001-of-00002.bin": names[::2], "pytorch_model-00002-of-00002.bin": names[1::2]}
    for shard, keys in shards.items():
        torch.save({k: tensors[k] for k in keys}, source / shard)
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (source / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    out = convert.convert_original_checkpoint(source, tmp_path / "out")
    ours, reference = _weights(out), _weights(converted)
    assert ours.keys() == reference.keys()
    assert all(torch.equal(ours[k], reference[k]) for k in reference)


def test_dtype_cast_and_image_newline_dropped(original, llava_dir, tmp_path) -> None:
    tensors = load_file(str(original / "model.safetensors"))
    tensors["model.image_newline"] = torch.zeros(64)
    source = _variant(tmp_path, original, llava_dir, tensors=tensors)
    out = convert.convert_original_checkpoint(source, tmp_path / "out", dtype="float16")
    saved = _weights(out)
    assert {t.dtype for t in saved.values()} == {torch.float16}
    assert not any("image_newline" in k for k in saved)
    assert transformers.AutoConfig.from_pretrained(out).dtype == torch.float16


def test_known_clip_config_is_cross_checked_against_tensors(original, llava_dir, tmp_path) -> None:
    """The built-in CLIP-L/336 config is used for FFAA's hub id, and refused when the tensors disagree."""
    for tower in ("openai/clip-vit-large-patch14-336", "models/clip-vit-large-patch14-336"):
        vision, folder = convert.resolve_vision_config(original, tower, None)
        assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (1024, 24, 16)
        assert (vision.intermediate_size, vision.image_size, vision.hidden_act) == (4096, 336, "quick_gelu")
        assert folder is None
    source = _variant(tmp_path, original, llava_dir, config={"mm_vision_tower": "openai/clip-vit-large-patch14-336"})
    message = r"hidden_size: config 1024 vs tensors 32.*num_hidden_layers: config 24 vs tensors 2"
    with pytest.raises(CheckpointError, match=message):
        convert.convert_original_checkpoint(source, tmp_path / "out")


def test_explicit_vision_config_with_wrong_depth_is_refused(original, tmp_path) -> None:
    wrong = transformers.CLIPVisionConfig.from_pretrained(str(original.parent / "tiny_clip_vit_336"))
    wrong.num_hidden_layers = 3
    with pytest.raises(CheckpointError, match="num_hidden_layers: config 3 vs tensors 2"):
        convert.convert_original_checkpoint(original, tmp_path / "out", vision_config=wrong)


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_aspect_ratio": "anyres"}, r"image_aspect_ratio='anyres' is not supported"),
        ({"mm_patch_merge_type": "spatial_unpad"}, r"mm_patch_merge_type='spatial_unpad' is not supported"),
        ({"mm_projector_type": "mlp3x_gelu"}, r"mm_projector_type='mlp3x_gelu' is not supported"),
        ({"mm_projector_type": "linear"}, r"mm_projector_type='linear' is not supported"),
        ({"mm_use_im_start_end": True}, r"mm_use_im_start_end=true is not supported"),
        ({"mm_vision_select_feature": "cls"}, r"mm_vision_select_feature='cls' is not supported"),
        ({"model_type": "llava_qwen", "architectures": ["X"]}, r"model_type='llava_qwen'.*not an original LLaVA"),
        ({"mm_vision_tower": "some/unknown-clip"}, r"mm_vision_tower='some/unknown-clip' is neither a local CLIP"),
        ({"vocab_size": 32064}, r"the tokenizer has 32000 tokens but config.json says vocab_size=32064"),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}}, r"rope_scaling=.* is not supported"),
    ],
)
def test_unsupported_configs_are_refused(original, llava_dir, tmp_path, changes, message) -> None:
    source = _variant(tmp_path, original, llava_dir, config=changes)
    with pytest.raises(CheckpointError, match=message):
        convert.convert_original_checkpoint(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_text_field_is_named(original, llava_dir, tmp_path) -> None:
    source = _variant(tmp_path, original, llava_dir)
    config = json.loads((source / "config.json").read_text())
    del config["rms_norm_eps"]
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json lacks \['rms_norm_eps'\]"):
        convert.convert_original_checkpoint(source, tmp_path / "out")


def test_missing_tensor_is_named(original, llava_dir, tmp_path) -> None:
    tensors = load_file(str(original / "model.safetensors"))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    source = _variant(tmp_path, original, llava_dir, tensors=tensors)
    with pytest.raises(CheckpointError, match=r"1 tensor\(s\) missing.*'model\.layers\.1\.mlp\.up_proj\.weight'"):
        convert.convert_original_checkpoint(source, tmp_path / "out")


def test_unexpected_tensor_is_named(original, llava_dir, tmp_path) -> None:
    tensors = load_file(str(original / "model.safetensors"))
    tensors["model.mm_projector.4.weight"] = torch.zeros(64, 64)
    source = _variant(tmp_path, original, llava_dir, tensors=tensors)
    message = r"1 tensor\(s\) in the checkpoint have no place.*model\.mm_projector\.4\.weight"
    with pytest.raises(CheckpointError, match=message):
        convert.convert_original_checkpoint(source, tmp_path / "out")


def test_shape_mismatch_is_named(original, llava_dir, tmp_path) -> None:
    tensors = load_file(str(original / "model.safetensors"))
    tensors["model.norm.weight"] = torch.ones(65)
    source = _variant(tmp_path, original, llava_dir, tensors=tensors)
    with pytest.raises(CheckpointError, match=r"model\.norm\.weight: \(65,\) vs expected \(64,\)"):
        convert.convert_original_checkpoint(source, tmp_path / "out")


def test_unreadable_weights_are_reported(original, llava_dir, tmp_path) -> None:
    source = _variant(tmp_path, original, llava_dir)
    (source / "model.safetensors").unlink()
    (source / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match=r"cannot read .*model\.safetensors"):
        convert.convert_original_checkpoint(source, tmp_path / "out")


def test_checkpoint_without_vision_tower_is_refused(original, llava_dir, tmp_path) -> None:
    tensors = {k: v for k, v in load_file(str(original / "model.safetensors")).items() if "vision_tower" not in k}
    source = _variant(tmp_path, original, llava_dir, tensors=tensors)
    with pytest.raises(CheckpointError, match="no vision tower tensors"):
        convert.convert_original_checkpoint(source, tmp_path / "out")


def test_non_empty_destination_is_refused(original, tmp_path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        convert.convert_original_checkpoint(original, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


# ------------------------------------------------------------------ the cache


def _count_conversions(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = convert.convert_original_checkpoint

    def counting(src, dst, **kwargs):
        calls.append(Path(src))
        return real(src, dst, **kwargs)

    monkeypatch.setattr(convert, "convert_original_checkpoint", counting)
    return calls


def test_ensure_converted_reuses_the_cache(original, tmp_path, monkeypatch) -> None:
    calls = _count_conversions(monkeypatch)
    first = convert.ensure_converted(original, cache_dir=tmp_path)
    second = convert.ensure_converted(original, cache_dir=tmp_path)
    assert first == second
    assert first.parent == tmp_path / "converted" and first.name.startswith("tiny_original-")
    assert len(calls) == 1
    assert [p.name for p in (tmp_path / "converted").iterdir()] == [first.name]  # nothing partial left
    assert convert.read_marker(first)["source"] == str(original.resolve())


def test_ensure_converted_redoes_a_changed_source(original, llava_dir, tmp_path, monkeypatch) -> None:
    source = _variant(tmp_path, original, llava_dir)
    calls = _count_conversions(monkeypatch)
    first = convert.ensure_converted(source, cache_dir=tmp_path / "cache")
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "mm_projector_lr": 1e-5}))
    second = convert.ensure_converted(source, cache_dir=tmp_path / "cache")
    assert first == second and len(calls) == 2
    sha = convert.hashlib.sha256((source / "config.json").read_bytes()).hexdigest()
    assert convert.read_marker(second)["source_config_sha256"] == sha
    assert len(list((tmp_path / "cache" / "converted").iterdir())) == 1


def test_interrupted_conversion_leaves_no_cache(original, tmp_path, monkeypatch) -> None:
    def interrupted(src, dst, **kwargs):
        (Path(dst) / "config.json").write_text("{}")  # half written
        raise KeyboardInterrupt

    monkeypatch.setattr(convert, "convert_original_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert.ensure_converted(original, cache_dir=tmp_path)
    assert list((tmp_path / "converted").iterdir()) == []


def test_partial_folder_of_a_dead_process_is_removed(tmp_path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    final = tmp_path / "converted" / "model-0123456789ab"
    final.parent.mkdir()
    stale = final.parent / f".partial-{final.name}-{dead.pid}-0123abcd"
    stale.mkdir()
    live = final.parent / f".partial-{final.name}-{convert.os.getpid()}-4567cdef"  # still running
    live.mkdir()
    convert.build_atomically(final, lambda tmp: (tmp / "done.txt").write_text("ok"))
    assert not stale.exists() and live.exists()
    assert (final / "done.txt").read_text() == "ok"


def test_hub_id_is_downloaded_once_then_served_from_cache(original, tmp_path, monkeypatch) -> None:
    downloads: list[str] = []

    def fake_download(repo_id, revision=None):
        downloads.append(repo_id)
        return original

    monkeypatch.setattr(convert, "download_checkpoint", fake_download)
    first = convert.ensure_converted("thu-huangzc/ffaa-mistral-7b", cache_dir=tmp_path)
    second = convert.ensure_converted("thu-huangzc/ffaa-mistral-7b", cache_dir=tmp_path)
    assert first == second and first.name.startswith("thu-huangzc--ffaa-mistral-7b-")
    assert downloads == ["thu-huangzc/ffaa-mistral-7b"]


def test_offline_hub_id_gives_a_clear_error(tmp_path, monkeypatch) -> None:
    hub = pytest.importorskip("huggingface_hub")

    def offline(*args, **kwargs):
        raise ConnectionError("no route to huggingface.co")

    monkeypatch.setattr(hub.HfApi, "list_repo_files", offline)
    monkeypatch.setattr(hub, "snapshot_download", offline)
    with pytest.raises(WeightsNotFoundError) as info:
        convert.ensure_converted("thu-huangzc/ffaa-mistral-7b", cache_dir=tmp_path)
    message = str(info.value)
    assert "hf download thu-huangzc/ffaa-mistral-7b --local-dir DIR" in message
    assert "15 GB" in message and "ConnectionError" in message and "FFAA_CACHE" in message


def test_other_folders_are_not_converted(llava_dir, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="is not an original-format LLaVA checkpoint"):
        convert.ensure_converted(llava_dir / "tiny_clip_vit_336", cache_dir=tmp_path)


def test_a_finished_cache_of_another_process_is_kept(tmp_path) -> None:
    final = tmp_path / "model-0123456789ab"
    final.mkdir()
    (final / "theirs.txt").write_text("finished first")
    convert.build_atomically(final, lambda tmp: (tmp / "ours.txt").write_text("x"), done=lambda f: True)
    assert [p.name for p in tmp_path.iterdir()] == [final.name]
    assert [p.name for p in final.iterdir()] == ["theirs.txt"]


def test_complete_hub_download_is_used_offline(original, monkeypatch) -> None:
    hub = pytest.importorskip("huggingface_hub")

    def local_only(repo_id, revision=None, local_files_only=False, **kwargs):
        if not local_files_only:
            raise AssertionError("the network should not be used")
        return str(original)

    monkeypatch.setattr(hub, "snapshot_download", local_only)
    monkeypatch.setattr(hub.HfApi, "list_repo_files", local_only)
    assert convert.download_checkpoint("thu-huangzc/ffaa-mistral-7b") == original


def test_missing_local_folder_is_not_sent_to_the_hub(tmp_path) -> None:
    with pytest.raises(WeightsNotFoundError, match="checkpoint folder not found"):
        convert.ensure_converted(str(tmp_path / "nope" / "deeper"), cache_dir=tmp_path)


def test_importing_the_modules_pulls_in_no_torch() -> None:
    code = (
        "import sys, ffaa.backends.convert, ffaa.backends.tiny;"
        "heavy = {'torch', 'transformers', 'safetensors'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
