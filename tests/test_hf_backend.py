"""The transformers LLaVA backend on the tiny model: batching, 4-bit on CPU, streaming, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ffaa.backends.generation import answer_end_pattern, cut_after_answer
from ffaa.backends.hf_llava import HFLlavaBackend, LoadOptions, locate_model
from ffaa.bench import candidate_requests, run_bench
from ffaa.errors import CheckpointError, FfaaError, WeightsNotFoundError
from ffaa.types import DecodingSettings

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def backend():
    from ffaa.backends.tiny import tiny_model_dir

    return HFLlavaBackend.load(str(tiny_model_dir()), LoadOptions(device="cpu"))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in ((336, 336), (200, 300))]


SETTINGS = DecodingSettings(max_new_tokens=12, min_new_tokens=12, stop_at_answer_end=False)


def test_defaults_on_cpu(backend):
    assert backend.info.device == "cpu" and backend.info.quantization == "none"
    assert backend.info.dtype == "float32"
    assert backend.tokenizer.padding_side == "left"


def test_batched_answers_equal_answers_alone(backend, images):
    requests = candidate_requests(images[1])  # prompts of different lengths: left padding matters
    batched = backend.generate(requests, SETTINGS)
    alone = [backend.generate([r], SETTINGS)[0] for r in requests]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert all(g.new_tokens == 12 and g.stopped_by == "max_new_tokens" for g in batched)


def test_never_writes_image_or_padding_tokens(backend, images):
    banned = backend._non_text_ids()
    assert 32000 in banned and 32001 in banned


def test_stream_pieces_join_to_the_generated_text(backend, images):
    request = candidate_requests(images[0])[0]
    pieces = list(backend.stream(request, SETTINGS))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == backend.generate([request], SETTINGS)[0].text


def test_4bit_on_cpu_loads_quantised_layers_and_generates(images):
    from ffaa.backends.tiny import tiny_model_dir

    quant = HFLlavaBackend.load(str(tiny_model_dir()), LoadOptions(device="cpu", quant="4bit"))
    assert quant.info.quantization == "4bit"
    kinds = {type(m).__name__ for m in quant.model.model.language_model.modules()}
    assert "Linear4bit" in kinds
    assert type(quant.model.lm_head).__name__ == "Linear"  # kept in full precision
    out = quant.generate(candidate_requests(images[0]), SETTINGS)
    assert len(out) == 3 and all(g.new_tokens == 12 for g in out)


def test_bench_harness_runs_both_flows(backend, images):
    result = run_bench(backend, images[0], new_tokens=4, repeats=1)
    assert [f.name for f in result.flows] == ["ffaa_reference", "batched"]
    assert all(f.new_tokens == 12 for f in result.flows)  # 3 candidates x 4 tokens
    assert result.speedup > 0


def test_cut_after_answer_end():
    end = answer_end_pattern(("Forgery type", "type"))
    text = "Analysis result: fake\nProbability: 0.9\nForgery type: Identity exchange\nThanks! Anything else?"
    assert cut_after_answer(text, end).endswith("Forgery type: Identity exchange")
    assert cut_after_answer("no format here", end) == "no format here"
    assert cut_after_answer(text, None) == text  # a request without end labels is never cut


def test_missing_and_broken_model_folders(tmp_path, monkeypatch):
    with pytest.raises(WeightsNotFoundError, match="not found"):
        locate_model(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        locate_model(str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="about 15 GB"):
        locate_model("nobody-here/no-such-model")


def test_bad_options_are_one_line_errors(backend):
    with pytest.raises(FfaaError, match="unknown quantisation"):
        HFLlavaBackend.load("x", LoadOptions(quant="3bit"))
    if not torch.cuda.is_available():
        with pytest.raises(FfaaError, match="CUDA is not available"):
            HFLlavaBackend.load("x", LoadOptions(device="cuda"))


def test_closing_a_stream_stops_generation_and_frees_the_model(backend, images, monkeypatch):
    lengths = []
    real_generate = backend.model.generate

    def recording_generate(**kwargs):
        out = real_generate(**kwargs)
        lengths.append(out.shape[1] - kwargs["input_ids"].shape[1])
        return out

    monkeypatch.setattr(backend.model, "generate", recording_generate)
    long = DecodingSettings(max_new_tokens=400, min_new_tokens=400, stop_at_answer_end=False)
    stream = backend.stream(candidate_requests(images[0])[0], long)
    next(stream)
    stream.close()  # the consumer walks away after the first piece
    assert lengths and lengths[0] < 400
    assert backend._lock.acquire(timeout=5)
    backend._lock.release()


def test_offline_hub_id_names_the_download_command(tmp_path, monkeypatch):
    """The message names the hub client's current command (`hf download`; huggingface_hub 1.x
    has no `huggingface-cli`)."""
    import ffaa.backends.hub as hub

    monkeypatch.setenv("FFAA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(WeightsNotFoundError) as info:
        locate_model("someone/not-cached")
    message = str(info.value)
    assert "`hf download someone/not-cached --local-dir DIR`" in message and "--model DIR" in message
    assert "huggingface-cli" not in message


def test_hub_id_with_a_cached_conversion_needs_no_network(shared_fixtures, tmp_path, monkeypatch):
    import ffaa.backends.convert as convert
    import ffaa.backends.hub as hub

    monkeypatch.setenv("FFAA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(convert, "download_checkpoint",
                        lambda repo, revision=None: shared_fixtures / "llava" / "tiny_original")
    first = convert.ensure_converted("someone/ffaa-tiny")

    def no_network(*args, **kwargs):
        raise AssertionError("the hub was contacted")

    monkeypatch.setattr(convert, "download_checkpoint", no_network)
    monkeypatch.setattr(hub, "hub_reachable", no_network)
    assert locate_model("someone/ffaa-tiny") == first
