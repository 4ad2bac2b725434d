"""The MIDS subcommands (convert-mids, train-mids, mids-data) and the data writer behind mids-data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

from PIL import Image

from ffaa.cli import build_parser, main
from ffaa.decision import MajorityDecider
from ffaa.mids.data import labelled_images, load_mids_data, write_mids_data
from ffaa.parsing import parse_answer
from ffaa.types import (
    Candidate,
    DecodingSettings,
    FaceBox,
    ForensicReport,
    ImageInfo,
    Provenance,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_mids_train import write_dataset

ANSWER = ("Image description: A face.\nForgery reasoning: {r}\nAnalysis result: {v}\n"
          "Probability: 0.5\nForgery type: None")


def report(path: Path, verdicts, crop=None) -> ForensicReport:
    cands = []
    for i, v in enumerate(verdicts):
        text = "garbled" if v is None else ANSWER.format(r=f"reason {i}", v=v)
        cands.append(Candidate(i, "question", "q", text, parse_answer(text)))
    info = ImageInfo(str(path), "0" * 64, 40, 40, "RGB")
    box = FaceBox(5, 5, 30, 30, crop=crop) if crop else None
    decision = MajorityDecider().decide(cands)
    prov = Provenance("m", None, "test", "none", "cpu", "fp32", "v1", "majority", DecodingSettings())
    return ForensicReport(info, 0 if box else None, box, tuple(cands), decision, prov)


def make_images(folder: Path, names) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(folder / name)
        paths.append(folder / name)
    return paths


def test_writer_schema_and_agreeing_faces(tmp_path):
    real, fake = make_images(tmp_path / "imgs", ["a.png", "b.png"])
    items = [
        (real, False, report(real, ["real", "fake", "real"])),
        (fake, True, report(fake, ["fake", None, "real"], crop=(0, 0, 30, 30))),
        (fake, True, report(fake, ["fake", "fake", "fake"])),
        (real, False, report(real, [None, None, None])),
    ]
    stats = write_mids_data(items, tmp_path / "data.json", image_root=tmp_path)
    assert stats.rows == 2
    assert stats.dropped == {"dropped because all verdicts agree": 1, "without a parsed answer": 1}
    rows = json.loads((tmp_path / "data.json").read_text())
    assert rows[0]["image"] == "imgs/a.png" and rows[0]["cls_label"] == 0
    assert [a["label"] for a in rows[0]["answers"]] == [0, 1, 0]
    assert [a["label"] for a in rows[1]["answers"]] == [3, 2] and rows[1]["crop"] == [0, 0, 30, 30]
    assert rows[1]["answers"][0]["content"].startswith("Image description: A face.")
    loaded = load_mids_data(tmp_path / "data.json")  # what we write, we read back
    assert len(loaded.samples) == 2 and not loaded.skipped
    kept = write_mids_data(items, tmp_path / "all.json", drop_agreeing=False)
    assert kept.rows == 3


def test_labelled_folder(tmp_path):
    make_images(tmp_path / "real", ["1.png", "2.jpg"])
    make_images(tmp_path / "fake", ["3.png"])
    (tmp_path / "real" / "notes.txt").write_text("not an image")
    found = labelled_images(tmp_path)
    assert [(p.name, f) for p, f in found] == [("1.png", False), ("2.jpg", False), ("3.png", True)]


def test_mids_data_command(tmp_path, monkeypatch, capsys):
    make_images(tmp_path / "set" / "real", ["r.png"])
    make_images(tmp_path / "set" / "fake", ["f.png"])
    from ffaa.errors import InputError

    class FakeAssistant:
        def analyze(self, path):
            if Path(path).name == "f.png":
                raise InputError("no face found")
            return [report(Path(path), ["real", "fake", "real"])]

    seen = {}

    def fake_build(args):
        seen["no_mids"] = args.no_mids
        return FakeAssistant()

    build_parser()  # import every command now: one first imported under the patch would keep the fake
    monkeypatch.setattr("ffaa.commands.common.build_assistant", fake_build)
    out = tmp_path / "out" / "data.json"
    assert main(["mids-data", str(tmp_path / "set"), "--out", str(out)]) == 0
    assert seen["no_mids"] is True
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["cls_label"] == 0 and Path(rows[0]["image"]).is_absolute()
    assert "1 rows written; 1 image(s) could not be analysed" in capsys.readouterr().out


def test_convert_mids_command(tmp_path, capsys):
    from ffaa.mids.net import MidsConfig, build_random, checkpoint_keys

    net = build_random(MidsConfig.tiny(), seed=0)
    state = net.state_dict()
    torch.save({f"module.{k}": state[k] for k in checkpoint_keys(net)}, tmp_path / "mids.pth")
    out = tmp_path / "mids.safetensors"
    assert main(["convert-mids", str(tmp_path / "mids.pth"), str(out)]) == 0
    assert "MIDS dim 32" in capsys.readouterr().out and out.is_file()
    assert main(["convert-mids", str(tmp_path / "mids.pth"), str(tmp_path / "x.pt")]) == 2
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    assert main(["convert-mids", str(tmp_path / "bad.pth"), str(out)]) == 2
    assert "error: cannot read" in capsys.readouterr().err


def test_train_mids_command_and_resume(tmp_path, capsys):
    data = write_dataset(tmp_path, 8)
    base = ["train-mids", "--tiny", "--train", str(data), "--val", str(data), "--out", str(tmp_path / "run"),
            "--batch-size", "4", "--epochs", "2", "--lr", "1e-3", "--save-every", "1"]
    assert main(base + ["--max-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "train: 8 rows" in out and "trained 2 steps" in out
    assert "best validation: epoch 0, acc " in out  # the epoch is a count, not a 0.0000 metric
    assert main(base + ["--max-steps", "3"]) == 2  # the folder holds a run: refuse to overwrite
    assert main(base + ["--max-steps", "3", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "trained 3 steps" in out
    state = json.loads((tmp_path / "run" / "last_state.json").read_text())
    assert state["global_step"] == 3
    assert main(base + ["--batch-size", "0"]) == 2


def test_mids_group_and_bad_outputs_fail_before_any_work(tmp_path, monkeypatch, capsys):
    """`ffaa mids <command>` as the README writes it; an --out that is a file or a folder fails in
    one line before the model loads or a step runs."""
    data = write_dataset(tmp_path, 4)
    (tmp_path / "file").write_text("x")
    base = ["mids", "train-mids", "--tiny", "--train", str(data), "--max-steps", "1"]
    assert main(base + ["--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err.strip().endswith("is a file, not a folder")
    make_images(tmp_path / "set" / "real", ["r.png"])
    build_parser()
    monkeypatch.setattr("ffaa.commands.common.build_assistant", lambda args: pytest.fail("model loaded"))
    assert main(["mids", "mids-data", str(tmp_path / "set"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and len(err.strip().splitlines()) == 2  # the note on fake/ and the error
    assert main(["mids", "mids-data", str(tmp_path / "empty_nothing"), "--out", str(tmp_path / "o.json")]) == 2


def test_mids_data_reports_label_problems_and_names_failures_once(tmp_path, monkeypatch, capsys):
    from ffaa.errors import InputError

    make_images(tmp_path, ["a.png", "b.png", ".hidden.png"])
    (tmp_path / "labels.csv").write_text("id,label\na.png,real\nb.png,maybe\n,fake\nmissing.png,fake\n")

    class FakeAssistant:
        def analyze(self, path):
            if not Path(path).is_file():
                raise InputError(f"{path}: no such file")
            return [report(Path(path), ["real", "fake", "real"])]

    build_parser()
    monkeypatch.setattr("ffaa.commands.common.build_assistant", lambda args: FakeAssistant())
    assert main(["mids", "mids-data", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "d.json")]) == 0
    captured = capsys.readouterr()
    assert "1 rows written; 1 image(s) could not be analysed; 2 label row(s) skipped" in captured.out
    assert "label 'maybe' is neither real nor fake" in captured.err
    missing = str(tmp_path / "missing.png")
    assert f"  {missing}: no such file" in captured.err.splitlines()
    assert not list(tmp_path.glob(".d.json*"))


def test_labelled_folder_skips_hidden_files_and_names_a_missing_class(tmp_path):
    from ffaa.mids.data import find_labelled_images

    make_images(tmp_path / "real", ["1.png", ".2.png"])
    make_images(tmp_path / "real" / ".thumbs", ["3.png"])
    found = find_labelled_images(tmp_path)
    assert [(p.name, f) for p, f in found.items] == [("1.png", False)]
    assert found.problems == (f"{tmp_path / 'fake'}: no such folder, so no fake images",)


def test_convert_mids_refuses_incomplete_code_and_folders(tmp_path, capsys):
    import os as os_module

    from ffaa.mids.net import MidsConfig, build_random, checkpoint_keys

    net = build_random(MidsConfig.tiny(), seed=0)
    state = net.state_dict()
    keys = checkpoint_keys(net)
    torch.save({k: state[k] for k in keys[:-1]}, tmp_path / "partial.pth")
    out = tmp_path / "out.safetensors"
    assert main(["mids", "convert-mids", str(tmp_path / "partial.pth"), str(out)]) == 2
    assert f"1 MIDS parameter(s) missing, first {keys[-1]!r}" in capsys.readouterr().err
    torch.save({**{k: state[k] for k in keys}, "x": Payload()}, tmp_path / "code.pth")
    assert main(["mids", "convert-mids", str(tmp_path / "code.pth"), str(out)]) == 2
    err = capsys.readouterr().err
    assert "pickled objects" in err and "weights_only" not in err and len(err.strip().splitlines()) == 1
    torch.save({k: state[k] for k in keys}, tmp_path / "ok.pth")
    (tmp_path / "dir.safetensors").mkdir()
    assert main(["mids", "convert-mids", str(tmp_path / "ok.pth"), str(tmp_path / "dir.safetensors")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert not out.exists() and not [n for n in os_module.listdir(tmp_path) if "tmp" in n]


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_weights_of_a_tiny_training_run_decide_an_analysis(tmp_path, capsys, shared_fixtures):
    """`train-mids --tiny`, then `analyze --demo --mids` with its best checkpoint: the tiny T5
    recorded in the weights brings its own offline tokenizer."""
    data = write_dataset(tmp_path, 4)
    assert main(["mids", "train-mids", "--tiny", "--train", str(data), "--val", str(data), "--out",
                 str(tmp_path / "run"), "--batch-size", "4", "--max-steps", "1", "--save-every", "1"]) == 0
    best = next((tmp_path / "run").glob("best*.safetensors"))
    capsys.readouterr()
    image = shared_fixtures / "images" / "real_celeba3.jpg"
    assert main(["analyze", str(image), "--demo", "--mids", str(best), "--json"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    assert report["decision"]["method"] == "mids" and report["summary"]["match_score"] is not None


def test_missing_encoders_are_one_line_naming_the_flag(tmp_path):
    from ffaa.errors import WeightsNotFoundError
    from ffaa.mids.net import build_from_encoders

    with pytest.raises(WeightsNotFoundError) as info:
        build_from_encoders(clip=tmp_path / "no-clip", t5=tmp_path / "no-t5", local_files_only=True)
    message = str(info.value)
    assert "\n" not in message and "MIDS image encoder" in message and "--mids-clip DIR" in message


def test_train_mids_names_its_own_encoder_flags(tmp_path, capsys):
    """train-mids takes --clip/--t5, not the decider's --mids-clip/--mids-t5: its error says so."""
    data = write_dataset(tmp_path, 2)
    clip, t5 = tmp_path / "clip", tmp_path / "t5"
    clip.mkdir()
    t5.mkdir()  # empty folders: the encoders are missing, and nothing is looked up on the hub
    base = ["mids", "train-mids", "--train", str(data), "--out", str(tmp_path / "run")]
    assert main([*base, "--clip", str(clip), "--t5", str(t5)]) == 2
    err = capsys.readouterr().err
    assert "MIDS image encoder" in err and "give --clip DIR" in err and "--mids-clip" not in err


