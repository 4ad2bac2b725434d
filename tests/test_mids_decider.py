"""MidsDecider on a tiny random MIDS: the decision fields, one forward for all faces, batching
that does not change a face's scores, FFAA's strict verdict mode, truncation notes, and CLIP's
preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

from PIL import Image

from ffaa.decision import Decider
from ffaa.mids.decider import MidsDecider
from ffaa.mids.preprocess import clip_image_processor, pixel_values
from ffaa.mids.selector import select
from ffaa.parsing import parse_answer
from ffaa.types import Candidate, Verdict

ANSWER = ("Image description: {d}\nForgery reasoning: {r}\nAnalysis result: {v}\n"
          "Probability: 0.5\nForgery type: None")
REASONS = ["The skin around the eyes is too smooth.", "Lighting and shadows are consistent.",
           "A blending boundary is visible along the jaw."]


def candidates(verdicts, reasons=REASONS, description="A young woman facing the camera."):
    out = []
    for i, (v, r) in enumerate(zip(verdicts, reasons)):
        text = "no answer at all" if v is None else ANSWER.format(d=description, r=r, v=v)
        out.append(Candidate(i, "question" if i == 0 else "hypothesis_real", "q", text, parse_answer(text)))
    return out


def face(seed, size=(70, 90)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def decider():
    return MidsDecider.tiny(seed=0)


def test_is_a_decider(decider):
    assert isinstance(decider, Decider) and decider.name == "mids"


def test_decision_fields(decider):
    cands = candidates(["fake", None, "real"])
    (d,) = decider.decide_many([face(1)], [cands])
    assert d.method == "mids" and d.chosen_index in (0, 2)
    assert d.verdicts == ("fake", None, "real") and d.difficulty == "hard"
    assert [s.index for s in d.scores] == [0, 1, 2]
    excluded = d.scores[1]
    assert excluded.excluded_reason.startswith("did not parse") and excluded.probabilities is None
    scored = [d.scores[0], d.scores[2]]
    for s in scored:
        assert len(s.probabilities) == 4 and sum(s.probabilities) == pytest.approx(1, abs=1e-6)
    again = select(["fake", "real"], [s.probabilities for s in scored])
    assert d.chosen_index == [0, 2][again.best]
    assert d.match_score == again.match_score == scored[again.best].match_score
    assert d.verdict is (Verdict.FAKE if again.claims_fake else Verdict.REAL)
    assert d.forgery_score == pytest.approx(d.match_score if d.verdict is Verdict.FAKE else 1 - d.match_score)


def test_one_forward_for_all_faces(decider, monkeypatch):
    calls = []
    original = decider.net.logits_per_row

    def counting(pixels, ids, mask, index, record=None):
        calls.append((tuple(pixels.shape), tuple(ids.shape), index.tolist()))
        return original(pixels, ids, mask, index, record)

    monkeypatch.setattr(decider.net, "logits_per_row", counting)
    decisions = decider.decide_many(
        [face(1), face(2), face(3)],
        [candidates(["fake", "real", "fake"]), candidates([None, None, None]), candidates(["real", "real"])])
    assert len(decisions) == 3 and len(calls) == 1
    pixels, ids, index = calls[0]
    assert pixels == (2, 3, 56, 56) and ids[0] == 5 and index == [0, 0, 0, 1, 1]
    assert decisions[1].verdict is None and "no candidate could be parsed" in decisions[1].note
    assert decisions[2].difficulty == "easy"


def test_batching_faces_does_not_change_scores(decider):
    long_reasons = [r + " The mouth, teeth and cheeks are blurred and pixelated." * 3 for r in REASONS]
    faces = [face(1), face(2)]
    cands = [candidates(["fake", "real", "fake"]), candidates(["real", "fake", "real"], reasons=long_reasons)]
    together = decider.decide_many(faces, cands)
    alone = [decider.decide_many([f], [c])[0] for f, c in zip(faces, cands)]
    for a, b in zip(together, alone):
        assert a.chosen_index == b.chosen_index
        for sa, sb in zip(a.scores, b.scores):
            np.testing.assert_allclose(sa.probabilities, sb.probabilities, atol=1e-5)


def test_face_order_matters_only_for_its_own_rows(decider):
    one = decider.decide_many([face(1), face(2)], [candidates(["fake", "real"]), candidates(["real", "fake"])])
    swapped = decider.decide_many([face(2), face(1)], [candidates(["real", "fake"]), candidates(["fake", "real"])])
    probs = lambda d: np.array([s.probabilities for s in d.scores])
    np.testing.assert_allclose(probs(one[0]), probs(swapped[1]), atol=1e-5)
    np.testing.assert_allclose(probs(one[1]), probs(swapped[0]), atol=1e-5)
    different_image = decider.decide_many([face(9)], [candidates(["fake", "real"])])
    assert np.abs(probs(different_image[0]) - probs(one[0])).max() > 1e-4


def test_strict_ffaa_mode_uses_raw_verdict_text():
    cands = candidates(["Real.", "fake", "real"])
    ours = MidsDecider.tiny(seed=0).decide_many([face(4)], [cands])[0]
    strict = MidsDecider.tiny(seed=0, strict_ffaa=True).decide_many([face(4)], [cands])[0]
    p = ours.scores[0].probabilities
    assert ours.scores[0].match_score == pytest.approx(p[0] / (p[0] + p[2]))  # claims real
    assert strict.scores[0].match_score == pytest.approx(p[3] / (p[3] + p[1]))  # FFAA: 'real.' is not 'real'
    assert strict.scores[2].match_score == pytest.approx(ours.scores[2].match_score)
    assert ours.difficulty == "hard" and strict.difficulty == "hard"
    assert "answer 0 'Real.'" in strict.note and ours.note == ""
    if strict.chosen_index == 0:
        assert strict.verdict is Verdict.FAKE


def test_truncation_is_noted(decider):
    long = "The skin is too smooth and the jaw boundary is blurred. " * 120
    (d,) = decider.decide_many([face(5)], [candidates(["fake", "real"], reasons=[long, REASONS[1]])])
    assert "answer(s) [0] exceeded 512 T5 tokens" in d.note


def test_mismatched_inputs(decider):
    with pytest.raises(ValueError, match="2 faces but 1 candidate lists"):
        decider.decide_many([face(1), face(2)], [candidates(["fake"])])
    assert decider.decide_many([], []) == []


def test_chunked_forwards_agree(decider):
    chunked = MidsDecider(decider.net, decider.tokenizer, decider.image_processor, max_faces_per_forward=1)
    faces = [face(1), face(2)]
    cands = [candidates(["fake", "real", "fake"]), candidates(["real", "fake"])]
    for a, b in zip(decider.decide_many(faces, cands), chunked.decide_many(faces, cands)):
        for sa, sb in zip(a.scores, b.scores):
            np.testing.assert_allclose(sa.probabilities, sb.probabilities, atol=1e-5)


def _reference_pixels(image: Image.Image, size: int) -> np.ndarray:
    """CLIP preprocessing written out: shortest edge -> size (bicubic), centre crop, normalise."""
    mean = np.array([0.48145466, 0.4578275, 0.40821073])
    std = np.array([0.26862954, 0.26130258, 0.27577711])
    w, h = image.size
    scale = size / min(w, h)
    new = (size, int(h * scale)) if w <= h else (int(w * scale), size)
    resized = image.convert("RGB").resize(new, Image.BICUBIC)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    crop = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.float64) / 255
    return ((crop - mean) / std).transpose(2, 0, 1)


@pytest.mark.parametrize("mode, size", [("RGB", (70, 90)), ("L", (120, 80)), ("RGBA", (336, 400))])
def test_clip_preprocessing(mode, size):
    image = face(7, size).convert(mode)
    out = pixel_values(clip_image_processor(56), [image])
    assert out.shape == (1, 3, 56, 56) and out.dtype == torch.float32
    np.testing.assert_allclose(out[0].numpy(), _reference_pixels(image, 56), atol=1e-5)
    big = pixel_values(clip_image_processor(), [image])
    assert big.shape == (1, 3, 336, 336)


def test_from_pretrained_with_local_encoder_folders(decider, tmp_path):
    """The user path: encoder folders (weights + tokenizer) and a MIDS file overlaid on them."""
    from ffaa.mids.checkpoint import save_mids

    decider.net.image_encoder.save_pretrained(tmp_path / "clip")
    decider.net.text_encoder.save_pretrained(tmp_path / "t5")
    decider.tokenizer.save_pretrained(tmp_path / "t5")
    path = save_mids(decider.net, tmp_path / "mids.safetensors", complete=False)
    loaded = MidsDecider.from_pretrained(path, clip=tmp_path / "clip", t5=tmp_path / "t5", local_files_only=True)
    cands = [candidates(["fake", "real", "fake"])]
    a, b = decider.decide_many([face(1)], cands)[0], loaded.decide_many([face(1)], cands)[0]
    np.testing.assert_allclose([s.probabilities for s in a.scores], [s.probabilities for s in b.scores], atol=1e-6)


def test_missing_encoder_is_a_clear_error(tmp_path, decider):
    from ffaa.errors import WeightsNotFoundError
    from ffaa.mids.checkpoint import save_mids

    path = save_mids(decider.net, tmp_path / "mids.safetensors", complete=False)
    with pytest.raises(WeightsNotFoundError, match="MIDS image encoder .*nowhere"):
        MidsDecider.from_pretrained(path, clip=tmp_path / "nowhere", t5=tmp_path / "t5", local_files_only=True)
