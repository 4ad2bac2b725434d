"""`ffaa analyze IMAGE...`: forensic reports for images, printed as text, JSON or Markdown."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import FfaaError
from .common import add_analysis_args, add_model_args, build_assistant
from .detector_args import add_detector_args


def add_parser(sub) -> None:
    p = sub.add_parser("analyze", help="analyse face images and print forensic reports",
                       description="Analyse each face in each image: three candidate answers, a decision, a report.")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files; one that cannot be analysed is reported on stderr, the others still are "
                        "(exit status 2 if any failed)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON list of reports (one per face)")
    out.add_argument("--markdown", action="store_true", help="print Markdown reports")
    p.add_argument("--heatmap", default=None, metavar="DIR",
                   help="save a Grad-CAM overlay of MIDS's decision per face into DIR")
    add_model_args(p)
    add_analysis_args(p)
    add_detector_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import display_text, panel_lines, report_to_dict, to_markdown

    if args.heatmap:
        _heatmap_dir(args.heatmap)  # before the model loads: a bad folder must fail fast
    assistant = build_assistant(args)
    if args.heatmap and not assistant.decider.explains:
        raise FfaaError("--heatmap explains MIDS's decision, and no MIDS decides here: give MIDS weights "
                        "(--mids PATH) or use --demo, without --no-mids")
    records, failures = [], 0
    for path in args.images:
        try:
            jobs = assistant.face_jobs(assistant.load(path))
            reports = assistant.analyze_jobs(jobs)
        except FfaaError as exc:
            failures += 1
            print(f"error: {exc}{_video_hint(path)}", file=sys.stderr)  # input errors name their file
            continue
        for job, report in zip(jobs, reports):
            if args.heatmap and not _heatmap(assistant, job, report, args.heatmap):
                failures += 1
            if args.json:
                records.append(report_to_dict(report))
            elif args.markdown:
                print(to_markdown(report))
            else:
                print(_header(path, report))
                print(display_text(report))
                if report.detectors is not None:
                    print("\n".join(panel_lines(report.detectors)))
                print()
    if args.json:
        print(json.dumps(records, indent=2, ensure_ascii=False))
    return 2 if failures else 0


def _video_hint(path: str) -> str:
    """`analyze` takes images; a video is refused, and this says where videos are analysed."""
    from ..media import sniff_kind

    try:
        is_video = sniff_kind(path) == "video"
    except FfaaError:
        return ""
    return f"; analyse videos with `ffaa batch {path} --out DIR` (sampled frames, a video verdict)" if is_video else ""


def _heatmap_dir(folder: str) -> Path:
    """The heatmap folder, created now; FfaaError when it cannot be written."""
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise FfaaError(f"--heatmap {folder} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FfaaError(f"--heatmap {folder}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise FfaaError(f"--heatmap {folder}: the folder is not writable")
    return path


def _heatmap(assistant, job, report, folder: str) -> bool:
    """Save one face's heatmap; False (after saying why) when it could not be written."""
    from ..heatmaps import save_heatmap

    try:
        saved = save_heatmap(assistant.decider, job.image, report, Path(folder).expanduser())
    except OSError as exc:
        print(f"error: {report.image.path}: heatmap not saved ({exc.strerror or exc})", file=sys.stderr)
        return False
    print(f"heatmap: {saved}" if saved else "heatmap: skipped (no decided answer)", file=sys.stderr)
    return True


def _header(path: str, report) -> str:
    where = "whole image" if report.face is None else (
        f"face {report.face_index} [{report.face.left},{report.face.top},{report.face.right},{report.face.bottom}]")
    lines = [f"== {path} — {where}"]
    lines += [f"   note: {w}" for w in (*report.image.notes, *report.warnings)]
    if report.provenance.demo:
        lines.append("   (demo model: trained only to write the format; its content is noise)")
    return "\n".join(lines)
