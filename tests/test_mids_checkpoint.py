"""Loading FFAA's mids.pth safely: pretrained encoders + the 112 trained tensors overlaid, our
safetensors conversion, and precise errors for files that do not fit."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

from safetensors.torch import load_file

from ffaa.errors import CheckpointError
from ffaa.mids.checkpoint import (
    convert_mids,
    load_mids,
    overlay,
    read_metadata,
    read_state,
    save_mids,
)
from ffaa.mids.net import MidsConfig, build_random, normalise_key

ATOL = 1e-5


@pytest.fixture(scope="module")
def golden(mids_golden):
    meta = mids_golden.meta
    config = MidsConfig(clip=meta["clip_vision_config"], t5=meta["t5_config"], dim=meta["mids_dim"])
    return meta, mids_golden.raw, mids_golden.tensors, config


@pytest.fixture(scope="module")
def released(golden, tmp_path_factory):
    """What a user has after downloading: CLIP and T5 folders (CLIP's last two layers still at
    their pretrained values, here random) and a DeepSpeed-style mids.pth with the 112 keys."""
    meta, raw, _, config = golden
    root = tmp_path_factory.mktemp("released")
    encoders = build_random(config, seed=1)
    full = {normalise_key(k): v for k, v in raw.items()}
    trained = {normalise_key(k) for k in meta["weights_keys_that_would_be_in_mids_pth"]}
    encoders.load_state_dict({k: v for k, v in full.items() if k not in trained}, strict=False)
    encoders.image_encoder.save_pretrained(root / "clip")
    encoders.text_encoder.save_pretrained(root / "t5")
    mids_pth = {f"module.{k}": raw[k] for k in meta["weights_keys_that_would_be_in_mids_pth"]}
    assert len(mids_pth) == 112
    torch.save(mids_pth, root / "mids.pth")
    return root


def golden_logits(net, tensors):
    with torch.no_grad():
        return net(tensors["input.pixel_values"], tensors["input.input_ids"], tensors["input.attention_mask"])


def test_pretrained_encoders_plus_mids_pth_overlay(golden, released):
    _, _, tensors, _ = golden
    net = load_mids(released / "mids.pth", clip=released / "clip", t5=released / "t5")
    torch.testing.assert_close(golden_logits(net, tensors), tensors["expected.logits"], atol=ATOL, rtol=0)


def test_overlay_really_replaces_clip_last_layers(golden, released):
    _, _, tensors, _ = golden
    from ffaa.mids.net import build_from_encoders

    bare = build_from_encoders(released / "clip", released / "t5")
    assert (golden_logits(bare, tensors) - tensors["expected.logits"]).abs().max() > 1e-2


def test_convert_then_load_safetensors(golden, released, tmp_path):
    _, _, tensors, _ = golden
    out = tmp_path / "mids.safetensors"
    summary = convert_mids(released / "mids.pth", out)
    assert summary["tensors"] == 112 and summary["dim"] == 64
    converted = load_file(str(out))
    assert all(not k.startswith("module.") and ".vision_model." not in k for k in converted)
    assert read_metadata(out)["format"] == "ffaa-mids"
    net = load_mids(out, clip=released / "clip", t5=released / "t5")
    torch.testing.assert_close(golden_logits(net, tensors), tensors["expected.logits"], atol=ATOL, rtol=0)
    # A folder holding the converted file loads the same way.
    net = load_mids(tmp_path, clip=released / "clip", t5=released / "t5")
    torch.testing.assert_close(golden_logits(net, tensors), tensors["expected.logits"], atol=ATOL, rtol=0)


def test_complete_safetensors_needs_no_encoders(golden, released, tmp_path):
    _, _, tensors, _ = golden
    net = load_mids(released / "mids.pth", clip=released / "clip", t5=released / "t5")
    path = save_mids(net, tmp_path / "full.safetensors", complete=True)
    again = load_mids(path)
    torch.testing.assert_close(golden_logits(again, tensors), tensors["expected.logits"], atol=ATOL, rtol=0)


def test_golden_file_with_config_loads_directly(golden, shared_fixtures):
    _, _, tensors, config = golden
    net = load_mids(shared_fixtures / "mids" / "golden_tiny.safetensors", config=config)
    torch.testing.assert_close(golden_logits(net, tensors), tensors["expected.logits"], atol=ATOL, rtol=0)


def test_nested_state_dict_is_unwrapped(golden, tmp_path):
    meta, raw, _, _ = golden
    path = tmp_path / "nested.pth"
    torch.save({"state_dict": {k: raw[k] for k in meta["weights_keys_that_would_be_in_mids_pth"]}}, path)
    assert len(read_state(path)) == 112


# --- errors ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_net(golden):
    return build_random(golden[3], seed=2)


def trained_state(golden):
    meta, raw, _, _ = golden
    return {normalise_key(k): raw[k] for k in meta["weights_keys_that_would_be_in_mids_pth"]}


def test_missing_key_is_named(golden, tiny_net):
    state = trained_state(golden)
    del state["se_attn.1.norm.bias"]
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\) \(se_attn.1.norm.bias\)"):
        overlay(tiny_net, state, "mids.pth")


def test_unexpected_key_is_named(golden, tiny_net):
    state = trained_state(golden)
    state["fusion_block.lr_extra"] = torch.zeros(1, 64)
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\) \(fusion_block.lr_extra\)"):
        overlay(tiny_net, state, "mids.pth")


def test_checkpoint_for_another_dim(tiny_net):
    other = build_random(MidsConfig.tiny(), seed=3)  # dim 32, CLIP width 32
    from ffaa.mids.net import checkpoint_keys

    state = {k: v for k, v in other.state_dict().items() if k in checkpoint_keys(other)}
    with pytest.raises(CheckpointError) as info:
        overlay(tiny_net, state, "other.pth")
    message = str(info.value)
    assert "shape mismatch" in message and "file [" in message and "network [" in message
    assert "for MIDS dim 32 but this network has dim 64" in message


def test_corrupt_file(tmp_path):
    bad = tmp_path / "mids.pth"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="cannot read .*mids.pth"):
        read_state(bad)
    bad_st = tmp_path / "mids.safetensors"
    bad_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        read_state(bad_st)


class Payload:
    """Any pickled object: weights_only loading must refuse it."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"classifier.weight": torch.zeros(4, 6), "extra": Payload()}, path)
    with pytest.raises(CheckpointError, match="pickled objects"):
        read_state(path)


