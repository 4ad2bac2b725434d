"""Arguments and assistant construction shared by `analyze`, `batch`, `app` and `eval run`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import FfaaError
from ..models import FFAA
from ..options import COMPILE_CHOICES, QUANT_CHOICES
from ..types import DecodingSettings

DEFAULT_MODEL = FFAA.model_id
DEMO_BANNER = (
    "DEMO MODE: a tiny model with RANDOM weights, trained only to WRITE THE ANSWER FORMAT, answers.\n"
    "Its descriptions, reasoning, verdicts, probabilities and match scores are NOISE: they say\n"
    "nothing about the image. Use --model thu-huangzc/ffaa-mistral-7b (or a local folder) for real analysis."
)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"hub id or local folder, transformers or original LLaVA layout (default {DEFAULT_MODEL})")
    g.add_argument("--demo", action="store_true", help="use the built-in tiny demo model (writes the answer format; its content is noise)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ... (default auto)")
    g.add_argument("--quant", default="auto", choices=QUANT_CHOICES,
                   help="weights: 4bit/8bit = bitsandbytes; int4-ao, int4-hqq, int8-ao = torchao (these "
                        "compile); none. auto = none (fp32) on CPU, bf16 on GPUs of 24 GiB or more, else "
                        "int4-ao (or 4bit without torchao)")
    g.add_argument("--compile", default="auto", choices=COMPILE_CHOICES,
                   help="compiled decoding (static cache + torch.compile): auto = on CUDA when --quant "
                        "compiles; static = static cache only; off = plain generate")
    g.add_argument("--compile-rows", type=int, default=None, metavar="N",
                   help="prompts per compiled generate call, fixed for the process (default 3 = one face; "
                        "ffaa batch: --batch-size, so faces of several images share a call)")
    g.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    g.add_argument("--revision", default=None, help="hub revision of --model")
    g.add_argument("--mids", default=None, metavar="PATH",
                   help="MIDS weights (mids.pth or .safetensors); default: mids.pth beside the model if present")
    g.add_argument("--mids-clip", default=None, metavar="ID|DIR",
                   help="MIDS's CLIP vision tower (default: the source recorded in the weights, "
                        "openai/clip-vit-large-patch14-336); a local folder works offline")
    g.add_argument("--mids-t5", default=None, metavar="ID|DIR",
                   help="MIDS's T5 encoder and tokenizer (default: the recorded source, t5-base)")
    g.add_argument("--no-mids", action="store_true", help="decide by majority vote even if MIDS weights exist")


def add_analysis_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("analysis")
    faces = g.add_mutually_exclusive_group()
    faces.add_argument("--whole-image", action="store_true", help="analyse the whole image, no face crop")
    faces.add_argument("--fallback-whole", action="store_true",
                       help="analyse the whole image when no face is found (default: report an error)")
    g.add_argument("--question", default=None, help="replace the free question of candidate 0")
    g.add_argument("--seed", type=int, default=0, help="seed of the question choice and of sampling")
    g.add_argument("--max-new-tokens", type=int, default=512, help="per candidate (FFAA: 512)")
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--batch-size", type=int, default=12, help="prompts per generate call")
    g.add_argument("--max-pixels", type=int, default=None, help="refuse larger images (default 40 Mpx)")


def analysis_options(args: argparse.Namespace):
    from ..media import LoadLimits
    from ..pipeline import AnalysisOptions

    mode = "whole" if args.whole_image else ("auto" if args.fallback_whole else "faces")
    if args.max_new_tokens < 1:
        raise FfaaError("--max-new-tokens must be at least 1")
    if args.max_pixels is not None and args.max_pixels < 1:
        raise FfaaError(f"--max-pixels must be at least 1, got {args.max_pixels}")
    limits = LoadLimits(max_pixels=args.max_pixels) if args.max_pixels else LoadLimits()
    return AnalysisOptions(
        face_mode=mode,
        question=args.question,
        seed=args.seed,
        decoding=DecodingSettings(max_new_tokens=args.max_new_tokens, do_sample=args.sample, seed=args.seed),
        batch_size=args.batch_size,
        limits=limits,
    )


def compile_rows(args: argparse.Namespace) -> int:
    """--compile-rows, else the command's default: --batch-size where the command batches across
    images (it sets `rows_follow_batch_size`), one face's three prompts elsewhere."""
    rows = getattr(args, "compile_rows", None)
    if rows is None:
        rows = args.batch_size if getattr(args, "rows_follow_batch_size", False) else 3
    if rows < 1:
        raise FfaaError(f"--compile-rows must be at least 1, got {rows}")
    return rows


