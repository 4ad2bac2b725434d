"""Every classic detector reproduces the original code's outputs on the fixtures' rule weights
(../shared/fixtures/detectors): key set and shapes of the released file, strict loading through
ffaa's loader, logits and P(fake) on the random and the real input.

The full-size CLIP-L and StA variants take tens of seconds on two cores; their tiny variants
(the same code with fewer/narrower layers) run first so a mistake shows up fast.
"""

from __future__ import annotations

import pytest
from detector_golden import check_golden

pytest.importorskip("torch")
pytest.importorskip("cv2")

CASES = [
    ("meso4", "full"),
    ("xception", "full"),
    ("srm", "full"),
    ("f3net", "full"),
    ("efficientnetb4", "full"),
    ("i3d", "full"),
    ("clip_large", "tiny"),
    ("sta", "reduced_2_layers"),
    pytest.param("clip_large", "full", marks=pytest.mark.slow),
    pytest.param("sta", "full", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_golden(name, variant):
    check_golden(name, variant)
