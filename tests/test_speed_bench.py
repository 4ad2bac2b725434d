"""`ffaa bench` flows and tables, and the GPU script's CPU dry run. Figures are never asserted:
only that every flow ran, did the same work, and was reported where it should be."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ffaa.bench import FlowTiming, format_rows, reference_seconds

REPO = Path(__file__).resolve().parents[1]


def test_ratios_are_against_the_first_reference_flow():
    timings = [FlowTiming("ffaa_reference", 6.0, 0.1, 768, 128.0, 5.0, "4bit"),
               FlowTiming("batched", 3.0, 0.1, 768, 256.0, 5.0, "4bit"),
               FlowTiming("compiled", 0.5, 40.0, 768, 1536.0, 5.5, "int4-ao", "static cache + torch.compile")]
    assert reference_seconds(timings) == 6.0
    rows = format_rows(timings)
    assert rows[0].startswith("| format | flow |") and len(rows) == 5
    assert rows[3].split("|")[7].strip() == "2.00" and rows[4].split("|")[7].strip() == "12.00"
    assert "| int4-ao | compiled | 0.500 | 40.0 |" in rows[4]


def test_bench_command_runs_every_flow_and_format(tmp_path, capsys):
    """Two formats, each in a process of its own (the default), every flow."""
    pytest.importorskip("torch")
    from ffaa.cli import main

    jsonl, md, js = tmp_path / "b.jsonl", tmp_path / "b.md", tmp_path / "b.json"
    code = main(["bench", "--demo", "--new-tokens", "4", "--repeats", "1", "--first-tokens", "2",
                 "--formats", "none,int8-ao", "--compile", "static", "--flows",
                 "ffaa_reference,batched,compiled,compiled_generate",
                 "--jsonl", str(jsonl), "--markdown", str(md), "--json", str(js)])
    assert code == 0
    assert capsys.readouterr().out.count("in its own process") == 2
    flows = ("ffaa_reference", "batched", "compiled", "compiled_generate")
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [(r["quantization"], r["name"]) for r in lines] == [(q, f) for q in ("none", "int8-ao") for f in flows]
    assert {r["new_tokens"] for r in lines} == {12}  # 3 candidates x 4 forced tokens, in every flow
    assert all(r["seconds_per_face"] > 0 and r["tokens_per_s"] > 0 for r in lines)
    notes = {r["name"]: r["note"] for r in lines}
    assert notes["compiled"] == "static cache, not compiled, ffaa's loop"
    assert notes["compiled_generate"] == "static cache, not compiled, transformers' generate"
    table = md.read_text()
    assert table.count("\n| none |") == 4 and table.count("\n| int8-ao |") == 4
    assert "x vs reference" in table and "| 1.00 |" in table
    assert json.loads(js.read_text())["results"][1]["quantization"] == "int8-ao"


def test_bench_in_process_and_a_failed_child(tmp_path, capsys):
    pytest.importorskip("torch")
    import argparse

    from ffaa.cli import build_parser, main
    from ffaa.commands.bench import _forwarded_options, _run_in_child

    md = tmp_path / "b.md"
    assert main(["bench", "--demo", "--new-tokens", "2", "--repeats", "1", "--flows", "batched",
                 "--formats", "none,int8-ao", "--in-process", "--markdown", str(md)]) == 0
    assert "in its own process" not in capsys.readouterr().out
    assert md.read_text().count("| batched |") == 2
    args = build_parser().parse_args(["bench", "--model", str(tmp_path / "missing"), "--new-tokens", "3"])
    assert _forwarded_options(args) == ["--new-tokens", "3", "--model", str(tmp_path / "missing")]
    [failed] = _run_in_child(args, "none")
    assert failed.flows == () and failed.skipped == ("none: its process exited with 2",)
    # A child that ran but could time nothing passes its reasons on.
    assert main(["bench", "--demo", "--formats", "none,none", "--flows", "compiled", "--compile", "off",
                 "--new-tokens", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("compiled on none: no compiled decoder for this format/device") >= 2
    assert "its process exited" not in err.splitlines()[-1]
    assert isinstance(args, argparse.Namespace)


def test_bench_skips_compiled_without_a_compiled_decoder(tmp_path):
    pytest.importorskip("torch")
    from ffaa.cli import main

    md = tmp_path / "b.md"
    assert main(["bench", "--demo", "--new-tokens", "2", "--repeats", "1", "--flows", "batched,compiled",
                 "--compile", "off", "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "| batched |" in text and "| compiled |" not in text
    assert "not run: compiled on none" in text


def test_bench_rejects_unknown_names():
    from ffaa.cli import main

    assert main(["bench", "--demo", "--flows", "batched,turbo"]) != 0


@pytest.mark.slow
def test_gpu_script_dry_run(tmp_path):
    """The GPU script end to end on tiny shapes, each step in its own process: every step
    reports, and the table is rebuilt from what the steps wrote."""
    pytest.importorskip("torch")
    pytest.importorskip("torchao")
    pytest.importorskip("bitsandbytes")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_bench.py"), "--dry-run", "--out", str(tmp_path),
         "--steps", "build,exact,none,int4-ao,batch,mids,4bit,int8-ao", "--optional", "int8-ao",
         "--optional-step-s", "1e9"],  # an optional step never fits
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "gpu_bench.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in rows]
    assert "error" not in kinds, [r for r in rows if r["kind"] == "error"]
    flows = [(r["quantization"], r["name"]) for r in rows if r["kind"] == "flow"]
    assert flows == [("none", "ffaa_reference"), ("none", "compiled"), ("none", "compiled_generate"),
                     ("int4-ao", "compiled"), ("4bit", "ffaa_reference"), ("4bit", "batched")]
    assert [r["step"] for r in rows if r["kind"] == "skipped"] == ["int8-ao"]
    assert kinds[0] == "env" and kinds[-1] == "done" and "mids" in kinds and "built" in kinds
    [exact] = [r for r in rows if r["kind"] == "exact"]
    assert exact["same_text"] == [True, True, True] and exact["loop"] == "own"
    [check] = [r for r in rows if r["kind"] == "loop_check"]
    assert check["same_text"] == [True, True, True]  # on the CPU the two loops agree exactly
    [batch] = [r for r in rows if r["kind"] == "batch"]
    assert batch["images"] == 4 and batch["batched_ips"] > 0 and batch["triage_ips"] > 0
    assert {r["quant"] for r in rows if r["kind"] == "quality"} == {"4bit", "int4-ao"}
    assert {r["quant"] for r in rows if r["kind"] == "target"} == {"none", "int4-ao"}
    md = (tmp_path / "gpu_bench.md").read_text()
    assert "| 4bit | ffaa_reference |" in md and "MIDS (random weights" in md and "Quality against none" in md
    assert "| batched across images |" in md and "not run: int8-ao" in md


def test_gpu_script_records_a_crashed_step(tmp_path):
    """A step whose process dies is a line in the table, and the later steps still run."""
    pytest.importorskip("torch")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_bench.py"), "--dry-run", "--out", str(tmp_path),
         "--steps", "none,mids"],  # no build step: loading the model must fail
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "gpu_bench.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "error"] == ["none"]
    assert "mids" in [r["kind"] for r in rows]
    assert "failed: none:" in (tmp_path / "gpu_bench.md").read_text()


def test_bench_batch_command_shares_compiled_calls_across_images(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("skimage")  # the sample face
    from ffaa.cli import build_parser, main
    from ffaa.commands.bench import _bench_assistant

    args = build_parser().parse_args(["bench", "--demo", "--batch", "--batch-size", "6", "--compile", "static"])
    assistant = _bench_assistant(args)
    assert assistant.options.batch_size == 6 and assistant.backend.fast.settings.rows == 6
    out = tmp_path / "b.json"
    assert main(["bench", "--demo", "--batch", "--batch-size", "6", "--compile", "static", "--new-tokens", "2",
                 "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert (figures["images"], figures["batch_size"], figures["group_faces"]) == (8, 6, 2)
    assert figures["batched_s"] > 0 and figures["triage_s"] > 0
    assert "| batched across images |" in capsys.readouterr().out
    assert main(["bench", "--demo", "--batch", "--batch-size", "0"]) == 2
    assert main(["bench", "--demo", "--batch-size", "6"]) == 2  # without --batch it would be ignored
    assert "--batch-size applies to --batch" in capsys.readouterr().err


def test_gpu_script_starts_each_run_afresh(tmp_path):
    """A second run into the same folder does not mix the first run's rows or fingerprints in."""
    pytest.importorskip("torch")
    (tmp_path / "fingerprint_none.pt").write_bytes(b"stale")
    for _ in range(2):
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_bench.py"), "--dry-run", "--out",
                               str(tmp_path), "--steps", "mids"], capture_output=True, text=True, timeout=600,
                              check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "gpu_bench.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows].count("mids") == 1 and not (tmp_path / "fingerprint_none.pt").exists()
    assert (tmp_path / "gpu_bench.md").read_text().count("MIDS (random weights") == 1
