"""MIDS training data: FFAA's JSON schema, writing it from assistant reports, reading it back,
augmentations, and batching.

The schema (a JSON list, one row per face image):

    {"image": "relative/or/absolute/path.png",
     "cls_label": 0 | 1,                       # 1 = the image is fake
     "answers": [{"content": "<the answer as the model wrote it>",
                  "result": "real" | "fake",   # what the answer claims
                  "label": 2 * cls_label + (result == "fake")}, ...],   # usually 3 answers
     "crop": [left, top, right, bottom]}       # optional (ours): the face region to use

Images are read as RGB (FFAA's training read BGR by mistake; inference is RGB, and so is this).
Reading skips bad rows - missing images, labels out of range or inconsistent with the answer's
claim, answers that do not parse - and counts each reason.
"""

from __future__ import annotations

import io
import json
import os
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ffaa.errors import FfaaError, InputError
from ffaa.jsonio import read_json
from ffaa.options import IMAGE_SUFFIXES
from ffaa.parsing import mask_for_mids, parse_answer
from ffaa.types import ForensicReport, Verdict

if TYPE_CHECKING:
    from PIL import Image



def class_label(image_is_fake: bool, claims_fake: bool) -> int:
    """FFAA's 4 classes: 0 real/real, 1 real/fake claim, 2 fake/real claim, 3 fake/fake."""
    return 2 * int(image_is_fake) + int(claims_fake)


# --- writing (mids-data) -----------------------------------------------------------------------

@dataclass
class WriteStats:
    """What `write_mids_data` kept and why it dropped the rest."""

    rows: int = 0
    dropped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        parts = [f"{self.rows} rows written"]
        parts += [f"{n} {reason}" for reason, n in sorted(self.dropped.items())]
        return ", ".join(parts)


def row_from_report(image: str, image_is_fake: bool, report: ForensicReport) -> dict[str, Any] | None:
    """One schema row from a report's candidates; None when no candidate parsed."""
    answers = []
    for cand in report.candidates:
        if cand.answer is None:
            continue
        claims_fake = cand.answer.verdict is Verdict.FAKE
        answers.append({"content": cand.raw_text, "result": cand.answer.verdict.value,
                        "label": class_label(image_is_fake, claims_fake)})
    if not answers:
        return None
    row: dict[str, Any] = {"image": image, "cls_label": int(image_is_fake), "answers": answers}
    if report.face is not None and report.face.crop is not None:
        row["crop"] = list(report.face.crop)
    return row


def write_mids_data(items: Iterable[tuple[str | Path, bool, ForensicReport]], out: str | Path, *,
                    drop_agreeing: bool = True, image_root: str | Path | None = None) -> WriteStats:
    """Write FFAA's schema for (image path, image is fake, report) items.

    `drop_agreeing` drops faces whose parsed verdicts all agree, as FFAA did: they teach MIDS
    nothing about choosing between answers. With `image_root`, image paths are written relative
    to it when they lie under it, absolute otherwise.
    """
    stats, rows = WriteStats(), []
    for path, is_fake, report in items:
        row = row_from_report(_relative(Path(path), image_root), bool(is_fake), report)
        if row is None:
            stats.dropped["without a parsed answer"] += 1
            continue
        if drop_agreeing and len({a["result"] for a in row["answers"]}) == 1:
            stats.dropped["dropped because all verdicts agree"] += 1
            continue
        rows.append(row)
    write_json_atomic(Path(out), rows)
    stats.rows = len(rows)
    return stats


