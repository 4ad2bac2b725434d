#!/usr/bin/env python
"""One GPU run of ffaa's speed benchmarks on FFAA's exact model shape, with random weights.

Builds a LLaVA of FFAA's shape (Mistral-7B text model + CLIP ViT-L/14-336, 576 image tokens) from
config objects, with a processor around the real Mistral tokenizer file, saves it, and times
ffaa's own flows on it through ffaa's backend and bench code, most important figures first:

  1. bitsandbytes nf4: FFAA's reference flow vs our plain batched flow
  2. bf16: FFAA's reference flow (FFAA's own precision) and compiled decoding
  3. MIDS (CLIP-L/336 + T5-base encoder, random weights), one face with 3 answers
  4. torchao int4, compiled decoding
  5. torchao int4 with HQQ scales, compiled    (only while the time budget allows)
  6. torchao int8, compiled                     (only while the time budget allows)

Each result is appended to OUT/gpu_bench.jsonl as soon as it exists and OUT/gpu_bench.md is
rewritten after every step, so a run cut short keeps what it measured. Quality: each format's
greedy tokens and verdict-position logits are compared with bf16's (random weights: this
measures numerical drift, not accuracy).

`--dry-run` runs the same steps on tiny shapes on the CPU (no GPU needed), for tests.
See scripts/gpu_bench.md for the wheels to bring to an offline machine and the command line.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# FFAA's shapes. CLIP ViT-L/14-336 and Mistral-7B-v0.1 (sliding window off, as in FFAA's config).
CLIP_L_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5)
MISTRAL_7B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, max_position_embeddings=32768, rope_theta=1e6,
                  sliding_window=None, rms_norm_eps=1e-5)
T5_BASE = dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
               relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0,
               layer_norm_epsilon=1e-6, feed_forward_proj="relu", is_encoder_decoder=False, use_cache=False,
               pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
# Rough seconds per step on an H100, used only to skip optional steps that would not fit.
OPTIONAL_STEP_S = 170


def ensure_importable() -> None:
    """Make `ffaa` (with its `mids`, `eval` and `prompt_files` subpackages) importable from this
    checkout without installing it: the subpackages live at the top of the repository."""
    sys.path.insert(0, str(REPO))
    try:
        importlib.import_module("ffaa.prompt_files")
        importlib.import_module("ffaa.mids")
        return
    except ImportError:
        pass
    import ffaa

    shim = Path(tempfile.mkdtemp(prefix="ffaa-shim-"))
    for name, folder in (("prompt_files", "prompts"), ("mids", "mids"), ("eval", "eval")):
        (shim / name).symlink_to(REPO / folder, target_is_directory=True)
    ffaa.__path__.append(str(shim))


class Recorder:
    """Appends JSON lines to OUT/gpu_bench.jsonl and keeps OUT/gpu_bench.md current."""

    def __init__(self, out: Path, title: str):
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        self.jsonl = out / "gpu_bench.jsonl"
        self.md = out / "gpu_bench.md"
        self.title = title
        self.timings: list[Any] = []
        self.lines: list[str] = []
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def write(self, kind: str, **data: Any) -> None:
        row = {"kind": kind, "t": round(self.elapsed(), 1), **data}
        with self.jsonl.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=str) + "\n")
        print(json.dumps(row, default=str), flush=True)

    def flow(self, timing: Any) -> None:
        self.timings.append(timing)
        self.write("flow", **timing.as_dict())
        self.render()

    def note(self, line: str) -> None:
        self.lines.append(line)
        self.render()

    def render(self) -> None:
        from ffaa.bench import format_rows

        notes = "\n\n".join(self.lines)
        text = "\n".join([self.title, "", *format_rows(self.timings)]) + ("\n\n" + notes if notes else "")
        self.md.write_text(text + "\n", encoding="utf-8")


# -- the model ------------------------------------------------------------------------------------


def tokenizer_from_file(path: Path) -> Any:
    """The Mistral-7B SentencePiece tokenizer with LLaVA's `<image>` and `<pad>` added, read the
    way FFAA's checkpoint tokenizer is (legacy, BOS, left padding)."""
    import transformers

    from ffaa.backends.convert import add_llava_tokens

    if not path.is_file():
        raise SystemExit(f"tokenizer file not found: {path}")
    with tempfile.TemporaryDirectory(prefix="ffaa-tok-") as folder:
        shutil.copyfile(path, Path(folder) / "tokenizer.model")
        tokenizer = transformers.LlamaTokenizer.from_pretrained(
            folder, legacy=True, add_bos_token=True, add_eos_token=False, model_max_length=4096,
            padding_side="left")
    add_llava_tokens(tokenizer)
    return tokenizer


