"""The demo model: the tiny random LLaVA trained to write the answer format. It must load as
the real class, answer the pipeline's three prompts in a parseable form (the hypotheses with
their own verdict), and make `ffaa analyze --demo` end in a decided report."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("mistral_common", reason="the demo model's tokenizer ships in mistral-common")
from PIL import Image  # noqa: E402

from ffaa.backends import demo  # noqa: E402
from ffaa.parsing import parse_answer  # noqa: E402
from ffaa.prompts import load_prompt_set  # noqa: E402
from ffaa.types import ForgeryType, Verdict  # noqa: E402


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """Built once per test session into the session's cache (see conftest)."""
    return demo.demo_model_dir()


@pytest.fixture(scope="session")
def astronaut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real photo the model never saw in training (it trains on noise and shapes only)."""
    data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture(scope="session")
def backend(demo_dir: Path):
    from ffaa.backends.hf_llava import HFLlavaBackend, LoadOptions

    return HFLlavaBackend.load(str(demo_dir), LoadOptions(device="cpu"), demo=True)


def _complete(text: str):
    """The parsed answer, after checking that every one of the five fields was read."""
    parsed = parse_answer(text)
    assert parsed.answer is not None, (parsed.error, text)
    answer = parsed.answer
    assert answer.description and answer.reasoning, text
    assert answer.probability is not None and 0.0 <= answer.probability <= 1.0, text
    assert answer.forgery_type is not None, text
    assert not parsed.warnings, (parsed.warnings, text)
    return answer


@pytest.mark.parametrize("verdict", ["real", "fake"])
def test_synthetic_answers_use_the_exact_format(verdict: str) -> None:
    rng = random.Random(3)
    for _ in range(20):
        text = demo.synthetic_answer(rng, verdict)
        answer = _complete(text)
        assert answer.verdict == Verdict(verdict)
        assert text.splitlines()[0].startswith("Image description: ")
        assert len(text.splitlines()) == 5
        assert (answer.forgery_type == ForgeryType.NONE) == (verdict == "real")
        assert (answer.probability < 0.5) == (verdict == "real")


def test_build_is_recorded_and_cached(demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = json.loads((demo_dir / demo.MARKER_FILE).read_text())
    assert marker["trained_to_format_only"] is True
    assert marker["seed"] == 0 and marker["steps"] == demo.DEFAULT_STEPS
    assert marker["transformers"] == transformers.__version__
    assert marker["probes_passed"] is True and 0 < marker["steps_run"] <= marker["steps"]
    assert 0.0 < marker["final_loss"] < 1.0 and 0.0 < marker["held_out_loss"] < 1.0
    assert not (demo_dir / "ffaa_tiny.json").exists()  # the "random weights" marker no longer holds

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached demo model should have been reused")

    monkeypatch.setattr(demo, "build_demo_llava", no_rebuild)
    assert demo.demo_model_dir() == demo_dir


def test_loads_through_the_auto_classes_as_the_real_class(demo_dir: Path) -> None:
    model = transformers.AutoModelForImageTextToText.from_pretrained(demo_dir)
    processor = transformers.AutoProcessor.from_pretrained(demo_dir, backend="pil")
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert type(processor).__name__ == "LlavaProcessor"
    assert model.config.text_config.model_type == "mistral"


def test_answers_the_three_candidate_prompts_on_new_images(backend, astronaut: Path) -> None:
    from ffaa.backends.base import GenerationRequest
    from ffaa.types import DecodingSettings

    prompts = load_prompt_set()
    photo = Image.open(astronaut).convert("RGB")
    images = [photo.crop((150, 40, 310, 200)), photo, demo.synthetic_image(random.Random(99))]
    questions = [prompts.questions[i] for i in (0, 4, 8)]
    requests, expected = [], []
    for image, question in zip(images, questions):
        asks = ((question, None), (prompts.hypothesis("real"), "real"), (prompts.hypothesis("fake"), "fake"))
        for text, verdict in asks:
            requests.append(GenerationRequest(image, prompts.chat([(text, None)])))
            expected.append(verdict)
    gens = backend.generate(requests, DecodingSettings(max_new_tokens=160))
    for gen, verdict in zip(gens, expected):
        answer = _complete(gen.text)
        assert gen.stopped_by in ("eos", "answer_end")
        if verdict is not None:
            assert answer.verdict == Verdict(verdict), gen.text


def test_assistant_with_tiny_mids_decides(backend, astronaut: Path) -> None:
    mids = pytest.importorskip("ffaa.mids.decider")
    from ffaa.pipeline import Assistant

    (report,) = Assistant(backend, mids.MidsDecider.tiny(seed=0)).analyze(astronaut)
    assert all(c.answer is not None for c in report.candidates)
    decision = report.decision
    assert decision.verdict in (Verdict.REAL, Verdict.FAKE)
    assert decision.match_score is not None and decision.chosen_index is not None
    assert decision.difficulty == "hard"  # the two hypotheses disagree by construction
    assert report.provenance.demo is True


def test_cli_analyze_demo_json(demo_dir: Path, astronaut: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ffaa.mids.decider")
    from ffaa.cli import main

    assert main(["analyze", "--demo", str(astronaut), "--json"]) == 0
    out = capsys.readouterr()
    assert "WRITE THE ANSWER FORMAT" in out.err and "NOISE" in out.err
    (record,) = json.loads(out.out)
    summary = record["summary"]
    assert summary["verdict"] in ("real", "fake")
    assert isinstance(summary["match_score"], float)
    assert summary["difficulty"] in ("easy", "hard")
    assert summary["forgery_type"] is not None and summary["probability"] is not None
    assert record["provenance"]["demo"] is True


def test_training_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    from ffaa.backends.tiny import tiny_model_dir

    def trained(seed: int) -> dict[str, torch.Tensor]:
        folder = tiny_model_dir()
        model = transformers.AutoModelForImageTextToText.from_pretrained(folder)
        processor = transformers.AutoProcessor.from_pretrained(folder, backend="pil")
        summary = demo.train_to_format(model, processor, seed=seed, steps=2)
        assert summary.steps == 2 and not summary.probes_passed
        return {k: v.clone() for k, v in model.state_dict().items()}

    torch.manual_seed(11)
    expected = torch.rand(2)
    first = trained(0)
    torch.manual_seed(11)
    second, other = trained(0), trained(1)
    assert torch.equal(torch.rand(2), expected)  # training left the global RNG alone
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["lm_head.weight"], other["lm_head.weight"])
