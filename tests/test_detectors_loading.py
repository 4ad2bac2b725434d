"""Loading released detector checkpoints: the originals' key rules, strictness, one-line
errors for wrong, truncated, pickled-code and CLIP-B/16 files, and `ffaa detectors convert`."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from detector_golden import assert_matches, load_golden  # noqa: E402

from ffaa.cli import main  # noqa: E402
from ffaa.detectors.base import Detector  # noqa: E402
from ffaa.detectors.checkpoint import (  # noqa: E402
    expected_shapes,
    identify,
    normalise_keys,
    prepare_state,
    read_detector_state,
    save_detector,
)
from ffaa.errors import CheckpointError, WeightsNotFoundError  # noqa: E402


def meso_state():
    """Meso4 with seeded values: small enough to write many files of."""
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(s, generator=g) * 0.1 if len(s) else torch.zeros((), dtype=torch.int64))
             for k, s in expected_shapes("meso4").items()}
    return {k: v.abs() + 0.5 if k.endswith("running_var") else v for k, v in state.items()}


def test_df40_rule_unwraps_and_renames():
    state = {"module.base_model.conv.weight": 1, "module.classifier.weight": 2, "head.bias": 3}
    assert normalise_keys(state, "df40") == {"backbone.conv.weight": 1, "head.weight": 2, "head.bias": 3}
    assert normalise_keys(state, "sta") == {"base_model.conv.weight": 1, "classifier.weight": 2, "head.bias": 3}
    assert normalise_keys(state, "deepfakebench") == state


def test_strict_loading_names_missing_unexpected_and_shape_problems():
    state = meso_state()
    del state["backbone.fc2.bias"]
    state["backbone.extra.weight"] = torch.zeros(2)
    state["backbone.fc1.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError) as err:
        prepare_state(state, "meso4", source="m.pth")
    text = str(err.value)
    assert "\n" not in text
    assert "1 missing key(s) (backbone.fc2.bias)" in text
    assert "1 unexpected key(s) (backbone.extra.weight)" in text
    assert "first backbone.fc1.weight: file [3, 3], network [16, 1024]" in text


def test_position_ids_of_old_clip_files_are_ignored_and_nothing_else():
    keys = expected_shapes("clip_large", "tiny")
    state = {k: torch.zeros(s) for k, s in keys.items()}
    state["backbone.embeddings.position_ids"] = torch.arange(257)[None]
    assert "backbone.embeddings.position_ids" not in prepare_state(state, "clip_large", variant="tiny")
    state["backbone.embeddings.something"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected key"):
        prepare_state(state, "clip_large", variant="tiny")


def test_clip_b16_given_as_clip_large_says_so():
    state = {k: torch.zeros(1) for k in expected_shapes("clip_large")}
    state["head.weight"] = torch.zeros(2, 768)
    with pytest.raises(CheckpointError, match="CLIP ViT-B/16.*clip_large.pth"):
        prepare_state(state, "clip_large", source="clip.pth")


def test_another_detectors_checkpoint_is_named():
    with pytest.raises(CheckpointError, match="keys are those of the meso4 detector"):
        prepare_state(meso_state(), "xception", source="meso4_best.pth")


def test_df40_layout_file_loads_and_reproduces_the_golden(tmp_path):
    golden = load_golden("xception")
    state = golden.rule_state()
    wrapped = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 9}
    path = tmp_path / "xception.pth"
    torch.save(wrapped, path)
    det = Detector.load("xception", path, device="cpu")
    logits = det.logits(golden.random_input())
    assert_matches(logits, det.fake_probability(logits)[0], golden.expected()["random"])


def test_missing_file_says_what_to_download(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="srm_best.pth.*DeepfakeBench/releases"):
        read_detector_state(tmp_path / "nope.pth", "srm")


def test_truncated_and_pickled_code_files_are_refused(tmp_path):
    good = tmp_path / "m.pth"
    torch.save(meso_state(), good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_detector_state(cut, "meso4")
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(CheckpointError, match="refused"):
        read_detector_state(evil, "meso4")
    assert not (tmp_path / "pwned").exists()


class _Payload:
    """Unpickling this would create a file: a checkpoint must never be able to run code."""

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(__file__).parent / "pwned",))


def test_convert_command_identifies_checks_and_round_trips(tmp_path, capsys):
    state = meso_state()
    src = tmp_path / "meso4_best.pth"
    torch.save(state, src)
    dst = tmp_path / "meso4.safetensors"
    assert main(["detectors", "convert", str(src), str(dst)]) == 0
    assert "meso4: 18 tensors" in capsys.readouterr().err
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    a = Detector.load("meso4", src, device="cpu").logits(x)
    b = Detector.load("meso4", dst, device="cpu").logits(x)
    assert torch.equal(a, b)
    assert main(["detectors", "convert", str(src), str(dst)]) == 2  # exists: refused without --force
    assert "--force" in capsys.readouterr().err
    assert identify(dst) == "meso4"


def test_convert_refuses_a_file_that_is_no_detector(tmp_path, capsys):
    src = tmp_path / "x.pth"
    torch.save({"a.weight": torch.zeros(2)}, src)
    assert main(["detectors", "convert", str(src), str(tmp_path / "x.safetensors")]) == 2
    assert "none of the known detectors" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_our_file_of_one_detector_is_refused_as_another(tmp_path):
    path = save_detector(meso_state(), tmp_path / "m.safetensors", "meso4")
    with pytest.raises(CheckpointError, match="holds the meso4 detector, not xception"):
        read_detector_state(path, "xception")


def test_detectors_list_names_every_checkpoint(capsys):
    assert main(["detectors", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("clip_large.pth", "xception_best.pth", "i3d.pth", "sta_best.pth", "srm_best.pth", "AM-Softmax"):
        assert name in out


def test_predict_batches_give_the_same_probabilities():
    det = Detector.from_state("meso4", meso_state(), device="cpu")
    faces = [np.random.default_rng(i).integers(0, 255, (300, 280, 3), dtype=np.uint8) for i in range(5)]
    one = det.predict(faces, batch_size=1)
    assert np.allclose(one, det.predict(faces, batch_size=4), atol=1e-6)
    assert one.shape == (5,) and len(set(np.round(one, 6))) > 1