def write_json_atomic(out: Path, value: Any) -> None:
    """Write JSON through a temporary file and a rename: never a half-written output."""
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(value, indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise FfaaError(f"cannot write {out}: {exc.strerror or exc}") from None


def _relative(path: Path, root: str | Path | None) -> str:
    if root is None:
        return str(path)
    try:
        return path.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


@dataclass(frozen=True)
class LabelledImages:
    """(image, is fake) pairs, and what was left out of the labels (rows skipped, with why)."""

    items: tuple[tuple[Path, bool], ...]
    skipped: int = 0
    problems: tuple[str, ...] = ()


def labelled_images(source: str | Path) -> list[tuple[Path, bool]]:
    """(image, is fake) pairs (see `find_labelled_images`)."""
    return list(find_labelled_images(source).items)


def find_labelled_images(source: str | Path) -> LabelledImages:
    """Labelled images from a folder with `real/` and `fake/` subfolders (hidden files skipped),
    or from any label source `ffaa.eval.label_sources.load_labels` reads (benchmark folder, <set>.json,
    CSV, JSONL), with the label rows it skipped."""
    src = Path(source).expanduser()
    if src.is_dir() and ((src / "real").is_dir() or (src / "fake").is_dir()):
        return _class_folders(src)
    if src.is_dir() and not any((d / f"{d.name}.json").is_file() for d in src.iterdir()):
        raise InputError(f"{src}: no labelled images: expected real/ and fake/ subfolders, or benchmark sets "
                         "(<set>/<set>.json, e.g. DPF/DPF.json)")
    from ffaa.eval.label_sources import load_labels

    labels = load_labels(src)
    root = src if src.is_dir() else (src.parent.parent if src.suffix == ".json" else src.parent)
    items = tuple((Path(lab.id) if Path(lab.id).is_absolute() else root / lab.id, lab.verdict is Verdict.FAKE)
                  for lab in labels.labels)
    return LabelledImages(items, labels.invalid + labels.duplicates, labels.problems)


def _class_folders(src: Path) -> LabelledImages:
    items, problems = [], []
    for kind in ("real", "fake"):
        folder = src / kind
        if not folder.is_dir():
            problems.append(f"{folder}: no such folder, so no {kind} images")
            continue
        items += [(p, kind == "fake") for p in sorted(folder.rglob("*"))
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return LabelledImages(tuple(items), 0, tuple(problems))


# --- reading -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """One usable row: the image, its class, and each answer's masked text, claim and label."""

    image: Path
    image_is_fake: bool
    texts: tuple[str, ...]
    claims: tuple[str, ...]
    labels: tuple[int, ...]
    crop: tuple[int, int, int, int] | None = None


@dataclass
class LoadedData:
    samples: list[Sample]
    skipped: Counter

    def summary(self, name: str) -> str:
        text = f"{name}: {len(self.samples)} rows"
        if self.skipped:
            text += f", {sum(self.skipped.values())} skipped (" + ", ".join(
                f"{n} {reason}" for reason, n in sorted(self.skipped.items())) + ")"
        return text


def load_mids_data(path: str | Path, image_root: str | Path | None = None) -> LoadedData:
    """Read a schema file; relative image paths resolve against `image_root` (default: the
    file's folder). Bad rows are skipped and counted by reason, never fatal."""
    path = Path(path)
    rows = read_json(path, expect=list, error=InputError, unreadable="cannot read MIDS data {path}: {exc}",
                     wrong_type="{path}: expected a JSON list of rows")
    root = Path(image_root) if image_root is not None else path.parent
    samples, skipped = [], Counter()
    for row in rows:
        sample, problem = _sample(row, root)
        if problem:
            skipped[problem] += 1
        else:
            samples.append(sample)
    return LoadedData(samples, skipped)


def _is_fake(value: Any) -> bool | None:
    if value in (0, 1) and not isinstance(value, float):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("real", "fake"):
        return value.strip().lower() == "fake"
    return None


def _sample(row: Any, root: Path) -> tuple[Sample | None, str | None]:
    if not isinstance(row, dict) or not isinstance(row.get("image"), str):
        return None, "malformed rows"
    image = Path(row["image"])
    image = image if image.is_absolute() else root / image
    if not image.is_file():
        return None, "missing images"
    fake = _is_fake(row.get("cls_label"))
    answers = row.get("answers")
    if fake is None:
        return None, "bad cls_label"
    if not isinstance(answers, list) or not answers:
        return None, "rows without answers"
    texts, claims, labels = [], [], []
    for ans in answers:
        parsed = parse_answer(ans.get("content", "")) if isinstance(ans, dict) else None
        if parsed is None or parsed.answer is None:
            return None, "unparseable answers"
        claim = str(ans.get("result") or parsed.answer.verdict.value).strip().lower()
        label = ans.get("label")
        if claim not in ("real", "fake") or not isinstance(label, int) or isinstance(label, bool) \
                or label != class_label(fake, claim == "fake"):
            return None, "bad labels"
        texts.append(mask_for_mids(parsed.answer))
        claims.append(claim)
        labels.append(label)
    crop = row.get("crop")
    crop = tuple(int(v) for v in crop) if isinstance(crop, list) and len(crop) == 4 else None
    return Sample(image, fake, tuple(texts), tuple(claims), tuple(labels), crop), None


def open_rgb(sample: Sample) -> Image.Image:
    """The sample's image (its crop, when given) in RGB."""
    from PIL import Image, ImageOps

    with Image.open(sample.image) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
    return im.crop(sample.crop) if sample.crop else im


# --- augmentation ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Augment:
    """FFAA's kinds of augmentation, each applied with its probability, in this order:
    colour jitter, Gaussian blur, Gaussian noise, JPEG re-compression. Seeded per call."""

    p_jitter: float = 0.5
    jitter: float = 0.2           # brightness/contrast/saturation factor in [1-j, 1+j]
    p_blur: float = 0.3
    blur_radius: tuple[float, float] = (0.1, 2.0)
    p_noise: float = 0.3
    noise_sigma: tuple[float, float] = (2.0, 10.0)  # on the 0..255 scale
    p_jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (40, 95)

    def __call__(self, image: Image.Image, seed: Sequence[int]) -> Image.Image:
        from PIL import ImageEnhance, ImageFilter

        rng = random.Random(repr(tuple(seed)))
        img = image.convert("RGB")
        if rng.random() < self.p_jitter:
            for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
                img = enhance(img).enhance(rng.uniform(1 - self.jitter, 1 + self.jitter))
        if rng.random() < self.p_blur:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(*self.blur_radius)))
        if rng.random() < self.p_noise:
            img = _add_noise(img, rng.uniform(*self.noise_sigma), rng.randrange(2**32))
        if rng.random() < self.p_jpeg:
            img = _recompress(img, rng.randint(*self.jpeg_quality))
        return img


