"""Inputs for the batch tests, built in tmp_path: face images and videos made from the shared
fixture faces, junk files, duplicates and a symlink loop. Helpers only; no tests here.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import makers
import numpy as np
from PIL import Image

FIXTURE_IMAGES = ("real_celeba3.jpg", "fake_pggan4.png", "fake_c23_dfd1.png")


def face_array(shared: Path, name: str = "real_celeba3.jpg", size=(200, 240)) -> np.ndarray:
    return np.asarray(Image.open(shared / "images" / name).convert("RGB").resize(size))


def face_video(path: Path, face: np.ndarray, count: int = 30, *, dark_from: int | None = None,
               faststart: bool = False, noise: bool = False, container: str | None = None) -> Path:
    """A 10 fps video of `face` on a 320x320 canvas; frames from `dark_from` on are darkened,
    which the scripted backend reads as fake (dark = fake), so a timeline has both verdicts.
    """
    rng = np.random.default_rng(0)
    frames = []
    for i in range(count):
        canvas = rng.integers(0, 256, (320, 320, 3), dtype=np.uint8) if noise else np.full((320, 320, 3), 128, np.uint8)
        shown = face if dark_from is None or i < dark_from else (face * 0.35).astype(np.uint8)
        canvas[40:280, 60:260] = shown
        frames.append(canvas)
    return makers.write_video(path, frames, fps=10, faststart=faststart, container=container)


def build_corpus(root: Path, shared: Path, *, big: bool = True) -> dict[str, Path]:
    """A folder with every kind of input `ffaa batch` must handle. Returns name -> path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir()
    files: dict[str, Path] = {}
    for name in FIXTURE_IMAGES if big else FIXTURE_IMAGES[:2]:
        files[name] = Path(shutil.copy(shared / "images" / name, root / name))
    files["dup"] = Path(shutil.copy(shared / "images" / "real_celeba3.jpg", root / "sub" / "copy of celeba.jpg"))
    dark = (face_array(shared, size=(256, 256)) * 0.3).astype(np.uint8)
    files["dark"] = makers.save(Image.fromarray(dark), root / "sub" / "dark_face.png", "PNG")
    face = face_array(shared)
    files["clip"] = face_video(root / "clip.mp4", face, dark_from=15)
    whole = face_video(root / "whole.mp4", face, count=40, faststart=True, noise=True)
    files["cut"] = root / "cut.mp4"
    files["cut"].write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    files["noface"] = makers.write_video(root / "noface.mkv", makers.counter_frames(20, 96, 64), container="matroska")
    files["empty_video"] = root / "empty.mp4"
    files["empty_video"].write_bytes(b"")
    files["text"] = root / "notes.jpg"
    files["text"].write_text("not a picture\n")
    files["html"] = root / "page.jpg"
    files["html"].write_text("<!DOCTYPE html><html><body>hi</body></html>")
    files["zip"] = root / "archive.jpg"
    with zipfile.ZipFile(files["zip"], "w") as z:
        z.writestr("a.txt", "zip")
    files["evil"] = root / "<img src=x onerror=alert(1)> & 'q'.txt"
    files["evil"].write_text("junk with a hostile name")
    (root / ".DS_Store").write_bytes(b"\0hidden")
    (root / "sub" / "loop").symlink_to("..")
    return files


def noise_images(root: Path, count: int, size: int = 48) -> list[Path]:
    """Distinct small images (whole-image mode needs no face)."""
    root.mkdir(parents=True, exist_ok=True)
    return [makers.save(makers.noisy_rgb(size, size, seed=i), root / f"img{i:03d}.png", "PNG") for i in range(count)]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_record(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r["record"] == kind]
