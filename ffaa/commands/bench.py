"""`ffaa bench`: FFAA's reference flow vs ours (plain batched, compiled) on one model, in one run,
for one or several weight formats."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
from pathlib import Path

from ..errors import FfaaError
from .common import add_model_args, say, spec_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time FFAA's reference flow against ours on the same model",
                       description="Seconds per face for three candidates, tokens/s, peak memory, first-call "
                                   "(compile) time and the ratio to FFAA's reference flow, per weight format.")
    p.add_argument("--image", default=None, help="image to use (default: the bundled sample face)")
    p.add_argument("--new-tokens", type=int, default=64, help="forced answer length per candidate (GPU: 256)")
    p.add_argument("--repeats", type=int, default=2, help="timed calls per flow after the first call")
    p.add_argument("--flows", default="ffaa_reference,batched,compiled",
                   help="comma list of ffaa_reference, batched, compiled, compiled_generate")
    p.add_argument("--formats", default=None, metavar="Q1,Q2",
                   help="comma list of --quant choices to run one after another, each in a process of its "
                        "own (default: --quant)")
    p.add_argument("--in-process", action="store_true",
                   help="run several --formats in this process (compiled formats may then disturb each other)")
    p.add_argument("--first-tokens", type=int, default=None, metavar="N",
                   help="first (untimed) call of the plain flows: N tokens instead of a full answer")
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--jsonl", default=None, metavar="FILE",
                   help="append each flow's figures as a JSON line as it lands")
    p.add_argument("--markdown", default=None, metavar="FILE", help="also write the table as Markdown")
    p.add_argument("--with-decider", action="store_true", help="also time the decider (MIDS when available)")
    p.add_argument("--batch", nargs="*", default=None, metavar="IMAGE",
                   help="instead: images/s of whole analyses, one image at a time vs batched across images, "
                        "and triage (default images: 8 variants of the sample face)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="with --batch: prompts per generate call "
                        "(and per compiled call, unless --compile-rows; default 12)")
    add_model_args(p)
    p.set_defaults(func=run, parser=p)


BATCH_SIZE = 12  # --batch's default: prompts per generate call


def parse_list(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """Split a comma list and reject unknown names with the allowed ones in the message."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown or not items:
        raise FfaaError(f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from {', '.join(allowed)}")
    return items


def run(args: argparse.Namespace) -> int:
    if args.batch_size is not None and args.batch is None:  # None: not given (the default is applied below)
        raise FfaaError("--batch-size applies to --batch (the images/s benchmark)")
    if args.batch is not None:
        if args.batch_size is None:
            args.batch_size = BATCH_SIZE
        return run_batch_bench(args)
    from PIL import Image

    from ..bench import FLOWS, format_table, run_formats
    from ..options import QUANT_CHOICES

    flows = parse_list(args.flows, FLOWS, "flow")
    formats = parse_list(args.formats or args.quant, QUANT_CHOICES, "format")
    image = Image.open(args.image or _sample()).convert("RGB").resize((336, 336))
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    def on_flow(timing) -> None:
        print(f"{timing.quantization} {timing.name}: {timing.seconds_per_face:.3f} s per face "
              f"(first call {timing.first_call_s:.1f} s)", flush=True)
        if args.jsonl:
            with open(args.jsonl, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"time": stamp, **timing.as_dict()}) + "\n")

    def load(quant: str):
        return dataclasses.replace(spec_from_args(args), quant=quant).load_backend(say)

    if len(formats) > 1 and not args.in_process:
        results = [r for quant in formats for r in _run_in_child(args, quant)]
    else:
        results = run_formats(load, formats, image, args.new_tokens, args.repeats, flows, args.first_tokens,
                              on_flow)
    if not any(r.flows for r in results):
        if args.json_out:  # a parent process reads the reasons from here
            Path(args.json_out).write_text(
                json.dumps({"time": stamp, "results": [dataclasses.asdict(r) for r in results]}))
        raise FfaaError("no flow could be timed: " + "; ".join(s for r in results for s in r.skipped))
    table = format_table(results, _title(results, stamp))
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    data = {"time": stamp, "results": [dataclasses.asdict(r) for r in results]}
    if args.with_decider:
        data["decider"] = _decider_figures(args, image, load(formats[0]))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(data, indent=2))
    return 0


