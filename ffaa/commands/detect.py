"""`ffaa detect FILE... --detectors NAME=PATH,...`: the classic detectors on images and videos,
printed as the talk's table (each detector's P(fake), the majority vote), optionally written
to a folder (detect.jsonl, appended and fsynced per file so a killed run keeps what it did;
detect.csv and detect.md at the end)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FfaaError, InputError, one_line
from .detector_args import add_detector_args, detectors_config

if TYPE_CHECKING:
    from ..media import LoadLimits

OUTPUT = "detect.jsonl"


def add_parser(sub) -> None:
    p = sub.add_parser("detect", help="run the classic detectors (DF40, DeepfakeBench, StA4Deepfake) and vote",
                       description="Score every face of every image and every face track of every video with the "
                                   "classic detectors; each says fake when P(fake) > its threshold (0.70), and "
                                   "the majority decides. Inputs: files, folders, globs, CSV/JSONL manifests "
                                   "(path, optional id and label).")
    p.add_argument("inputs", nargs="+", metavar="FILE", help="image or video file, folder, glob or manifest")
    p.add_argument("--out", type=Path, metavar="DIR", help="write detect.jsonl, detect.csv and detect.md here")
    p.add_argument("--resume", action="store_true", help="continue a run in --out: skip files already done")
    p.add_argument("--json", action="store_true", help="print the JSON records instead of the table")
    p.add_argument("--labels", metavar="PATH",
                   help="true labels (benchmark folder, CSV/JSONL id,label) for accuracy and recall per detector")
    faces = p.add_mutually_exclusive_group()
    faces.add_argument("--whole-image", action="store_true", help="images: score the whole image, no face crop")
    faces.add_argument("--fallback-whole", action="store_true",
                       help="images: score the whole image when no face is found (default: an error)")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse larger images (default 40 Mpx)")
    add_detector_args(p, required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..batch.inputs import discover
    from ..detectors.runner import DetectorSet

    if args.ffaa_votes:
        raise FfaaError("--ffaa-votes adds FFAA's verdict to the vote, and `ffaa detect` runs no FFAA: "
                        "use it with ffaa analyze, batch or app")
    config = detectors_config(args)
    limits = _limits(args.max_pixels)
    out = _prepare_out(args.out, args.resume) if args.out else None
    discovery = discover(args.inputs, exclude=args.out)
    for w in discovery.warnings:
        print(f"note: {w}", file=sys.stderr)
    labels = _labels(args.labels) if args.labels else None
    done = _done(out) if out else {}
    dset = DetectorSet.load(config, log_line=lambda line: print(line, file=sys.stderr))
    mode = "whole" if args.whole_image else ("auto" if args.fallback_whole else "faces")
    records, errors = [], []
    for n, item in enumerate(discovery.items, 1):
        if item.key in done:
            records.append(done[item.key])
            continue
        print(f"[{n}/{len(discovery.items)}] {item.path}", file=sys.stderr)
        record = _detect(dset, item, mode, _label(item, labels), limits)
        (errors if record["error"] else records).append(record)
        if out:
            _append(out / OUTPUT, record)
    return _finish(args, out, records, errors)


def _limits(max_pixels: int | None) -> LoadLimits:
    """The image limits, --max-pixels checked before any detector loads."""
    from ..media import LoadLimits

    if max_pixels is not None and max_pixels < 1:
        raise FfaaError(f"--max-pixels must be at least 1, got {max_pixels}")
    return LoadLimits(max_pixels=max_pixels) if max_pixels else LoadLimits()


def _detect(dset, item, mode: str, label: str | None, limits: LoadLimits | None = None) -> dict:
    from ..detectors.items import detect_path, error_record, item_record

    paths = [s.path for s in item.sources]
    if item.problem or item.kind not in ("image", "video"):
        reason = item.problem or f"{item.path}: not an image or a video"
        return error_record(item.item_id, item.path, label, item.sha256, reason)
    try:
        found = detect_path(dset, item.path, mode, limits)
    except InputError as exc:
        return error_record(item.item_id, item.path, label, item.sha256, str(exc))
    except (RuntimeError, ValueError, OSError) as exc:  # one broken file must not end the run
        return error_record(item.item_id, item.path, label, item.sha256, f"{item.path}: {one_line(exc)}")
    return {**item_record(found, item.item_id, label, item.sha256, paths), "key": item.key,
            "detectors": dict(dset.provenance())}


def _finish(args, out: Path | None, records: list[dict], errors: list[dict]) -> int:
    from ..detectors.table import csv_table, scores_table, text_table

    if args.json:
        print(json.dumps(records + errors, indent=2, ensure_ascii=False))
    else:
        print(text_table(records, errors))
        for r in records:
            if r["verdict"] is None:
                print(f"note: {r['id']}: " + ("; ".join(r["notes"]) or "no verdict"))
        if any("demo" in str(w) for r in records for w in r.get("detectors", {}).values()):
            print("DEMO detectors (random weights): these probabilities are noise")
        scores = scores_table(records)
        if scores:
            print("\n" + scores)
    if out:
        from ..batch.journal import atomic_write

        scores = scores_table(records)
        md = "# Classic detectors\n\n```\n" + text_table(records, errors) + "\n```\n"
        md += f"\n```\n{scores}\n```\n" if scores else ""
        try:
            atomic_write(out / "detect.csv", csv_table(records).encode("utf-8"))
            atomic_write(out / "detect.md", md.encode("utf-8"))
        except OSError as exc:
            raise FfaaError(f"cannot write the tables in {out}: {exc.strerror or exc}") from None
        print(f"wrote {out / OUTPUT}, {out / 'detect.csv'}, {out / 'detect.md'}", file=sys.stderr)
    return 2 if errors else 0


def _prepare_out(folder: Path, resume: bool) -> Path:
    folder = folder.expanduser()
    if folder.exists() and not folder.is_dir():
        raise FfaaError(f"--out {folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not resume:
        raise FfaaError(f"output folder {folder} is not empty: add --resume to continue its run")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FfaaError(f"--out {folder}: cannot create the folder ({exc.strerror or exc})") from None
    return folder


def _done(out: Path) -> dict[str, dict]:
    """Records of a previous run, by item key (error records are redone). A line cut short by
    a killed run is dropped from the file first, so that the next append starts a line."""
    from ..report import iter_report_records

    path = out / OUTPUT
    if not path.is_file():
        return {}
    _drop_torn_tail(path)
    try:
        return {r["key"]: r for r in iter_report_records(path) if r.get("key") and not r.get("error")}
    except ValueError as exc:
        raise FfaaError(f"{path}: {exc}") from None


def _drop_torn_tail(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)
        print(f"note: {path}: dropped the last line, cut short by an interrupted run; that file is analysed again",
              file=sys.stderr)


def _append(path: Path, record: dict) -> None:
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise FfaaError(f"cannot write {path}: {exc.strerror or exc}; rerun with --resume") from None


def _labels(path: str):
    from ..eval.label_sources import load_labels
    from ..eval.matching import PathIndex

    labels = {label.id: label for label in load_labels(path).labels}
    return labels, PathIndex(labels)


def _label(item, labels) -> str | None:
    if labels is None:
        return item.label
    by_id, index = labels
    for source in item.sources:
        match = index.match(source.path)
        if match.id is not None:
            return by_id[match.id].verdict.value
    return item.label
