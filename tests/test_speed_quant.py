"""Weight formats (`ffaa.backends.quant`) on the tiny model, CPU only: each format that runs on
the CPU really quantises the language model (and only it), shrinks it, and stays close to fp32:
int8 formats write the fp32 greedy tokens; int4 formats keep the verdict-position logits within
a quarter of the logit range (the tiny model is 64 wide, so int4 error is large relative to it;
on the real model the GPU script reports the same figures)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from ffaa.backends import quant as Q
from ffaa.errors import FfaaError


def test_choices_and_defaults():
    assert Q.QUANT_CHOICES == ("auto", "none", "4bit", "8bit", "int4-ao", "int4-hqq", "int8-ao")
    assert Q.default_quant("cpu") == "none"
    assert [n for n, f in Q.FORMATS.items() if f.compiles] == ["none", "int4-ao", "int4-hqq", "int8-ao"]
    with pytest.raises(FfaaError, match="unknown quantisation 'nf4'"):
        Q.quant_format("nf4")


def test_cli_offers_every_format():
    import argparse

    from ffaa.commands.common import add_model_args

    parser = argparse.ArgumentParser()
    add_model_args(parser)
    args = parser.parse_args(["--quant", "int4-hqq", "--compile", "static", "--compile-rows", "6"])
    assert (args.quant, args.compile, args.compile_rows) == ("int4-hqq", "static", 6)


def test_filter_keeps_vision_projector_and_head():
    lin = torch.nn.Linear(4, 4)
    assert Q.should_quantize(lin, "model.language_model.layers.0.mlp.up_proj")
    for name in ("lm_head", "model.vision_tower.vision_model.encoder.layers.0.mlp.fc1",
                 "model.multi_modal_projector.linear_1"):
        assert not Q.should_quantize(lin, name)
    assert not Q.should_quantize(torch.nn.Embedding(4, 4), "model.language_model.embed_tokens")


@pytest.fixture(scope="module")
def tiny_dir():
    from ffaa.backends.tiny import tiny_model_dir

    return str(tiny_model_dir())


def _load(tiny_dir, quant):
    from ffaa.backends.hf_llava import HFLlavaBackend, LoadOptions

    return HFLlavaBackend.load(tiny_dir, LoadOptions(device="cpu", quant=quant, compile="off"))


@pytest.fixture(scope="module")
def reference(tiny_dir):
    import numpy as np
    from PIL import Image

    from ffaa.bench import candidate_requests

    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (336, 336, 3), dtype=np.uint8))
    reqs = candidate_requests(image)
    backend = _load(tiny_dir, "none")
    return reqs, Q.fingerprint(backend, "none", reqs, 16), Q.weight_bytes(backend.model)


def test_group_size_fits_the_tiny_widths(tiny_dir):
    assert Q.group_size(_load(tiny_dir, "none").model) == 64


def _needs(quant):
    lib = Q.quant_format(quant).library
    pytest.importorskip(lib)


@pytest.mark.parametrize("quant,weight_type", [
    ("int8-ao", "Int8Tensor"), ("int4-ao", "Int4OpaqueTensor"), ("int4-hqq", "Int4OpaqueTensor"),
    ("4bit", "Params4bit"),
])
def test_format_quantises_only_the_language_model_and_stays_close(tiny_dir, reference, quant, weight_type):
    _needs(quant)
    reqs, ref, ref_bytes = reference
    backend = _load(tiny_dir, quant)
    model = backend.model
    assert backend.info.quantization == quant
    assert type(model.model.language_model.layers[0].mlp.up_proj.weight).__name__ == weight_type
    assert type(model.lm_head.weight).__name__ == "Parameter"
    assert type(model.model.multi_modal_projector.linear_1.weight).__name__ == "Parameter"
    assert Q.weight_bytes(model) < ref_bytes
    agreement = Q.compare(Q.fingerprint(backend, quant, reqs, 16), ref)
    scale = float(ref.verdict_logits.abs().max())
    assert 0.0 < agreement.max_logit_drift < 0.25 * scale
    if quant == "int8-ao":
        assert agreement.token_agreement == 1.0 and agreement.max_logit_drift < 0.05 * scale


def test_compare_counts_tokens_and_drift():
    a = Q.Fingerprint("x", ((1, 2, 3), (4, 5, 6)), torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0]]), (1, 2))
    b = Q.Fingerprint("ref", ((1, 2, 9), (7, 5, 6)), torch.tensor([[0.0, 1.5, 1.0], [0.0, 0.0, 0.0]]), (1, 2))
    got = Q.compare(a, b)
    assert got.token_agreement == pytest.approx(4 / 6)
    assert got.prefix_agreement == pytest.approx((2 / 3 + 0) / 2)
    assert got.max_logit_drift == pytest.approx(1.0)
    assert got.max_margin_drift == pytest.approx(1.5)  # (2-1) vs (1-1.5)
    assert got.same_verdict is False


def test_int4_on_cuda_needs_bf16():
    pytest.importorskip("torchao")
    model = torch.nn.Sequential(torch.nn.Linear(64, 64)).half()
    model.dtype = torch.float16
    with pytest.raises(FfaaError, match="needs --dtype bf16"):
        Q.apply_torchao(model, "int4-ao", "cuda")


def test_torchao_leaves_inductor_settings_alone(tiny_dir):
    """torchao's 'recommended' inductor settings (coordinate-descent autotuning) would make the
    start-up compile several times longer; loading a torchao format must not switch them on."""
    pytest.importorskip("torchao")
    import torch._inductor.config as inductor

    before = inductor.coordinate_descent_tuning
    _load(tiny_dir, "int4-ao")
    assert inductor.coordinate_descent_tuning == before is False


def test_compile_rows_follow_the_batch_size_in_batch_jobs():
    from ffaa.cli import build_parser
    from ffaa.commands.batch import build_config
    from ffaa.commands.common import assistant_spec
    from ffaa.errors import FfaaError

    parse = build_parser().parse_args
    assert assistant_spec(parse(["analyze", "x.png"])).compile_rows == 3
    assert build_config(parse(["batch", "in/", "--out", "o", "--batch-size", "24"]))[1].compile_rows == 24
    assert build_config(parse(["batch", "in/", "--out", "o", "--compile-rows", "6"]))[1].compile_rows == 6
    with pytest.raises(FfaaError, match="--compile-rows must be at least 1"):
        assistant_spec(parse(["analyze", "x.png", "--compile-rows", "0"]))
