"""`ffaa detectors list | convert`: the classic detectors ffaa knows, and their checkpoints
converted to safetensors (checked against the architecture first)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("detectors", help="list the classic detectors; convert their checkpoints",
                       description="The classic detectors (DeepfakeBench, DF40, StA4Deepfake) and their released "
                                   "checkpoints.")
    dsub = p.add_subparsers(dest="detectors_command", metavar="DETECTORS_COMMAND", required=True)
    ls = dsub.add_parser("list", help="the known detectors, their inputs and where their weights come from")
    ls.set_defaults(func=run_list)
    cv = dsub.add_parser("convert", help="a released .pth -> a checked .safetensors",
                         description="Read a released checkpoint with weights_only=True, rename its keys as the "
                                     "original loader does, check every key and shape against the architecture, "
                                     "and write safetensors (atomically).")
    cv.add_argument("src", metavar="SRC.pth", help="the released checkpoint")
    cv.add_argument("dst", metavar="DST.safetensors", help="where to write")
    cv.add_argument("--detector", default=None, metavar="NAME",
                    help="which detector it is (default: found from its keys)")
    cv.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    cv.set_defaults(func=run_convert)


def run_list(args: argparse.Namespace) -> int:
    from ..detectors.registry import SPECS

    for spec in SPECS.values():
        kind = f"clips of {spec.clip_len} frames" if spec.input_kind == "clip" else "frames"
        norm = f"mean {list(spec.mean)}, std {list(spec.std)}"
        out = "sigmoid" if spec.output == "sigmoid" else "softmax[:, 1]"
        talk = " (talk ensemble)" if spec.in_talk else ""
        print(f"{spec.name}: {spec.title}{talk}; {kind}, {spec.resolution}px, {norm}, P(fake) = {out}")
        for c in spec.checkpoints:
            print(f"    {c.origin} {c.file_name} ({c.size}): {c.where}")
        if spec.notes:
            print(f"    note: {spec.notes}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..detectors.checkpoint import convert, identify
    from ..errors import FfaaError

    dst = Path(args.dst).expanduser()
    if dst.suffix != ".safetensors":
        raise FfaaError(f"{dst}: the output must be a .safetensors file")
    if dst.exists() and not args.force:
        raise FfaaError(f"{dst} exists: add --force to overwrite it")
    name = args.detector or identify(args.src)
    summary = convert(args.src, dst, name)
    print(f"{name}: {summary['tensors']} tensors, {summary['values']:,} values -> {summary['path']}", file=sys.stderr)
    return 0
