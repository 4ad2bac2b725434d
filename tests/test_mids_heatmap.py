"""Grad-CAM over MIDS's CLIP patch grid."""

from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

from PIL import Image

from ffaa.mids.decider import MidsDecider
from ffaa.mids.heatmap import clip_view, explain, grad_cam, target_for
from ffaa.mids.preprocess import pixel_values, tokenize

TEXT = "Image description: A young woman.\nForgery reasoning: The skin around the eyes is too smooth."


@pytest.fixture(scope="module")
def decider():
    return MidsDecider.tiny(seed=0)


@pytest.fixture(scope="module")
def face():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (80, 64, 3), dtype=np.uint8))


def test_grid_shape_range_and_overlay(decider, face):
    heat = explain(decider, face, TEXT, target_class=3)
    assert heat.grid.shape == (4, 4) and heat.grid.dtype == np.float32  # 56 px / 14 px patches
    assert np.isfinite(heat.grid).all() and heat.grid.min() >= 0 and heat.grid.max() == pytest.approx(1.0)
    assert heat.overlay.size == face.size and heat.overlay.mode == "RGB"  # the crop's size, not CLIP's 56 px
    buf = io.BytesIO()
    heat.overlay.save(buf, format="PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).size == face.size


def test_saved_heatmap_has_the_crop_size(decider, tmp_path):
    """The demo's MIDS sees 56 px; the file a user opens is FFAA's 336 x 336 crop with the map on it."""
    from test_report import make_report

    from ffaa.heatmaps import save_heatmap

    crop = Image.fromarray(np.random.default_rng(1).integers(0, 256, (336, 336, 3), dtype=np.uint8))
    path = save_heatmap(decider, crop, make_report(), tmp_path)
    with Image.open(path) as saved:
        assert saved.size == (336, 336) and saved.mode == "RGB"
        tinted = np.abs(np.asarray(saved, dtype=np.int16) - np.asarray(crop, dtype=np.int16)).max(axis=-1)
    assert (tinted > 0).mean() > 0.9  # blended over the whole crop, not pasted into a corner


def test_map_is_upsampled_smoothly_over_the_centre_square_of_a_tall_crop(decider, face):
    """64 x 80: CLIP saw the middle 64 x 64, so the map covers those rows and the rest stays as it was."""
    heat = explain(decider, face, TEXT, target_class=3)
    shown, original = np.asarray(heat.overlay, dtype=np.int16), np.asarray(face, dtype=np.int16)
    np.testing.assert_array_equal(shown[:8], original[:8])
    np.testing.assert_array_equal(shown[72:], original[72:])
    colours = (shown[8:72] - 0.55 * original[8:72]) / 0.45  # undo the blend: the colour map alone
    # Bilinear over 16 px per cell moves the map by at most 1/16 per pixel, the jet colours by at
    # most 4 * 255 / 16 = 64; 16 px blocks would jump by up to 255 at their edges.
    assert max(np.abs(np.diff(colours, axis=a)).max() for a in (0, 1)) < 100


def test_map_depends_on_target_class(decider, face):
    maps = [explain(decider, face, TEXT, target_class=c).grid for c in range(4)]
    assert max(np.abs(maps[0] - m).max() for m in maps[1:]) > 0.05


def test_grad_cam_formula(decider, face):
    """Channel weights = mean patch gradient; map = relu(weighted sum), CLS excluded, max 1."""
    pixels = pixel_values(decider.image_processor, [face])
    tokens = tokenize(decider.tokenizer, [TEXT])
    record = {}
    logits = decider.net.logits_per_row(pixels, tokens.input_ids, tokens.attention_mask,
                                        torch.zeros(1, dtype=torch.long), record)
    acts = record["proj_layer1"]
    (grad,) = torch.autograd.grad(logits[0, 2], acts)
    cam = torch.relu((acts[0, 1:] * grad[0, 1:].mean(0)).sum(-1)).detach().view(4, 4).numpy()
    expected = cam / cam.max()
    got = grad_cam(decider.net, pixels, tokens.input_ids, tokens.attention_mask, 2)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_works_with_frozen_weights(decider, face):
    params = list(decider.net.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        heat = explain(decider, face, TEXT, target_class=0)
        assert np.isfinite(heat.grid).all()
        assert all(p.grad is None for p in params)
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def test_bad_arguments(decider, face):
    pixels = pixel_values(decider.image_processor, [face, face])
    tokens = tokenize(decider.tokenizer, [TEXT])
    with pytest.raises(ValueError, match="one image and one answer"):
        grad_cam(decider.net, pixels, tokens.input_ids, tokens.attention_mask, 0)
    with pytest.raises(ValueError, match="0..3"):
        grad_cam(decider.net, pixels[:1], tokens.input_ids, tokens.attention_mask, 4)


def test_target_for_and_clip_view(face):
    assert target_for(True) == 3 and target_for(False) == 0
    view = clip_view(face, 56)
    assert view.size == (56, 56) and view.mode == "RGB"