def load_backend(args: argparse.Namespace):
    from ..backends.hf_llava import HFLlavaBackend, LoadOptions

    options = LoadOptions(device=args.device, quant=args.quant, dtype=args.dtype, revision=args.revision,
                          compile=getattr(args, "compile", "auto"), compile_rows=compile_rows(args))
    if args.demo:
        from ..backends.demo import demo_model_dir

        print(DEMO_BANNER, file=sys.stderr)
        folder = demo_model_dir(log=lambda line: print(line, file=sys.stderr))
        return HFLlavaBackend.load(str(folder), options, demo=True)
    return HFLlavaBackend.load(args.model, options)


def find_mids(args: argparse.Namespace) -> Path | None:
    """MIDS weights: --mids, else `mids.pth` beside a local model, else in the model's hub repo
    (FFAA ships it there). None when there are none: the caller falls back to majority vote."""
    if args.no_mids:
        return None
    if args.mids:
        path = Path(args.mids).expanduser()
        if not path.is_file():
            raise FfaaError(f"MIDS weights not found: {path}")
        return path
    local = Path(args.model).expanduser()
    if local.exists():
        beside = local / "mids.pth"
        return beside if beside.is_file() else None
    return _mids_from_hub(args.model, args.revision)


def _mids_from_hub(repo_id: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, "mids.pth", revision=revision))
    except Exception as exc:  # not in the repo, offline, no access: decide without MIDS
        print(f"note: no MIDS weights from {repo_id} ({type(exc).__name__}); deciding by majority vote "
              "of the parsed verdicts (give --mids PATH to use MIDS)", file=sys.stderr)
        return None


def load_decider(args: argparse.Namespace):
    from ..decision import MajorityDecider

    if args.no_mids:
        return MajorityDecider()
    try:
        from ..mids.decider import MidsDecider
    except ImportError:
        return MajorityDecider()
    if args.demo and not args.mids:
        return MidsDecider.tiny(seed=getattr(args, "seed", 0))
    path = find_mids(args)
    if path is None:
        return MajorityDecider()
    return MidsDecider.from_pretrained(path, clip=getattr(args, "mids_clip", None), t5=getattr(args, "mids_t5", None),
                                       device=args.device)


def build_assistant(args: argparse.Namespace):
    """The assistant for analyze/app/batch. Compiled decoding is warmed up here, at start-up
    (a progress message, about a minute on a GPU), so the compile never lands in a request."""
    from ..pipeline import Assistant

    options = analysis_options(args)  # first: a bad flag must not wait for a model to load
    detectors = load_detectors(args)  # before the (much larger) language model: a bad checkpoint fails fast
    backend = load_backend(args)
    warmup = getattr(backend, "warmup", None)
    if warmup is not None:
        warmup(sampling=options.decoding.do_sample)
    return Assistant(backend, load_decider(args), options=options, detectors=detectors)


def load_detectors(args: argparse.Namespace):
    """The classic detectors `--detectors` asks for, loaded (None without the flag)."""
    if not hasattr(args, "detectors"):
        return None
    from .detector_args import detectors_config

    config = detectors_config(args)
    if config is None:
        return None
    from ..detectors.runner import DetectorSet

    return DetectorSet.load(config, log_line=lambda line: print(line, file=sys.stderr))
