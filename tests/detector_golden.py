"""Helpers for the detector golden tests (../shared/fixtures/detectors).

Each golden holds every key and shape of a released checkpoint, a deterministic weight rule
(`weight_rule.py`, imported from the fixtures), two inputs and the original code's outputs. A
test builds the rule weights, loads them strictly through ffaa's own loading path and compares
ffaa's logits and P(fake) with the original's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SHARED_FIXTURES

DETECTOR_FIXTURES = SHARED_FIXTURES / "detectors"
REAL_IMAGE = SHARED_FIXTURES / "images" / "real_celeba3.jpg"
LOGIT_ATOL = 1e-4
PROB_ATOL = 2e-5


def require_fixtures(name: str) -> Path:
    folder = DETECTOR_FIXTURES / name
    if not (folder / "golden.json").is_file():
        pytest.skip(f"detector golden fixtures missing in {folder} (set FFAA_SHARED_FIXTURES)")
    return folder


@cache
def weight_rule():
    """The fixtures' `weight_rule` module (the README allows tests to import it)."""
    path = DETECTOR_FIXTURES / "weight_rule.py"
    spec = importlib.util.spec_from_file_location("detgold_weight_rule", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Golden:
    name: str
    meta: dict[str, Any]
    keys_file: dict[str, Any]

    @property
    def gain(self) -> float:
        return float(self.meta["weight_rule"]["gain"])

    def keys(self, variant: str = "full") -> dict[str, dict[str, Any]]:
        """keys.json's {key: {shape, dtype}} for the full checkpoint or a test variant."""
        if variant == "full":
            return self.keys_file["keys"]
        if variant == "tiny":
            return self.keys_file["tiny_variant_keys"]
        if variant == "reduced_2_layers":  # StA: resblocks 0 and 1 only
            return {k: v for k, v in self.keys_file["keys"].items()
                    if not _resblock_at_least(k, 2)}
        raise KeyError(variant)

    def rule_state(self, variant: str = "full"):
        return weight_rule().rule_state_dict(self.keys(variant), self.gain)

    def expected(self, variant: str = "full") -> dict[str, Any]:
        exp = self.meta["expected"]
        return exp[variant] if variant in exp else exp

    def random_input(self):
        """The input rule `detgold-input-randn64-v1` with the golden's seed and shape."""
        import torch

        spec = self.meta["inputs"]["random"]
        g = torch.Generator().manual_seed(int(spec["seed"]))
        x = torch.randn(spec["shape"], generator=g, dtype=torch.float64).to(torch.float32)
        assert sha256_float32(x) == spec["sha256_float32"], "input rule reproduced wrongly"
        return x

    def real_sha256(self) -> str:
        return self.meta["inputs"]["real"]["sha256_float32_normalized"]


def _resblock_at_least(key: str, n: int) -> bool:
    marker = "transformer.resblocks."
    if marker not in key:
        return False
    return int(key.split(marker, 1)[1].split(".", 1)[0]) >= n


def load_golden(name: str) -> Golden:
    folder = require_fixtures(name)
    return Golden(name, json.loads((folder / "golden.json").read_text()),
                  json.loads((folder / "keys.json").read_text()))


def sha256_float32(x) -> str:
    return hashlib.sha256(x.detach().to("cpu").contiguous().numpy().astype("<f4").tobytes()).hexdigest()


def real_face() -> np.ndarray:
    """The fixture's real face as RGB uint8, decoded as ffaa decodes images."""
    if not REAL_IMAGE.is_file():
        pytest.skip(f"fixture image missing: {REAL_IMAGE}")
    from ffaa.media import load_image

    return np.asarray(load_image(REAL_IMAGE).image)


def synthetic_clip(frame0: np.ndarray, length: int) -> list[np.ndarray]:
    """The goldens' clip for video detectors: frame t = frame0 rolled right by 2t pixels."""
    return [np.roll(frame0, shift=2 * t, axis=1) for t in range(length)]


def expected_logits(expected: dict[str, Any]) -> list[float]:
    return expected["logits"] if "logits" in expected else expected["logit"]


def assert_matches(logits, prob, expected: dict[str, Any]) -> None:
    """ffaa's logits and P(fake) against the original's, at the fixtures' tolerances."""
    got = np.asarray(logits, dtype=np.float64).reshape(-1)
    want = np.asarray(expected_logits(expected), dtype=np.float64)
    assert got.shape == want.shape, f"logit shape {got.shape} vs original {want.shape}"
    assert np.max(np.abs(got - want)) <= LOGIT_ATOL, f"logits {got} vs original {want}"
    assert abs(float(prob) - expected["fake_prob"]) <= PROB_ATOL, f"P(fake) {prob} vs {expected['fake_prob']}"


def check_golden(name: str, variant: str = "full") -> None:
    """The whole golden check for one detector variant:

    1. the network's key set and shapes equal the released checkpoint's (built on meta);
    2. the rule weights load strictly through ffaa's loader (the same path as a real file);
    3. the random input gives the original's logits and P(fake);
    4. the real face, through ffaa's preprocessing, gives the original's normalised tensor
       (sha256) and outputs.
    """
    from ffaa.detectors.base import Detector
    from ffaa.detectors.checkpoint import expected_shapes
    from ffaa.detectors.preprocess import resize_face

    golden = load_golden(name)
    keys = golden.keys(variant)
    shapes = expected_shapes(name, variant)
    assert set(shapes) == set(keys), (
        f"missing {sorted(set(keys) - set(shapes))[:5]}, extra {sorted(set(shapes) - set(keys))[:5]}")
    assert all(tuple(keys[k]["shape"]) == shapes[k] for k in keys), "a shape differs from the checkpoint's"

    detector = Detector.from_state(name, golden.rule_state(variant), variant=variant, device="cpu")
    expected = golden.expected(variant)

    x = golden.random_input()
    logits = detector.logits(x)
    assert_matches(logits, detector.fake_probability(logits)[0], expected["random"])

    face = real_face()
    if detector.spec.input_kind == "clip":  # the golden rolls the frame after resizing it
        item = synthetic_clip(resize_face(face, detector.spec.resolution), detector.spec.clip_len)
    else:
        item = face
    batch = detector.preprocess([item])
    assert sha256_float32(batch) == golden.real_sha256(), "preprocessing differs from the original's"
    logits = detector.logits(batch)
    assert_matches(logits, detector.fake_probability(logits)[0], expected["real"])
    assert abs(detector.predict([item])[0] - expected["real"]["fake_prob"]) <= PROB_ATOL
