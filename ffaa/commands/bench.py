"""`ffaa bench`: FFAA's reference flow vs our batched flow on one model, in one run."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from .common import add_model_args, load_backend, load_decider


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time FFAA's reference flow against ours on the same model",
                       description="Seconds per face for three candidates, tokens/s, peak memory, speed-up.")
    p.add_argument("--image", default=None, help="image to use (default: the bundled sample face)")
    p.add_argument("--new-tokens", type=int, default=64, help="forced answer length per candidate (GPU: 256)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--with-decider", action="store_true", help="also time the decider (MIDS when available)")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..bench import bench_decider, print_result, run_bench

    image = Image.open(args.image or _sample()).convert("RGB").resize((336, 336))
    backend = load_backend(args)
    result = run_bench(backend, image, args.new_tokens, args.repeats)
    print_result(result)
    data = dataclasses.asdict(result) | {"speedup": result.speedup}
    if args.with_decider:
        data["decider"] = _decider_figures(args, image, backend)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(data, indent=2))
    return 0


def _decider_figures(args, image, backend) -> dict:
    from ..bench import bench_decider
    from ..pipeline import Assistant, FaceJob
    from ..types import ImageInfo

    decider = load_decider(args)
    info = ImageInfo("bench", "0" * 64, image.width, image.height, "RGB")
    cands = Assistant(backend, decider).candidates([FaceJob(image, info, None, None)])[0]
    first, mean = bench_decider(decider, image, cands)
    print(f"decider {decider.name}: first call {first:.3f} s, then {mean:.3f} s per face (3 candidates)")
    return {"name": decider.name, "first_call_s": first, "seconds_per_face": mean}


def _sample() -> Path:
    from ..demo_image import sample_face_path

    return sample_face_path()
