"""Every `ffaa` command in the README's command blocks, run in the README's order, as a new
user would, in a folder holding the files the README names.

What cannot run here is replaced, and each replacement is listed in `SUBSTITUTIONS`: models
and weights that come from the hub (no hub here) become the demo model (`--demo`) or demo
detectors (`NAME=demo`), and MIDS training on the real encoders becomes `--tiny`. Commands that
serve a page until stopped (`ffaa app`) are covered by the browser test instead. Everything
else — file names, folders, flags, the order of runs into the same output folder — is the
README's.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("dlib")
pytest.importorskip("av")

import makers  # noqa: E402
from conftest import REPO  # noqa: E402

pytestmark = pytest.mark.slow

# (pattern, replacement, why) applied in order to each command line.
SUBSTITUTIONS = [
    (r"--model (thu-huangzc/ffaa-mistral-7b|/models/ffaa-mistral-7b|/models/judge|DIR)", "--demo",
     "FFAA's checkpoint and a judge model come from the hub"),
    (r" --mids DIR/mids\.pth", "", "the demo model has its own tiny MIDS"),
    (r"(clip_large|xception|i3d|sta|srm)=[\w.]+\.pth", r"\1=demo", "released detector weights are downloads"),
    (r"(train-mids --train data\.json) --val val\.json (--out runs/mids)", r"\1 --val data.json \2 --tiny",
     "MIDS's CLIP and T5 encoders come from the hub"),
]
NOT_RUN = {
    "ffaa app": "serves a page until stopped: the browser test drives it",
}


def readme_commands() -> list[str]:
    """The `ffaa ...` lines of the README's bash blocks (comments dropped), in order; the
    usage synopsis (with [options] and IMAGE...) is not a command."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith("ffaa ") and "[" not in command and "..." not in command:
                lines.append(command)
    return lines


# Commands that load FFAA's model; without a --model of their own they get --demo. A resumed run
# (or explaining a triage run) takes its model from the run's record, as the README promises.
NEEDS_MODEL = ("ffaa analyze", "ffaa batch", "ffaa app", "ffaa eval run", "ffaa mids mids-data")
TAKES_RECORDED_MODEL = ("--resume", "--explain-flagged", "--summarize-only")


def runnable(command: str) -> str:
    for pattern, replacement, _ in SUBSTITUTIONS:
        command = re.sub(pattern, replacement, command)
    words = command.split()
    if (command.startswith(NEEDS_MODEL) and not {"--demo", "--model"} & set(words)
            and not set(TAKES_RECORDED_MODEL) & set(words)):
        command += " --demo"
    return command


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder with every file the README's commands name."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("readme")
    astro = Image.fromarray(data.astronaut())
    face = np.asarray(astro.resize((256, 256)))[0:200, 60:230]
    astro.save(root / "photo.jpg")
    astro.crop((120, 0, 400, 300)).save(root / "face.jpg")
    (root / "photos").mkdir()
    astro.save(root / "photos" / "a.png")
    astro.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "photos" / "b.png")
    (root / "clips").mkdir()
    makers.write_video(root / "clips" / "c.mp4", makers.face_frames(face, 10, (320, 240)), fps=10)
    makers.write_video(root / "clip.mp4", makers.face_frames(face, 10, (320, 240)), fps=10)
    (root / "manifest.csv").write_text("path,label\nphoto.jpg,real\nclip.mp4,fake\n")
    (root / "labels.csv").write_text("id,label\nphoto.jpg,real\nclip.mp4,fake\nphotos/a.png,real\n"
                                     "photos/b.png,fake\nclips/c.mp4,fake\n")
    (root / "detectors.yaml").write_text("detectors:\n  xception: demo\n  srm: {weights: demo, threshold: 0.6}\n")
    for name, verdict in (("real", "real"), ("fake", "fake")):
        folder = root / "labelled_folder" / name
        folder.mkdir(parents=True)
        astro.rotate(3 if verdict == "fake" else 0).save(folder / f"{name}.png")
    bench = root / "benchmark" / "SET"
    (bench / "imgs").mkdir(parents=True)
    astro.save(bench / "imgs" / "1.png")
    astro.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(bench / "imgs" / "2.png")
    (bench / "SET.json").write_text(json.dumps({"1.png": "real", "2.png": "fake"}))
    refs = [{"id": p, "text": "A frontal face in even light; the skin and the edges look natural."}
            for p in ("photos/a.png", "photos/b.png", "photo.jpg")]
    (root / "refs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    table = {"threshold": 0.7, "detectors": ["A", "B", "C"],
             "videos": [{"file": "v1", "actual": "fake", "probabilities": [0.9, 0.8, 0.2]},
                        {"file": "v2", "actual": "real", "probabilities": [0.1, 0.75, 0.3]}]}
    (root / "table.json").write_text(json.dumps(table))
    return root


def _expand(arg: str, root: Path) -> list[str]:
    """A glob as the shell expands it (in place); any other argument as is."""
    if "*" not in arg:
        return [arg]
    return [str(p.relative_to(root)) for p in sorted(root.glob(arg))]


def test_readme_lists_the_commands_this_test_runs():
    commands = readme_commands()
    assert len(commands) > 20 and any(c.startswith("ffaa detect") for c in commands)


def test_every_readme_command_runs_in_order(workspace):
    import torch

    from ffaa.detectors.checkpoint import expected_shapes

    # `ffaa detectors convert xception.pth ...` needs a released-layout file to convert.
    torch.save({k: torch.zeros(s) for k, s in expected_shapes("xception").items()}, workspace / "xception.pth")
    ffaa = [sys.executable, "-m", "ffaa"]
    failures = []
    for command in readme_commands():
        if any(command.startswith(prefix) for prefix in NOT_RUN):
            continue
        line = runnable(command)
        if "eval compare" in line:  # two result files: the detection results of two runs
            if not (workspace / "results" / "detection.json").is_file():
                failures.append(f"{command}\n  needs results/detection.json, which no earlier command wrote")
                continue
            for name in ("results_a", "results_b"):
                target = workspace / name
                target.mkdir(exist_ok=True)
                (target / "detection.json").write_bytes((workspace / "results" / "detection.json").read_bytes())
        args = [p for a in shlex.split(line)[1:] for p in _expand(a, workspace)]
        done = subprocess.run([*ffaa, *args], cwd=workspace, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            failures.append(f"{command}\n  ran: {line}\n  exit {done.returncode}: {done.stderr.strip()[-600:]}")
    assert not failures, "README commands that failed:\n" + "\n".join(failures)