def llava_config(tokenizer: Any, tiny: bool) -> Any:
    """FFAA's LlavaConfig (or the tiny test model's config for a dry run)."""
    import transformers

    from ffaa.backends.convert import padded_vocab_size

    image_id, pad_id = tokenizer.convert_tokens_to_ids(["<image>", "<pad>"])
    if tiny:
        from ffaa.backends.tiny import tiny_configs

        return tiny_configs(len(tokenizer), image_id, pad_id, "llava")
    vision = transformers.CLIPVisionConfig(**CLIP_L_336)
    text = transformers.MistralConfig(vocab_size=padded_vocab_size(len(tokenizer)), bos_token_id=1, eos_token_id=2,
                                      pad_token_id=pad_id, tie_word_embeddings=False, **MISTRAL_7B)
    return transformers.LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=image_id, image_seq_length=576,
        projector_hidden_act="gelu", vision_feature_select_strategy="default", vision_feature_layer=-2,
        tie_word_embeddings=False)


def build_model(dst: Path, tokenizer_path: Path, tiny: bool, device: str) -> Path:
    """Random-weight model (bf16 on the GPU, fp32 for a dry run) plus processor, saved in `dst`."""
    import torch
    import transformers

    from ffaa.backends.convert import build_image_processor, build_processor, save_processor
    from ffaa.prompts import load_prompt_set

    tokenizer = tokenizer_from_file(tokenizer_path)
    config = llava_config(tokenizer, tiny)
    dtype = torch.float32 if tiny else torch.bfloat16
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        with torch.device(device):
            model = transformers.LlavaForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(previous)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = 1, 2, config.text_config.pad_token_id
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dst))
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    processor = build_processor(tokenizer, build_image_processor(336, None, pad_to_square=True), 14, "default")
    ps = load_prompt_set()
    save_processor(processor, dst, legacy=True, probe=ps.chat([(ps.questions[0], None)]))
    return dst


# -- steps ------------------------------------------------------------------------------------------


def test_image() -> Any:
    """A fixed noise face-sized image (content does not matter with random weights)."""
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (336, 336, 3), dtype=np.uint8))


def run_format(rec: Recorder, folder: Path, quant: str, flows: tuple[str, ...], args: argparse.Namespace,
               fingerprints: dict[str, Any]) -> None:
    """Load `folder` in `quant`, time `flows`, record the format's quality fingerprint."""
    import torch

    from ffaa.backends.hf_llava import HFLlavaBackend, LoadOptions
    from ffaa.backends.quant import fingerprint, weight_bytes
    from ffaa.bench import candidate_requests, release, run_bench

    compile_mode = "off" if "compiled" not in flows else ("on" if args.device == "cuda" else "static")
    leftover = torch.cuda.memory_allocated() / 2**30 if args.device == "cuda" else 0.0
    start = time.perf_counter()
    backend = HFLlavaBackend.load(str(folder), LoadOptions(device=args.device, quant=quant, compile=compile_mode))
    rec.write("load", quant=quant, seconds=round(time.perf_counter() - start, 1),
              weight_gib=round(weight_bytes(backend.model) / 2**30, 3), compile=compile_mode,
              allocated_before_gib=round(leftover, 2))
    try:
        image = test_image()
        for flow in flows:  # plain flows are slow and steady: one timed call; compiled ones: --repeats
            run_bench(backend, image, args.new_tokens, args.repeats if flow == "compiled" else 1, (flow,),
                      first_tokens=args.first_tokens, on_flow=rec.flow)
        fp = fingerprint(backend, quant, candidate_requests(image), args.quality_tokens)
        fingerprints[quant] = fp
        rec.write("fingerprint", quant=quant, tokens=[list(t[:16]) for t in fp.tokens])
    finally:
        release(backend)
        del backend