def test_encoder_flags_name_options_of_their_commands():
    from ffaa.mids.net import DECIDER_FLAGS, TRAINING_FLAGS

    parser = build_parser()
    commands = {a.dest: a for a in parser._actions if a.dest == "command"}["command"].choices
    analyze = {s for a in commands["analyze"]._actions for s in a.option_strings}
    train = {s for a in commands["train-mids"]._actions for s in a.option_strings}
    assert set(DECIDER_FLAGS) <= analyze and set(TRAINING_FLAGS) <= train


def test_encoder_flags_reach_the_decider(tmp_path, monkeypatch):
    from ffaa.cli import build_parser
    from ffaa.commands.common import assistant_spec
    from ffaa.mids.decider import MidsDecider

    weights = tmp_path / "mids.safetensors"
    weights.write_bytes(b"x")
    seen = {}
    monkeypatch.setattr(MidsDecider, "from_pretrained", classmethod(lambda cls, path, **kw: seen.update(kw) or "mids"))
    args = build_parser().parse_args(["analyze", "x.png", "--mids", str(weights), "--mids-clip", "/m/clip",
                                      "--mids-t5", "/m/t5", "--device", "cpu"])
    assert assistant_spec(args).load_decider() == "mids"
    assert (seen["clip"], seen["t5"]) == ("/m/clip", "/m/t5")