def _run_in_child(args: argparse.Namespace, quant: str) -> list:
    """One format's results from a fresh `ffaa bench` process: compiled code and CUDA-graph pools
    of one format then cannot disturb the next (a second compiled format in one process has
    failed to compile on a GPU). A child that fails becomes a skipped entry, not a lost run."""
    import subprocess
    import sys
    import tempfile

    from ..bench import BenchResult

    with tempfile.TemporaryDirectory(prefix="ffaa_bench_") as tmp:
        out = Path(tmp) / "result.json"
        argv = [*_forwarded_options(args), "--formats", quant, "--in-process", "--json", str(out)]
        print(f"ffaa bench: {quant} in its own process", flush=True)
        code = subprocess.run([sys.executable, "-m", "ffaa", "bench", *argv], check=False).returncode
        if not out.exists():  # it died before writing (the reason is in its output above)
            return [BenchResult.failed(quant, args.device, args.model, f"{quant}: its process exited with {code}")]
        return [BenchResult.from_dict(r) for r in json.loads(out.read_text())["results"]]


_NOT_FORWARDED = {"formats", "in_process", "json_out", "markdown", "with_decider", "batch", "quant",
                  "verbose", "quiet"}


def _forwarded_options(args: argparse.Namespace) -> list[str]:
    """The command line options of `args` that differ from their defaults, for a child process
    (and its verbosity: -v/-q are counted on the main parser, not on `bench`'s)."""
    argv: list[str] = ["-q"] if args.quiet else ["-v"] * args.verbose
    for action in args.parser._actions:
        dest = action.dest
        if not action.option_strings or dest in _NOT_FORWARDED or dest == "help":
            continue
        value = getattr(args, dest, action.default)
        if value == action.default:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            argv.append(action.option_strings[0])
        else:
            argv += [action.option_strings[0], str(value)]
    return argv


def _title(results, stamp: str) -> str:
    """Model, device (with the GPU's name), date, answer length and repeats."""
    first = results[0]
    device = first.device
    if device.startswith("cuda"):
        import torch

        device = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return (f"model: {first.model} · {device} · {stamp[:10]} · {first.new_tokens} new tokens per candidate · "
            f"mean of {first.repeats}")


def _decider_figures(args, image, backend) -> dict:
    from ..bench import bench_decider, release
    from ..pipeline import Assistant, FaceJob
    from ..types import ImageInfo

    decider = spec_from_args(args).load_decider()
    info = ImageInfo("bench", "0" * 64, image.width, image.height, "RGB")
    cands = Assistant(backend, decider).candidates([FaceJob(image, info, None, None)])[0]
    release(backend)
    first, mean = bench_decider(decider, image, cands)
    print(f"decider {decider.name}: first call {first:.3f} s, then {mean:.3f} s per face (3 candidates)")
    return {"name": decider.name, "first_call_s": first, "seconds_per_face": mean}


def _sample() -> Path:
    from ..demo_image import sample_face_path

    return sample_face_path()


def run_batch_bench(args: argparse.Namespace) -> int:
    """`ffaa bench --batch`: the batch runner's throughput on one assistant, same run."""
    from ..batch.bench import bench_batch

    images = args.batch or [str(p) for p in _sample_variants(8)]
    result = bench_batch(lambda: _bench_assistant(args), images)
    print(result.table())
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(dataclasses.asdict(result), indent=2))
    return 0


def _bench_assistant(args: argparse.Namespace):
    """An assistant whose answers all have the forced length, so both flows do the same work."""
    from ..pipeline import AnalysisOptions
    from ..types import DecodingSettings

    if args.batch_size < 1:
        raise FfaaError(f"--batch-size must be at least 1, got {args.batch_size}")
    decoding = DecodingSettings(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                stop_at_answer_end=False)
    options = AnalysisOptions(face_mode="auto", decoding=decoding, batch_size=args.batch_size)
    # Compiled decoding takes the batch's rows, as in `ffaa batch`, so images share compiled calls.
    return spec_from_args(args, options, rows_follow_batch_size=True).build(log_line=say)


def _sample_variants(count: int) -> list[Path]:
    """Distinct images of the sample face (mirrored, rescaled), so content hashes differ."""
    import tempfile

    from PIL import Image, ImageOps

    base = Image.open(_sample()).convert("RGB")
    folder = Path(tempfile.mkdtemp(prefix="ffaa_bench_"))
    paths = []
    for i in range(count):
        image = ImageOps.mirror(base) if i % 2 else base
        size = 512 - 16 * i
        path = folder / f"face_{i}.png"
        image.resize((size, size)).save(path)
        paths.append(path)
    return paths