def run_mids(rec: Recorder, args: argparse.Namespace) -> float:
    """Seconds per face for MIDS's forward pass (1 image, 3 answers of `mids_tokens` T5 tokens),
    in float32 with TF32 off, as the decider runs it."""
    import torch
    from ffaa.mids.net import TINY_CLIP, TINY_T5, MidsConfig, build_random

    tiny = args.dry_run
    config = MidsConfig(clip=dict(TINY_CLIP if tiny else CLIP_L_336), t5=dict(TINY_T5 if tiny else T5_BASE),
                        dim=(TINY_T5 if tiny else T5_BASE)["d_model"])
    net = build_random(config, seed=0).to(args.device)
    size = net.image_encoder.config.image_size
    rows, length = 3, 32 if tiny else args.mids_tokens
    pixels = torch.randn(1, 3, size, size, device=args.device)
    ids = torch.randint(2, net.text_encoder.config.vocab_size, (rows, length), device=args.device)
    mask = torch.ones_like(ids)
    index = torch.zeros(rows, dtype=torch.long, device=args.device)
    try:
        from ffaa.mids.decider import full_float32
    except ImportError:  # the decider module is optional for timing the network
        import contextlib

        full_float32 = contextlib.nullcontext

    def forward() -> None:
        with torch.inference_mode(), full_float32():
            net.logits_per_row(pixels, ids, mask, index)
        if args.device == "cuda":
            torch.cuda.synchronize()

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    forward()
    first = time.perf_counter() - start
    times = []
    for _ in range(5):
        start = time.perf_counter()
        forward()
        times.append(time.perf_counter() - start)
    seconds = sum(times) / len(times)
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else 0.0
    rec.write("mids", seconds_per_face=round(seconds, 4), first_call_s=round(first, 3), rows=rows,
              t5_tokens=length, peak_memory_gib=round(peak, 2))
    rec.note(f"MIDS (random weights, {rows} answers x {length} T5 tokens, fp32): {seconds:.3f} s per face, "
             f"first call {first:.2f} s, peak {peak:.2f} GiB")
    return seconds


def quality(rec: Recorder, fingerprints: dict[str, Any], written: set[str]) -> None:
    """Each format against bf16 ("none"), or against the first format when bf16 did not run.
    Refreshes the Markdown table; a JSON line is written once per format."""
    from ffaa.backends.quant import compare

    rec.lines = [line for line in rec.lines if not line.startswith("Quality against")]
    if not fingerprints:
        return
    ref_name = "none" if "none" in fingerprints else next(iter(fingerprints))
    ref = fingerprints[ref_name]
    rows = ["| format | vs | greedy tokens equal | common prefix | max logit drift | max margin drift | same verdict |",
            "|---|---|---|---|---|---|---|"]
    for name, fp in fingerprints.items():
        if name == ref_name:
            continue
        a = compare(fp, ref)
        if f"{name}/{ref_name}" not in written:
            written.add(f"{name}/{ref_name}")
            rec.write("quality", **a.as_dict())
        rows.append(f"| {a.quant} | {a.reference} | {a.token_agreement:.2f} | {a.prefix_agreement:.2f} | "
                    f"{a.max_logit_drift:.3f} | {a.max_margin_drift:.3f} | {a.same_verdict} |")
    if len(rows) > 2:
        rec.note("Quality against " + ref_name + " (random weights: numerical drift only)\n\n" + "\n".join(rows))


