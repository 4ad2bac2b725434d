"""`--detectors` and its companions, shared by `detect`, `analyze`, `batch` and `app`; mapped to
a `DetectorsConfig` in one place. Light: no torch until a detector loads."""

from __future__ import annotations

import argparse
from dataclasses import replace

from ..detectors.config import DetectorsConfig, load_config_file, parse_detectors
from ..detectors.registry import SPECS
from ..errors import FfaaError
from ..options import DETECTOR_DTYPES
from ..types import Verdict


def add_detector_args(parser: argparse.ArgumentParser, required: bool = False) -> None:
    g = parser.add_argument_group("classic detectors (DeepfakeBench / DF40 / StA4Deepfake)")
    which = g.add_mutually_exclusive_group(required=required)
    which.add_argument("--detectors", default=None, metavar="NAME=PATH,...",
                       help=f"detectors and their released checkpoints (.pth or converted .safetensors), e.g. "
                            f"xception=xception.pth,srm=srm_best.pth; 'demo' = the talk's five with random "
                            f"weights (noise). Names: {', '.join(SPECS)}")
    which.add_argument("--detectors-config", default=None, metavar="FILE",
                       help="a YAML/JSON file naming detectors, weights and per-detector thresholds")
    g.add_argument("--threshold", type=float, default=None,
                   help="a detector says fake when P(fake) > this (default 0.70, the talk's rule)")
    g.add_argument("--tie", choices=("real", "fake"), default=None,
                   help="the ensemble's verdict on an exact tie of votes (default real)")
    g.add_argument("--ffaa-votes", action="store_true",
                   help="FFAA's own verdict is one more voter (default: shown beside the vote)")
    g.add_argument("--still-clips", action="store_true",
                   help="on still images, give clip detectors (i3d, sta) a clip of repeated frames "
                        "(default: they abstain)")
    g.add_argument("--segments", type=int, default=None,
                   help="videos: runs of consecutive frames spread over the video (default 4)")
    g.add_argument("--frames-per-segment", type=int, default=None,
                   help="videos: frames per run on which faces are detected and frame detectors run (default 4)")
    g.add_argument("--detector-device", default=None, help="auto, cpu, cuda ... (default: auto)")
    g.add_argument("--detector-dtype", choices=DETECTOR_DTYPES, default=None, help="default fp32")
    g.add_argument("--detector-batch-size", type=int, default=None,
                   help="frames per forward pass (default 8; a clip detector takes this // its clip length "
                        "clips, at least one)")


def detectors_config(args: argparse.Namespace) -> DetectorsConfig | None:
    """The detectors the arguments ask for (None: none), checked before any model loads."""
    if args.detectors_config:
        config = load_config_file(args.detectors_config)
    elif args.detectors:
        config = DetectorsConfig(parse_detectors(args.detectors))
    else:
        _refuse_orphans(args)
        return None
    rule = config.rule
    try:
        if args.threshold is not None:
            rule = replace(rule, threshold=args.threshold)
        if args.tie is not None:
            rule = replace(rule, tie=Verdict(args.tie))
        if args.ffaa_votes:
            rule = replace(rule, ffaa_votes=True)
    except ValueError as exc:
        raise FfaaError(f"--threshold: {exc}") from None
    for flag in ("segments", "frames_per_segment", "detector_batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise FfaaError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    return replace(
        config, rule=rule,
        device=args.detector_device or config.device,
        dtype=args.detector_dtype or config.dtype,
        batch_size=args.detector_batch_size or config.batch_size,
        still_clips=args.still_clips or config.still_clips,
        segments=args.segments or config.segments,
        frames_per_segment=args.frames_per_segment or config.frames_per_segment,
    )


def _refuse_orphans(args: argparse.Namespace) -> None:
    """Detector settings without detectors are a mistake worth one line, not silence."""
    given = [f for f in ("threshold", "tie", "segments", "frames_per_segment", "detector_device",
                         "detector_dtype", "detector_batch_size") if getattr(args, f) is not None]
    given += [f for f in ("ffaa_votes", "still_clips") if getattr(args, f)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise FfaaError(f"{flag} applies to the classic detectors: add --detectors NAME=PATH,... "
                        "(or --detectors-config FILE)")
