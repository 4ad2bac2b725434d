"""Arguments shared by `analyze`, `batch`, `app`, `bench` and `eval`, and the one mapping of
them to an `AssistantSpec` (`spec_from_args`); the spec builds the assistant."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..errors import FfaaError
from ..models import FFAA
from ..options import COMPILE_CHOICES, DTYPE_CHOICES, QUANT_CHOICES
from ..types import DecodingSettings

if TYPE_CHECKING:
    from ..spec import AssistantSpec

DEFAULT_MODEL = FFAA.model_id


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"hub id or local folder, transformers or original LLaVA layout (default {DEFAULT_MODEL})")
    g.add_argument("--demo", action="store_true",
                   help="use the built-in tiny demo model (writes the answer format; its content is noise)")
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
    g.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES)
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


def compile_rows(args: argparse.Namespace, rows_follow_batch_size: bool = False) -> int:
    """--compile-rows, else the command's default: --batch-size where the command batches across
    images (`rows_follow_batch_size`), one face's three prompts elsewhere."""
    rows = args.compile_rows
    if rows is None:
        rows = args.batch_size if rows_follow_batch_size else 3
    if rows < 1:
        raise FfaaError(f"--compile-rows must be at least 1, got {rows}")
    return rows


def spec_from_args(args: argparse.Namespace, options=None, *, rows_follow_batch_size: bool = False,
                   detectors=None) -> AssistantSpec:
    """The one place where command-line arguments become an `AssistantSpec`.

    `args` holds the model group (`add_model_args`); `options` the analysis options (commands
    with the analysis group pass `analysis_options(args)`); `detectors` a `DetectorsConfig`.
    """
    from ..spec import AssistantSpec

    fields = {"analysis": options} if options is not None else {}
    return AssistantSpec(
        model=args.model, revision=args.revision, demo=args.demo, device=args.device, quant=args.quant,
        dtype=args.dtype, compile=args.compile, compile_rows=compile_rows(args, rows_follow_batch_size),
        mids=args.mids, mids_clip=args.mids_clip, mids_t5=args.mids_t5, no_mids=args.no_mids,
        detectors=detectors, **fields,
    )


def assistant_spec(args: argparse.Namespace, *, rows_follow_batch_size: bool = False) -> AssistantSpec:
    """The spec of a command with the model, analysis and detector groups (analyze, batch, app,
    eval run, mids-data); every flag is checked here, before anything loads."""
    from .detector_args import detectors_config

    options = analysis_options(args)
    return spec_from_args(args, options, rows_follow_batch_size=rows_follow_batch_size,
                          detectors=detectors_config(args) if hasattr(args, "detectors") else None)


def say(line: str) -> None:
    """Progress and banners of a command, on stderr."""
    print(line, file=sys.stderr)


def build_assistant(args: argparse.Namespace):
    """The assistant for analyze/app/mids-data. Compiled decoding is warmed up at start-up
    (a progress message, about a minute on a GPU), so the compile never lands in a request."""
    return assistant_spec(args).build(log_line=say)
