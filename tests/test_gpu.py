"""Checks that need CUDA (and, for the last one, FFAA's real weights). Skipped elsewhere.

Run on a GPU machine with `pytest -m gpu`; set FFAA_MODEL to a local FFAA checkpoint folder
(original or converted layout) and FFAA_MIDS to its mids.pth for the end-to-end check.
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

SETTINGS_TOKENS = 16


@pytest.fixture(scope="module")
def image():
    from PIL import Image

    from ffaa.demo_image import sample_face_path

    return Image.open(sample_face_path()).convert("RGB").resize((336, 336))


@pytest.mark.parametrize("quant", ["4bit", "none"])
def test_tiny_model_generates_on_cuda(quant, image):
    from ffaa.backends.hf_llava import HFLlavaBackend, LoadOptions
    from ffaa.backends.tiny import tiny_model_dir
    from ffaa.bench import candidate_requests
    from ffaa.types import DecodingSettings

    backend = HFLlavaBackend.load(str(tiny_model_dir()), LoadOptions(device="cuda", quant=quant, compile="off"))
    settings = DecodingSettings(max_new_tokens=SETTINGS_TOKENS, min_new_tokens=SETTINGS_TOKENS)
    out = backend.generate(candidate_requests(image), settings)
    assert [g.new_tokens for g in out] == [SETTINGS_TOKENS] * 3


def test_compiled_decoding_matches_plain_on_cuda(image):
    from ffaa.backends.hf_llava import HFLlavaBackend, LoadOptions
    from ffaa.backends.tiny import tiny_model_dir
    from ffaa.bench import candidate_requests
    from ffaa.types import DecodingSettings

    settings = DecodingSettings(max_new_tokens=SETTINGS_TOKENS, min_new_tokens=SETTINGS_TOKENS,
                                stop_at_answer_end=False)
    folder = str(tiny_model_dir())
    plain = HFLlavaBackend.load(folder, LoadOptions(device="cuda", quant="none", dtype="fp32", compile="off"))
    fast = HFLlavaBackend.load(folder, LoadOptions(device="cuda", quant="none", dtype="fp32", compile="on"))
    fast.warmup()
    requests = candidate_requests(image)
    assert [g.text for g in fast.generate(requests, settings)] == [g.text for g in plain.generate(requests, settings)]


@pytest.mark.skipif(not os.environ.get("FFAA_MODEL"), reason="set FFAA_MODEL to FFAA's checkpoint folder")
def test_real_checkpoint_end_to_end(image, tmp_path):
    from ffaa.backends.hf_llava import HFLlavaBackend, LoadOptions
    from ffaa.pipeline import AnalysisOptions, Assistant

    backend = HFLlavaBackend.load(os.environ["FFAA_MODEL"], LoadOptions(device="cuda"))
    decider = None
    if os.environ.get("FFAA_MIDS"):
        from ffaa.mids.decider import MidsDecider

        decider = MidsDecider.from_pretrained(os.environ["FFAA_MIDS"], device="cuda")
    path = tmp_path / "face.png"
    image.save(path)
    reports = Assistant(backend, decider, options=AnalysisOptions(face_mode="auto")).analyze(path)
    parsed = [c for r in reports for c in r.candidates if c.parse.ok]
    assert parsed, [c.raw_text[:200] for r in reports for c in r.candidates]
    assert reports[0].decision.verdict is not None