def test_non_dict_and_non_tensor_entries(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="holds a list"):
        read_state(path)
    path = tmp_path / "mixed.pth"
    torch.save({"a": torch.zeros(2), "b": 3}, path)
    with pytest.raises(CheckpointError, match="entry 'b' is not a named tensor"):
        read_state(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_mids(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="neither mids.safetensors nor mids.pth"):
        load_mids(tmp_path)


def test_convert_refuses_non_mids(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="not a MIDS checkpoint"):
        convert_mids(path, tmp_path / "out.safetensors")


def test_missing_names_point_at_the_last_two_layers_of_a_known_clip():
    from ffaa.mids.checkpoint import checkpoint_keys, missing_mids_names
    from ffaa.mids.net import MidsConfig, build_random

    keys = checkpoint_keys(build_random(MidsConfig.tiny(), seed=0))
    state = {k.replace("layers.1.", "layers.22.").replace("layers.0.", "layers.21."): None for k in keys}
    state = {k: v for k, v in state.items() if "layers.21." not in k}  # only layer 22 of 0..23
    missing = missing_mids_names(state, clip_layers=24)
    assert missing and all(".layers.23." in k for k in missing)
    assert missing_mids_names({**state, **{k.replace("22", "23"): None for k in state if ".layers.22." in k}}, 24) == []


def test_clip_l_layer_count_is_assumed_only_for_files_that_look_like_ffaas():
    from ffaa.mids.checkpoint import _clip_layers

    def layers(*numbers):
        return {f"image_encoder.encoder.layers.{n}.mlp.fc1.weight": None for n in numbers}

    assert _clip_layers(layers(22, 23), 768) == 24 and _clip_layers(layers(22), 768) == 24
    assert _clip_layers(layers(10, 11), 768) is None  # another CLIP at the same T5 width
    assert _clip_layers(layers(22, 23), 512) is None
