"""`ffaa batch INPUT... --out DIR`: forensic reports over folders of images and videos.

Writes DIR/reports.jsonl (append-only, resumable), DIR/report.html, DIR/summary.md and
DIR/summary.csv. See `ffaa.batch` for the machinery; this module only maps arguments to a
`BatchConfig` and prints the outcome.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from ..errors import FfaaError
from .common import add_analysis_args, add_model_args
from .detector_args import add_detector_args

VIDEO_RULES = ("mean", "fake-share", "max")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "batch", help="analyse folders of images and videos into resumable reports",
        description="Analyse every face in every image and video of the inputs (files, folders, globs, "
                    "CSV/JSONL manifests with a 'path' column and optional 'id' and 'label'). Writes "
                    "DIR/reports.jsonl, DIR/report.html, DIR/summary.md and DIR/summary.csv.")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="file, folder (recursive), glob or manifest")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (must be new or empty, unless --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in DIR: skip items already done")
    p.add_argument("--retry-errors", action="store_true",
                   help="with --resume: analyse again the items that ended in an error (a model failure, a "
                        "worker that died); the new result replaces the error in the summaries, the log "
                        "keeps both")
    p.add_argument("--summarize-only", type=Path, metavar="DIR",
                   help="only rebuild DIR's summaries from its reports.jsonl")
    _add_run_args(p)
    _add_video_args(p)
    _add_ray_args(p)
    add_model_args(p)
    add_analysis_args(p)
    add_detector_args(p)
    hidden = p.add_argument_group()
    hidden.add_argument("--backend", choices=("hf", "scripted"), default="hf", help=argparse.SUPPRESS)
    hidden.add_argument("--scripted-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("batch")
    g.add_argument("--triage", action="store_true",
                   help="verdict only: score each face from the model's next-token probabilities, no explanation")
    g.add_argument("--triage-threshold", type=float, default=0.5, metavar="P",
                   help="triage flags a face as fake when P(fake) >= P (default 0.5)")
    g.add_argument("--explain-flagged", action="store_true",
                   help="run the full analysis on the items triage flagged (alone: on the run already in --out)")
    g.add_argument("--group-faces", type=int, default=None, metavar="N",
                   help="faces of several items analysed per model call (default: batch size / 3)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--no-thumbnails", action="store_true", help="keep pictures out of DIR/thumbs and report.html")


def _add_video_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video")
    every = g.add_mutually_exclusive_group()
    every.add_argument("--every-seconds", type=float, metavar="S", help="sample a frame every S seconds")
    every.add_argument("--frames-per-video", type=int, metavar="K",
                       help="sample K frames spread over each video (default 8)")
    g.add_argument("--max-frames", type=int, default=32, metavar="N", help="at most N frames per video (default 32)")
    g.add_argument("--video-rule", choices=VIDEO_RULES, default="mean",
                   help="video verdict from frame scores: mean score, share of fake frames, or max (default mean)")
    g.add_argument("--video-threshold", type=float, default=0.5, metavar="T",
                   help="a video is fake when its rule's value >= T (default 0.5)")


def _add_ray_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("distributed")
    g.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run on Ray: a cluster ADDRESS, or alone for RAY_ADDRESS / a local cluster")
    g.add_argument("--ray-actors", type=int, default=None, metavar="N",
                   help="model replicas (default: one per GPU of the cluster, else 1)")
    g.add_argument("--ray-cpus-per-actor", type=float, default=None, metavar="C",
                   help="CPUs per replica without GPUs (default 1)")


def run(args: argparse.Namespace) -> int:
    from ..batch import write_summaries

    if args.summarize_only is not None:
        if args.inputs:
            raise FfaaError("--summarize-only DIR takes no inputs")
        summary = write_summaries(args.summarize_only)
        print(f"summaries of {len(summary.items)} items written to {args.summarize_only}")
        return 0
    config, factory = build_config(args)
    from ..batch import BatchInterrupted, run_batch

    try:
        result = run_batch(config, factory)
    except BatchInterrupted as stop:
        print(stop, file=sys.stderr)
        return 130
    print(f"{result.written} item(s) analysed ({result.errors} with errors), {result.skipped} already done; "
          f"{result.seconds:.1f} s. Report: {config.out / 'report.html'}", file=sys.stderr)
    return 0


def build_config(args: argparse.Namespace):
    """The run's BatchConfig and assistant factory from the parsed arguments."""
    from ..batch import BatchConfig, EngineSettings, RayOptions, VideoOptions
    from .common import assistant_spec
    from .recorded import arguments_to_record

    resumed = _resume_settings(args)
    _check(args)
    # Every flag, detector paths included, is checked now: a mistake must not leave a folder behind.
    spec = assistant_spec(args, rows_follow_batch_size=True)
    options = spec.analysis
    video = VideoOptions(args.every_seconds, args.frames_per_video, args.max_frames,
                         args.video_rule.replace("-", "_"), args.video_threshold)
    engine = EngineSettings("triage" if args.triage else "full", args.triage_threshold, video, not args.no_thumbnails)
    ray = (RayOptions(args.ray or None, args.ray_actors, args.ray_cpus_per_actor or 1.0)
           if args.ray is not None else None)
    config = BatchConfig(
        out=args.out, inputs=tuple(args.inputs), resume=args.resume, retry_errors=args.retry_errors,
        engine=engine,
        explain_flagged=args.explain_flagged, group_faces=args.group_faces or max(1, options.batch_size // 3),
        progress=not args.no_progress, ray=ray, arguments=arguments_to_record(args),
    )
    if resumed:
        print(f"ffaa batch: resuming {args.out} with its recorded settings: {', '.join(resumed)}", file=sys.stderr)
    if args.backend == "scripted":
        spec = replace(spec, backend="scripted", scripted_delay=args.scripted_delay)
    return config, spec


def _resume_settings(args: argparse.Namespace) -> list[str]:
    """On --resume (or --explain-flagged alone), what the run's record restores: the options the
    user did not type, and the inputs when none are given. Returns the flags that changed."""
    from ..batch.journal import LOG_NAME
    from .recorded import recorded_arguments, recorded_inputs, restore_arguments

    if args.out is None or not (args.resume or (args.explain_flagged and not args.inputs)):
        return []
    log = args.out / LOG_NAME
    recorded = recorded_arguments(log)
    changed = restore_arguments(args, recorded) if recorded else []
    if args.resume and not args.inputs and not args.explain_flagged:
        args.inputs = list(recorded_inputs(log))
        if args.inputs:
            changed.append("inputs " + " ".join(args.inputs))
    return changed


def _check(args: argparse.Namespace) -> None:
    """Argument combinations argparse cannot express, each refused with its reason."""
    if args.out is None:
        raise FfaaError("--out DIR is required (or use --summarize-only DIR)")
    if not args.inputs and not args.explain_flagged:
        raise FfaaError("no INPUT given: name files, folders, globs or manifests to analyse")
    if args.inputs and args.explain_flagged and not args.triage:
        raise FfaaError("--explain-flagged with inputs needs --triage (triage first, then explain what it flagged)")
    for name in ("triage_threshold", "video_threshold"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise FfaaError(f"--{name.replace('_', '-')} must be between 0 and 1")
    if args.group_faces is not None and args.group_faces < 1:
        raise FfaaError("--group-faces must be at least 1")
    if args.max_frames < 1 or (args.frames_per_video is not None and args.frames_per_video < 1):
        raise FfaaError("--max-frames and --frames-per-video must be at least 1")
    if args.every_seconds is not None and not args.every_seconds > 0:
        raise FfaaError("--every-seconds must be positive")
    if args.batch_size < 1:
        raise FfaaError("--batch-size must be at least 1")
    if args.retry_errors and not (args.resume or (args.explain_flagged and not args.inputs)):
        raise FfaaError("--retry-errors redoes failed items of an earlier run: use it with --resume "
                        "(or with --explain-flagged alone)")
    _check_ray(args)


def _check_ray(args: argparse.Namespace) -> None:
    given = [f"--ray-{n}" for n, v in (("actors", args.ray_actors), ("cpus-per-actor", args.ray_cpus_per_actor))
             if v is not None]
    if args.ray is None and given:
        raise FfaaError(f"{' and '.join(given)} only {'apply' if len(given) > 1 else 'applies'} with --ray")
    if args.ray_actors is not None and args.ray_actors < 1:
        raise FfaaError("--ray-actors must be at least 1")
    if args.ray_cpus_per_actor is not None and not args.ray_cpus_per_actor > 0:
        raise FfaaError("--ray-cpus-per-actor must be positive")
