"""The CLIP-based detectors (clip_large, sta) beyond their goldens: they build on the meta device
with exactly the released key counts (no `position_ids` buffer in CLIP's state dict), and score
every row of a batch independently. The goldens only use batches of one; StA's cross-attention
flattens a clip's frames and patches into one sequence, where a wrong axis would mix clips.
"""

from __future__ import annotations

import importlib

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

SMALL = [("clip_large", "tiny", (3, 224, 224)), ("sta", "reduced_2_layers", (8, 3, 224, 224))]
RELEASED_TENSORS = {"clip_large": 393, "sta": 2110}


def build(name: str, variant: str) -> torch.nn.Module:
    return importlib.import_module(f"ffaa.detectors.{name}").build(variant)


def fill_fan_in(net: torch.nn.Module, seed: int = 0) -> None:
    """Seeded fan-in-scaled weights (like the goldens' rule): with PyTorch's default init two
    inputs give logits too close together for a batch check to mean anything."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in net.state_dict().items():
            name = key.rsplit(".", 1)[-1]
            if not t.is_floating_point():
                continue
            n = torch.randn(t.shape, generator=g)
            if name == "running_var":
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif t.ndim == 1 and name.endswith("weight"):
                t.copy_(1.0 + 0.1 * n)
            elif t.ndim >= 2:
                t.copy_(n / t[0].numel() ** 0.5)
            else:
                t.copy_(0.05 * n)


@pytest.mark.parametrize("name", sorted(RELEASED_TENSORS))
def test_full_builds_on_meta_with_the_released_key_count(name):
    with torch.device("meta"):
        net = build(name, "full")
    state = net.state_dict()
    assert len(state) == RELEASED_TENSORS[name]
    assert all(v.device.type == "meta" for v in state.values())
    assert "backbone.embeddings.position_ids" not in state
    with pytest.raises(ValueError):
        build(name, "no_such_variant")


def test_sta_rejects_clips_of_another_length():
    with torch.device("meta"):
        net = build("sta", "reduced_2_layers")
        with pytest.raises(ValueError, match="8 frames"):
            net(torch.empty(1, 4, 3, 224, 224))


@pytest.mark.parametrize(("name", "variant", "item_shape"), SMALL)
def test_batch_rows_match_single_items(name, variant, item_shape):
    net = build(name, variant)
    fill_fan_in(net)
    net.eval().requires_grad_(False)
    x = torch.randn((2, *item_shape), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        both = net(x)
        one_by_one = torch.cat([net(x[:1]), net(x[1:])])
    assert both.shape == (2, 2)
    assert (both[0] - both[1]).abs().max() > 1e-3, "the two inputs should score differently"
    assert torch.allclose(both, one_by_one, atol=1e-5, rtol=0)
    probs = torch.softmax(both, dim=1)[:, 1], torch.softmax(one_by_one, dim=1)[:, 1]
    assert torch.allclose(*probs, atol=1e-5, rtol=0)