def summary(rec: Recorder, mids_s: float | None) -> None:
    """The targets: 3 candidates + MIDS <= 3 s at <= 8 GiB, >= 9x the reference flow, warm-up <= 60 s."""
    refs = {t.quantization: t.seconds_per_face for t in rec.timings if t.name == "ffaa_reference"}
    for t in rec.timings:
        if t.name != "compiled":
            continue
        total = t.seconds_per_face + (mids_s or 0.0)
        ratios = {q: round(s / t.seconds_per_face, 2) for q, s in refs.items()}
        against = "".join(f", {r:.1f}x FFAA's flow in {q}" for q, r in ratios.items())
        line = (f"{t.quantization} compiled + MIDS: {total:.2f} s per face (target <= 3 s), peak "
                f"{t.peak_memory_gib:.1f} GiB (<= 8), warm-up {t.first_call_s:.0f} s (<= 60){against} (>= 9x)")
        rec.write("target", quant=t.quantization, seconds_with_mids=round(total, 3),
                  peak_memory_gib=round(t.peak_memory_gib, 2), warmup_s=round(t.first_call_s, 1),
                  ratio_to_reference=ratios)
        rec.note(line)


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    versions = {}
    for name in ("torch", "transformers", "accelerate", "bitsandbytes", "torchao", "triton"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    gpu = {}
    if args.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        gpu = {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
               "capability": f"{props.major}.{props.minor}"}
    return {"python": sys.version.split()[0], **versions, **gpu}


def step(rec: Recorder, name: str, fn: Callable[[], Any], optional: bool, budget_s: float) -> Any:
    """Run one step; optional ones are skipped when the budget would not hold them. Errors are
    recorded and the run goes on with the next step."""
    left = budget_s - rec.elapsed()
    if optional and left < OPTIONAL_STEP_S:
        rec.write("skipped", step=name, seconds_left=round(left))
        rec.note(f"not run: {name} ({left:.0f} s of the budget left)")
        return None
    rec.write("step", step=name)
    try:
        return fn()
    except Exception as exc:  # one failed format must not cost the other figures
        rec.write("error", step=name, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-2000:])
        rec.note(f"failed: {name}: {type(exc).__name__}: {str(exc)[:300]}")
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="Mistral-7B tokenizer.model (SentencePiece); default for --dry-run: mistral-common's")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")), help="results folder (default $OUT)")
    p.add_argument("--work", type=Path, default=None, help="where to save the model (default: a temporary folder)")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU")
    p.add_argument("--budget-s", type=float, default=500.0, help="optional steps start only within this budget")
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2, help="timed calls of compiled flows (plain flows: 1)")
    p.add_argument("--first-tokens", type=int, default=8, help="warm-up length of the plain flows")
    p.add_argument("--quality-tokens", type=int, default=32)
    p.add_argument("--mids-tokens", type=int, default=300)
    p.add_argument("--optional", default="int4-hqq,int8-ao", help="formats run only while the budget allows")
    args = p.parse_args(argv)
    if args.dry_run:
        args.new_tokens, args.repeats, args.first_tokens, args.quality_tokens = 6, 1, 2, 6
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_importable()
    import torch

    args.device = "cpu" if args.dry_run else "cuda"
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry-run for the CPU check")
    if args.tokenizer is None:
        if not args.dry_run:
            raise SystemExit("--tokenizer PATH (Mistral-7B tokenizer.model) is required on the GPU")
        from ffaa.backends.tiny import mistral_tokenizer_file

        args.tokenizer = mistral_tokenizer_file()
    env = environment(args)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    shape = "tiny shapes (dry run, CPU)" if args.dry_run else "FFAA shape: Mistral-7B + CLIP-L/336, 576 image tokens"
    rec = Recorder(args.out, f"ffaa GPU bench · {env.get('gpu', 'cpu')} · {stamp} · {shape} · random weights · "
                             f"{args.new_tokens} new tokens per candidate, 3 candidates per face")
    rec.write("env", **env, dry_run=args.dry_run, new_tokens=args.new_tokens)
    work = args.work or Path(tempfile.mkdtemp(prefix="ffaa-gpu-bench-"))
    folder = work / "model"
    fingerprints: dict[str, Any] = {}
    written: set[str] = set()
    try:
        start = time.perf_counter()
        step(rec, "build", lambda: build_model(folder, args.tokenizer, args.dry_run, args.device), False, args.budget_s)
        rec.write("built", seconds=round(time.perf_counter() - start, 1), folder=str(folder))
        if not (folder / "config.json").is_file():
            return 1
        plan = [("4bit", ("ffaa_reference", "batched")), ("none", ("ffaa_reference", "compiled")), ("mids", ()),
                ("int4-ao", ("compiled",))]
        plan += [(q, ("compiled",)) for q in args.optional.split(",") if q]
        mids_s = None
        for name, flows in plan:
            optional = name in args.optional.split(",")
            if name == "mids":
                mids_s = step(rec, "mids", lambda: run_mids(rec, args), optional, args.budget_s)
                continue
            step(rec, name, lambda n=name, f=flows: run_format(rec, folder, n, f, args, fingerprints),
                 optional, args.budget_s)
            quality(rec, fingerprints, written)
        summary(rec, mids_s)
        rec.write("done", seconds=round(rec.elapsed(), 1))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