def _add_noise(img: Image.Image, sigma: float, seed: int) -> Image.Image:
    from PIL import Image

    arr = np.asarray(img, dtype=np.float32)
    arr = arr + np.random.default_rng(seed).normal(0.0, sigma, arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def _recompress(img: Image.Image, quality: int) -> Image.Image:
    from PIL import Image

    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


# --- batching ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Batch:
    """Tensors for one step: pixels [B, 3, S, S], ids/mask [T, L], image_index [T], labels [T]."""

    pixel_values: Any
    input_ids: Any
    attention_mask: Any
    image_index: Any
    labels: Any
    samples: tuple[Sample, ...]


def make_batch(samples: Sequence[Sample], processor: Any, tokenizer: Any, *, augment: Augment | None = None,
               seed: Sequence[int] = (0,), max_length: int = 512) -> Batch:
    """Preprocess samples into one batch (text rows image-major). `seed` + the sample position
    seed the augmentation, so a batch is reproducible."""
    import torch

    from .preprocess import pixel_values, tokenize

    images = [open_rgb(s) for s in samples]
    if augment is not None:
        images = [augment(im, (*seed, i)) for i, im in enumerate(images)]
    texts = [t for s in samples for t in s.texts]
    tokens = tokenize(tokenizer, texts, max_length)
    index = torch.tensor([i for i, s in enumerate(samples) for _ in s.texts], dtype=torch.long)
    labels = torch.tensor([label for s in samples for label in s.labels], dtype=torch.long)
    return Batch(pixel_values(processor, images), tokens.input_ids, tokens.attention_mask, index, labels,
                 tuple(samples))
