"""MIDS network: reproduces FFAA's golden tiny model number for number, and names its parameters
exactly as FFAA's checkpoint does."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

from ffaa.mids.net import (
    MidsConfig,
    build_random,
    checkpoint_keys,
    freeze_like_ffaa,
    group_padding_mask,
    normalise_key,
)

ATOL = 1e-5


@pytest.fixture(scope="module")
def golden(mids_golden):
    weights = {normalise_key(k): v for k, v in mids_golden.raw.items()}
    return mids_golden.meta, mids_golden.tensors, weights


def golden_net(meta, weights, attn="sdpa"):
    config = MidsConfig(clip=meta["clip_vision_config"], t5=meta["t5_config"], dim=meta["mids_dim"],
                        heads=meta["mids_heads"], attn_implementation=attn)
    net = build_random(config, seed=0)
    net.load_state_dict(weights, strict=True)
    return net.eval()


def golden_inputs(tensors):
    return tensors["input.pixel_values"], tensors["input.input_ids"], tensors["input.attention_mask"]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_reproduces_golden_logits_and_scores(golden, attn):
    meta, tensors, weights = golden
    net = golden_net(meta, weights, attn)
    with torch.no_grad():
        logits = net(*golden_inputs(tensors))
    assert logits.shape == (2, 3, 4) and logits.dtype == torch.float32
    expected = torch.tensor(meta["expected"]["logits"]["data"])
    torch.testing.assert_close(logits, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(logits.softmax(-1), tensors["expected.scores"], atol=ATOL, rtol=0)


def test_reproduces_golden_intermediates(golden):
    meta, tensors, weights = golden
    net = golden_net(meta, weights)
    pixels, ids, mask = golden_inputs(tensors)
    record = {}
    with torch.no_grad():
        net.logits_per_row(pixels, ids, mask, torch.tensor([0, 0, 0, 1, 1, 1]), record)
    names = [k.removeprefix("intermediate.") for k in tensors if k.startswith("intermediate.")]
    assert len(names) == 19 and set(names) <= set(record)
    for name in names:
        torch.testing.assert_close(record[name], tensors[f"intermediate.{name}"], atol=ATOL, rtol=0,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_rows_must_split_evenly_over_images(golden):
    meta, tensors, weights = golden
    net = golden_net(meta, weights)
    pixels, ids, mask = golden_inputs(tensors)
    with pytest.raises(ValueError, match="5 text rows"):
        net(pixels, ids[:5], mask[:5])


def test_faces_batched_together_score_as_if_alone(golden):
    """Joint padding must not change a face's scores: positions beyond its own longest answer
    are masked, positions up to it (pads included) are seen, as in FFAA."""
    meta, tensors, weights = golden
    net = golden_net(meta, weights)
    pixels, ids, mask = golden_inputs(tensors)
    # Image 1's answers on their own pad to 12; give image 0 only its two shorter answers (7, 9).
    own_len = int(mask[1:3].sum(1).max())
    assert own_len == 9
    with torch.no_grad():
        alone0 = net.logits_per_row(pixels[:1], ids[1:3, :own_len], mask[1:3, :own_len], torch.tensor([0, 0]))
        alone1 = net.logits_per_row(pixels[1:], ids[3:], mask[3:], torch.tensor([0, 0, 0]))
        rows = torch.tensor([1, 2, 3, 4, 5])
        joint = net.logits_per_row(pixels, ids[rows], mask[rows], torch.tensor([0, 0, 1, 1, 1]))
    torch.testing.assert_close(joint[:2], alone0, atol=ATOL, rtol=0)
    torch.testing.assert_close(joint[2:], alone1, atol=ATOL, rtol=0)
    # And the padding up to a face's own longest answer does matter (it is not masked):
    with torch.no_grad():
        shorter = net.logits_per_row(pixels[:1], ids[2:3, :7], mask[2:3, :7], torch.tensor([0]))
    assert (shorter - alone0[1:]).abs().max() > 1e-3


def test_group_padding_mask():
    full = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    assert group_padding_mask(full, torch.tensor([0, 0, 1, 1]), 2) is None  # each image fills L
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    got = group_padding_mask(mask, torch.tensor([0, 0, 0, 1]), 2)
    assert got.tolist() == [[False, False, False, True]] * 3 + [[False] * 4]


def test_names_and_shapes_match_ffaa_at_real_size(shared_fixtures):
    path = shared_fixtures / "mids" / "ffaa_mids_keys_full.json"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    spec = json.loads(path.read_text())
    with torch.device("meta"):  # names and shapes only, no memory, ~2 s
        net = build_random(MidsConfig(clip=spec["clip_vision_config"], t5=spec["t5_config"], dim=768))
    expected = {normalise_key(k["key"]): k["shape"] for k in spec["full_state_dict"]["keys"]}
    state = net.state_dict()
    assert list(state) == list(expected)  # same names, same order
    assert {k: list(v.shape) for k, v in state.items()} == expected
    assert checkpoint_keys(net) == [normalise_key(k["key"]) for k in spec["mids_pth"]["keys"]]
    assert len(checkpoint_keys(net)) == 112
    trainable = freeze_like_ffaa(net)
    assert trainable == checkpoint_keys(net)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == spec["mids_pth"]["num_parameters"]


def test_golden_checkpoint_keys(golden):
    meta, _, weights = golden
    net = golden_net(meta, weights)
    assert checkpoint_keys(net) == [normalise_key(k) for k in meta["weights_keys_that_would_be_in_mids_pth"]]


def test_normalise_key():
    assert normalise_key("module.image_encoder.vision_model.encoder.layers.22.mlp.fc1.weight") == \
        "image_encoder.encoder.layers.22.mlp.fc1.weight"
    assert normalise_key("module.fusion_block.lr_tii1") == "fusion_block.lr_tii1"
    assert normalise_key("image_encoder.encoder.layers.0.mlp.fc1.bias") == "image_encoder.encoder.layers.0.mlp.fc1.bias"


def test_dim_must_equal_t5_width():
    config = MidsConfig.tiny()
    config.dim = 48
    with pytest.raises(ValueError, match="T5 width 32"):
        build_random(config)


def test_importing_ffaa_mids_does_not_import_torch():
    code = ("import sys, ffaa, ffaa.mids, ffaa.mids.selector; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
