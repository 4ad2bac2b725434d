"""`ffaa detectors list | convert`: the classic detectors ffaa knows, and their checkpoints
converted to safetensors (checked against the architecture first)."""

from __future__ import annotations

import argparse
import sys

from ..options import DETECTOR_DTYPES


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
    bn = dsub.add_parser("bench", help="seconds per video: the originals' flow against ffaa's",
                         description="Time the classic detectors on one video, in one run: each original's own "
                                     "flow (its own decode, face detection and alignment, one unit at a time, fp32) "
                                     "against ffaa's (one decode and face detection shared by all, batched). "
                                     "Random weights of the released shapes (timings do not depend on values).")
    bn.add_argument("--video", default=None, metavar="PATH", help="a video (default: a generated one)")
    bn.add_argument("--seconds", type=float, default=10.0, help="generated video length (default 10)")
    bn.add_argument("--height", type=int, default=720, help="generated video height; width = 16:9 (default 720)")
    bn.add_argument("--detectors", default="clip_large,xception,i3d,sta,srm", metavar="NAMES",
                    help="comma-separated detector names (default: the talk's five)")
    bn.add_argument("--flows", default="originals,originals_same_units,ffaa",
                    help="originals (own sampling), originals_same_units (ffaa's frames), ffaa")
    bn.add_argument("--segments", type=int, default=4, help="ffaa: runs of consecutive frames (default 4)")
    bn.add_argument("--frames-per-segment", type=int, default=4, help="ffaa: detection frames per run (default 4)")
    bn.add_argument("--device", default="auto", help="auto, cpu, cuda")
    bn.add_argument("--dtype", default="fp32", choices=DETECTOR_DTYPES, help="ffaa's dtype (default fp32)")
    bn.add_argument("--out", default=None, metavar="FILE.md", help="also write the table here")
    bn.set_defaults(func=run_bench)


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


def run_bench(args: argparse.Namespace) -> int:
    import platform
    import tempfile
    import time
    from dataclasses import asdict
    from pathlib import Path

    import torch

    from ..detectors import bench
    from ..detectors.base import Detector
    from ..detectors.config import DetectorChoice, DetectorsConfig
    from ..detectors.registry import get_spec
    from ..detectors.runner import DetectorSet, build_demo_network
    from ..errors import FfaaError

    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    flows = [f.strip() for f in args.flows.split(",") if f.strip()]
    unknown = [f for f in flows if f not in ("originals", "originals_same_units", "ffaa")]
    if unknown or not flows:
        raise FfaaError(f"--flows: unknown flow(s) {', '.join(unknown) or '(none given)'}")
    try:
        specs = [get_spec(n) for n in names]
    except ValueError as exc:
        raise FfaaError(f"--detectors: {exc}") from None
    video = Path(args.video) if args.video else None
    if video is None:
        video = Path(tempfile.mkdtemp(prefix="ffaa-bench-")) / "bench.mp4"
        height = args.height - args.height % 2
        width = (height * 16 // 9) // 2 * 2
        print(f"generating a {args.seconds:g} s {width}x{height} test video ...", file=sys.stderr)
        bench.make_video(video, args.seconds, width, height)
    detectors = [Detector(s, build_demo_network(s, full=True)[0], weights="random (released shapes)",
                          device=args.device, dtype=args.dtype) for s in specs]
    config = DetectorsConfig(tuple(DetectorChoice(s.name, "bench") for s in specs), device=args.device,
                             dtype=args.dtype, segments=args.segments, frames_per_segment=args.frames_per_segment)
    dset = DetectorSet(detectors, config)
    print(f"timing {', '.join(names)} on {video} ({', '.join(flows)}) ...", file=sys.stderr)
    rows = bench.run_bench(dset, video, flows)
    text = bench.table(rows, {s.name: s.title for s in specs})
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
               f"torch {torch.__version__}, device {detectors[0].device}, {args.dtype}")
    out = f"{text}\n\nMeasured {time.strftime('%Y-%m-%d')} on {machine}; video {video.name}.\n"
    print(out)
    if args.out:
        Path(args.out).write_text(out + "\n<!-- rows: " + repr([asdict(r) for r in rows]) + " -->\n",
                                  encoding="utf-8")
    return 0
