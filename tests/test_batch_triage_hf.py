"""Triage on the real transformers backend (tiny random LLaVA): next-token P(fake), batched."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("mistral_common", reason="the tiny model's tokenizer ships in mistral-common")

from PIL import Image
from test_batch_support import by_record, noise_images, read_jsonl

from ffaa.backends.base import GenerationRequest
from ffaa.batch import BatchConfig, EngineSettings, run_batch, triage_prompt
from ffaa.batch.journal import LOG_NAME
from ffaa.decision import MajorityDecider
from ffaa.pipeline import AnalysisOptions, Assistant
from ffaa.prompts import load_prompt_set


@pytest.fixture(scope="module")
def backend():
    from ffaa.backends.hf_llava import HFLlavaBackend
    from ffaa.backends.tiny import tiny_model_dir

    return HFLlavaBackend.load(str(tiny_model_dir()))


@pytest.mark.slow
def test_score_verdict_is_a_probability_independent_of_batch_padding(backend):
    prompts = load_prompt_set()
    short = triage_prompt(prompts)
    long = prompts.chat([(prompts.questions[1] + " " + prompts.triage, None)]) + " Analysis result:"
    images = [Image.new("RGB", (336, 336), (200, 40, 40)), Image.new("RGB", (336, 336), (20, 90, 160))]
    requests = [GenerationRequest(images[0], short), GenerationRequest(images[1], long)]
    batched = backend.score_verdict(requests)
    alone = [backend.score_verdict([r])[0] for r in requests]
    assert all(0.0 < s < 1.0 for s in batched)
    assert batched == pytest.approx(alone, abs=1e-4)  # left padding: the last position is each row's
    assert backend.score_verdict([]) == []


@pytest.mark.slow
def test_triage_batch_on_the_transformers_backend(backend, tmp_path):
    images = noise_images(tmp_path / "in", 3, size=64)
    options = AnalysisOptions(face_mode="whole", batch_size=2)
    factory = lambda: Assistant(backend, MajorityDecider(), options=options)
    config = BatchConfig(out=tmp_path / "out", inputs=tuple(map(str, images)), progress=False,
                         engine=EngineSettings(mode="triage", triage_threshold=0.3))
    assert run_batch(config, factory).written == 3
    faces = by_record(read_jsonl(tmp_path / "out" / LOG_NAME), "face")
    assert len(faces) == 3
    assert {f["provenance"]["backend"] for f in faces} == {"transformers/LlavaForConditionalGeneration"}
    for f in faces:
        score = f["decision"]["forgery_score"]
        assert f["summary"]["verdict"] == ("fake" if score >= 0.3 else "real")
        assert f["provenance"]["decoder"] == "triage"
