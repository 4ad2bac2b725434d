"""A failed start leaves nothing behind, and a resume goes on with the run's own model and settings."""

from __future__ import annotations

import json

import pytest
from test_batch_support import noise_images, read_jsonl
from test_eval_detection import make_benchmark

from ffaa.batch.journal import LOG_NAME
from ffaa.batch.summary import load_summary
from ffaa.cli import build_parser, given_options, main


def runs(out):
    return [r for r in read_jsonl(out / LOG_NAME) if r["record"] == "run"]


def test_a_model_that_fails_to_load_leaves_no_folder_and_the_retry_works(tmp_path, capsys):
    images = noise_images(tmp_path / "in", 2)
    out = tmp_path / "runs" / "x"
    assert main(["batch", *map(str, images), "--out", str(out), "--model", str(tmp_path / "nope")]) == 2
    assert "model folder not found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert main(["batch", *map(str, images), "--out", str(out), "--backend", "scripted", "--whole-image",
                 "--no-progress"]) == 0
    assert len([r for r in read_jsonl(out / LOG_NAME) if r["record"] == "item"]) == 2


def test_triage_with_an_unloadable_model_leaves_no_folder(tmp_path):
    images = noise_images(tmp_path / "in", 1)
    out = tmp_path / "t"
    assert main(["batch", str(images[0]), "--out", str(out), "--triage", "--model", str(tmp_path / "nope")]) == 2
    assert not out.exists()


def test_eval_run_with_an_unloadable_model_leaves_no_folder(tmp_path, capsys):
    bench = make_benchmark(tmp_path / "bench", {"S": {"a.png": "real"}})
    out = tmp_path / "results"
    assert main(["eval", "run", str(bench), "--out", str(out), "--model", str(tmp_path / "nope")]) == 2
    assert "model folder not found" in capsys.readouterr().err
    assert not out.exists()


def test_resume_takes_the_recorded_model_and_settings(tmp_path, capsys):
    images = noise_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    first = ["batch", *map(str, images[:2]), "--out", str(out), "--backend", "scripted", "--whole-image",
             "--seed", "7", "--no-progress"]
    assert main(first) == 0
    capsys.readouterr()
    # Without the flags the default hub model would be built, which cannot load here.
    assert main(["batch", *map(str, images), "--out", str(out), "--resume", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "recorded settings: --backend scripted, --seed 7, --whole-image" in err
    assert "different assistant" not in err
    items = [r for r in read_jsonl(out / LOG_NAME) if r["record"] == "item"]
    assert len(items) == 3 and all(r["status"] == "ok" for r in items)
    assert [r["settings"]["arguments"]["seed"] for r in runs(out)] == [7, 7]


def test_a_typed_option_wins_over_the_record_and_the_warning_stands(tmp_path, capsys):
    images = noise_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert main(["batch", str(images[0]), "--out", str(out), "--backend", "scripted", "--whole-image",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["batch", *map(str, images), "--out", str(out), "--resume", "--model", str(tmp_path / "nope"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "model folder not found" in err  # --model decides the backend too: not the recorded scripted one
    assert len(runs(out)) == 1  # the failed resume appended nothing


def test_a_resume_without_inputs_goes_on_with_the_recorded_ones(tmp_path, capsys):
    images = noise_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert main(["batch", str(tmp_path / "in"), "--out", str(out), "--backend", "scripted", "--whole-image",
                 "--no-progress"]) == 0
    noise_images(tmp_path / "in", 3)  # one more file in the folder
    capsys.readouterr()
    assert main(["batch", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert "1 item(s) analysed (0 with errors), 2 already done" in capsys.readouterr().err
    assert len(images) == 2


def test_a_resume_with_nothing_to_do_adds_no_run_and_summaries_count_working_runs(tmp_path):
    images = noise_images(tmp_path / "in", 1)
    out = tmp_path / "out"
    command = ["batch", str(images[0]), "--out", str(out), "--backend", "scripted", "--whole-image", "--no-progress"]
    assert main(command) == 0
    assert main([*command, "--resume"]) == 0
    assert len(runs(out)) == 1
    # A log of an older version holds a run record for a resume that analysed nothing.
    with (out / LOG_NAME).open("a") as fh:
        fh.write(json.dumps({"schema": "ffaa.batch/1", "record": "run", "settings": {"assistant": {"model": "idle"}}})
                 + "\n")
    summary = load_summary(out)
    assert [r["settings"]["assistant"]["model"] for r in summary.runs] == ["scripted-rules"]


def test_given_options_are_the_typed_ones_and_their_exclusive_partners():
    parser = build_parser()
    given = given_options(parser, ["batch", "a", "--out", "x", "--whole-image", "--seed", "0"])
    assert {"out", "whole_image", "fallback_whole", "seed", "inputs"} <= given
    assert not given & {"model", "demo", "batch_size", "triage"}
    assert "inputs" not in given_options(parser, ["batch", "--out", "x", "--resume"])


@pytest.mark.slow
def test_eval_run_resume_takes_the_recorded_demo_model(tmp_path, capsys):
    from PIL import Image

    bench = make_benchmark(tmp_path / "bench", {"S": {"a.png": "real"}}, files=False)
    for i, name in enumerate(("a.png", "b.png")):
        Image.new("RGB", (64, 64), (40 * i, 90, 150)).save(bench / "S" / "imgs" / name)
    out = tmp_path / "results"
    base = ["eval", "run", str(bench), "--out", str(out), "--whole-image", "--no-plots", "--bootstrap", "0",
            "--no-progress"]
    assert main([*base, "--demo"]) == 0
    (bench / "S" / "S.json").write_text(json.dumps({"a.png": "real", "b.png": "fake"}))
    capsys.readouterr()
    assert main([*base, "--resume"]) == 0  # the default hub model cannot load here: the record's --demo must
    assert "recorded settings: --demo" in capsys.readouterr().err
    items = [r for r in read_jsonl(out / "reports" / LOG_NAME) if r["record"] == "item"]
    assert len(items) == 2
