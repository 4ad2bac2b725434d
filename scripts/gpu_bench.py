#!/usr/bin/env python
"""One GPU run of ffaa's speed benchmarks on FFAA's exact model shape, with random weights.

Builds a LLaVA of FFAA's shape (Mistral-7B text model + CLIP ViT-L/14-336, 576 image tokens) from
config objects, with a processor around the real Mistral tokenizer file, saves it, and times
ffaa's own flows on it through ffaa's backend and bench code, in this order:

  mids     MIDS (CLIP-L/336 + T5-base encoder, random weights), one face with 3 answers
  exact    a tiny fp32 model: compiled decoding (ffaa's loop) writes plain generate's tokens?
  none     bf16 (FFAA's own precision): FFAA's reference flow, compiled decoding with ffaa's loop,
           and the same compiled decoding driven by transformers' generate
  int4-ao  torchao int4, compiled decoding (ffaa's loop)
  batch    bf16 compiled, `--batch-rows` prompts per call: images/s one image at a time, batched
           across images, and triage (verdict only), on `--batch-images` images
  4bit     bitsandbytes nf4: FFAA's reference flow vs our plain batched flow
  int4-hqq, int8-ao   the other torchao formats, compiled (only while the time budget allows)

Every step runs in a process of its own (compiled code and CUDA-graph pools of one format cannot
disturb the next; a crash costs one step). Each result is appended to OUT/gpu_bench.jsonl as soon
as it exists and OUT/gpu_bench.md is rebuilt from it after every step, so a run cut short keeps
what it measured. Quality: each format's greedy tokens and verdict-position logits are compared
with bf16's (random weights: this measures numerical drift, not accuracy).

`--dry-run` runs the same steps on tiny shapes on the CPU (no GPU needed), for tests.
See scripts/gpu_bench.md for the wheels to bring to an offline machine and the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Rough seconds per step on an H100, used only to skip optional steps that would not fit.
OPTIONAL_STEP_S = 170
MIN_STEP_S = 30  # the shortest time limit a started step gets


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
    """Appends JSON lines to OUT/gpu_bench.jsonl; `render` rebuilds OUT/gpu_bench.md from them, so
    steps that ran in other processes land in the same table."""

    def __init__(self, out: Path, title: str, fresh: bool = False):
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        self.jsonl = out / "gpu_bench.jsonl"
        self.md = out / "gpu_bench.md"
        self.title = title
        self.start = time.perf_counter()
        if fresh:  # a new run (the parent): results of an earlier run in OUT must not mix in
            for stale in [self.jsonl, self.md, *out.glob("fingerprint_*.pt")]:
                stale.unlink(missing_ok=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def write(self, kind: str, **data: Any) -> None:
        row = {"kind": kind, "t": round(self.elapsed(), 1), **data}
        with self.jsonl.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=str) + "\n")
        print(json.dumps(row, default=str), flush=True)

    def flow(self, timing: Any) -> None:
        self.write("flow", **timing.as_dict())

    def note(self, line: str) -> None:
        self.write("note", line=line)

    def rows(self, kind: str) -> list[dict[str, Any]]:
        if not self.jsonl.is_file():
            return []
        rows = [json.loads(line) for line in self.jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [r for r in rows if r["kind"] == kind]

    def timings(self) -> list[Any]:
        from dataclasses import fields

        from ffaa.bench import FlowTiming

        names = {f.name for f in fields(FlowTiming)}
        return [FlowTiming(**{k: v for k, v in r.items() if k in names}) for r in self.rows("flow")]

    def render(self, extra: list[str] = ()) -> None:
        from ffaa.bench import format_rows

        notes = "\n\n".join([r["line"] for r in self.rows("note")] + list(extra))
        text = "\n".join([self.title, "", *format_rows(self.timings())]) + ("\n\n" + notes if notes else "")
        self.md.write_text(text + "\n", encoding="utf-8")


# -- steps ------------------------------------------------------------------------------------------


def test_image() -> Any:
    """A fixed noise face-sized image (content does not matter with random weights)."""
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (336, 336, 3), dtype=np.uint8))


def load_backend(folder: Path, quant: str, compile_mode: str, args: argparse.Namespace, rows: int = 3) -> Any:
    """ffaa's backend on the saved model, with the load recorded."""
    from ffaa.backends.hf_llava import HFLlavaBackend, LoadOptions
    from ffaa.backends.quant import weight_bytes

    start = time.perf_counter()
    options = LoadOptions(device=args.device, quant=quant, compile=compile_mode, compile_rows=rows)
    backend = HFLlavaBackend.load(str(folder), options)
    args.rec.write("load", quant=quant, seconds=round(time.perf_counter() - start, 1),
                   weight_gib=round(weight_bytes(backend.model) / 2**30, 3), compile=compile_mode, rows=rows)
    return backend


def compile_mode_for(flows: tuple[str, ...], args: argparse.Namespace) -> str:
    if not any(f.startswith("compiled") for f in flows):
        return "off"
    return "on" if args.device == "cuda" else "static"


def run_format(folder: Path, quant: str, flows: tuple[str, ...], args: argparse.Namespace) -> None:
    """Load `folder` in `quant`, time `flows`, save the format's quality fingerprint."""
    import torch

    from ffaa.backends.quant import fingerprint
    from ffaa.bench import candidate_requests, release, run_bench

    backend = load_backend(folder, quant, compile_mode_for(flows, args), args)
    try:
        image = test_image()
        for flow in flows:  # plain flows are slow and steady: one timed call; compiled ones: --repeats
            repeats = args.repeats if flow.startswith("compiled") else 1
            guarded(f"{quant} {flow}", args, lambda f=flow, r=repeats: run_bench(
                backend, image, args.new_tokens, r, (f,), first_tokens=args.first_tokens, on_flow=args.rec.flow))
        if {"compiled", "compiled_generate"} <= set(flows):
            guarded(f"{quant} loop check", args, lambda: loop_check(backend, candidate_requests(image), args))
        # Last and on its own: the quality table needs it even when a flow failed.
        fp = fingerprint(backend, quant, candidate_requests(image), args.quality_tokens)
        torch.save(dataclasses.asdict(fp), args.out / f"fingerprint_{quant}.pt")
        args.rec.write("fingerprint", quant=quant, tokens=[list(t[:16]) for t in fp.tokens])
    finally:
        release(backend)


def guarded(name: str, args: argparse.Namespace, fn: Callable[[], Any]) -> None:
    """Run one part of a step; a failure is recorded and the step goes on with the next part."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - recorded for the table
        args.rec.write("error", step=name, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-2000:])
        args.rec.note(f"failed: {name}: {type(exc).__name__}: {str(exc)[:300]}")


def run_exact(args: argparse.Namespace) -> None:
    """Correctness of compiled decoding on this device: a tiny fp32 model of the same classes,
    ffaa's compiled loop against plain `generate`, must write the very same greedy tokens."""
    from ffaa.backends.hf_llava import HFLlavaBackend, LoadOptions
    from ffaa.backends.shapes import build_model
    from ffaa.bench import bench_settings, candidate_requests, release

    folder = build_model(args.work / "tiny", args.tokenizer, True, args.device)
    compiled = "on" if args.device == "cuda" else "static"
    backends = [HFLlavaBackend.load(str(folder), LoadOptions(device=args.device, quant="none", dtype="fp32",
                                                               compile=mode)) for mode in (compiled, "off")]
    try:
        backends[0].warmup(log=lambda msg: None)
        if backends[0].fast is None:  # given up at warm-up: there is nothing compiled to compare
            args.rec.write("exact", compile=compiled, loop=None, error=backends[0].fast_error)
            args.rec.note(f"exact check not run: compiled decoding was given up ({backends[0].fast_error})")
            return
        requests, settings = candidate_requests(test_image()), bench_settings(args.quality_tokens)
        fast, plain = ([g.text for g in b.generate(requests, settings)] for b in backends)
        same = [a == b for a, b in zip(fast, plain)]
        loop = backends[0].fast.settings.loop
        what = "compiled decoding" if compiled == "on" else "static-cache decoding (not compiled)"
        args.rec.write("exact", compile=compiled, loop=loop, same_text=same)
        args.rec.note(f"Tiny fp32 model, {what} with loop '{loop}' against plain generate: {sum(same)}/{len(same)} "
                      f"candidates write the same text over {args.quality_tokens} greedy tokens")
    finally:
        for backend in backends:
            release(backend)


def loop_check(backend: Any, requests: list, args: argparse.Namespace) -> None:
    """ffaa's loop against transformers' generate on the same compiled decoder: the same greedy
    tokens? (Equal on the CPU by test; on a GPU, kernels may round differently.)"""
    from ffaa.bench import bench_settings

    fast, settings = backend.fast, bench_settings(args.quality_tokens)
    if fast is None or fast.settings.loop != "own":
        why = getattr(backend, "fast_error", None) or "the decoder fell back to transformers' generate"
        args.rec.note(f"loop check not run: ffaa's loop is not in use ({why})")
        return
    own = [g.text for g in backend.generate(requests, settings)]
    kept = fast.settings
    fast.settings = dataclasses.replace(kept, loop="generate")
    try:
        theirs = [g.text for g in backend.generate(requests, settings)]
    finally:
        fast.settings = kept
    same = [a == b for a, b in zip(own, theirs)]
    prefix = [len(os.path.commonprefix([a, b])) / max(len(b), 1) for a, b in zip(own, theirs)]
    args.rec.write("loop_check", tokens=args.quality_tokens, same_text=same,
                   common_prefix=[round(p, 3) for p in prefix])
    args.rec.note(f"ffaa's loop vs transformers' generate, {args.quality_tokens} greedy tokens per candidate: "
                  f"{sum(same)}/{len(same)} candidates identical (common prefix {min(prefix):.0%} at least)")


def sample_images(count: int) -> list[Path]:
    """`count` distinct noise images of varied sizes (content does not matter with random weights;
    no extra package is needed on the GPU machine)."""
    import numpy as np
    from PIL import Image

    folder = Path(tempfile.mkdtemp(prefix="ffaa-gpu-batch-"))
    paths = []
    for i in range(count):
        side = 480 - 8 * i
        pixels = np.random.default_rng(i).integers(0, 256, (side, side, 3), dtype=np.uint8)
        paths.append(folder / f"image_{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def run_batch(folder: Path, args: argparse.Namespace) -> None:
    """Images/s of whole analyses (3 candidates of `new_tokens` tokens each, majority decision;
    MIDS is timed in its own step), one image at a time vs batched, and triage."""
    from ffaa.batch.bench import bench_batch
    from ffaa.bench import release
    from ffaa.decision import MajorityDecider
    from ffaa.pipeline import AnalysisOptions, Assistant
    from ffaa.types import DecodingSettings

    rows = args.batch_rows
    backend = load_backend(folder, "none", compile_mode_for(("compiled",), args), args, rows=rows)
    try:
        warm = backend.warmup(log=lambda msg: None)
        args.rec.write("batch_warmup", seconds=round(warm, 1), rows=rows)
        decoding = DecodingSettings(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                    stop_at_answer_end=False)
        options = AnalysisOptions(face_mode="whole", decoding=decoding, batch_size=rows)
        result = bench_batch(lambda: Assistant(backend, MajorityDecider(), options=options),
                             sample_images(args.batch_images))
        args.rec.write("batch", images=result.images, rows=rows, sequential_ips=round(result.sequential_ips, 3),
                       batched_ips=round(result.batched_ips, 3),
                       triage_ips=round(result.triage_ips, 3) if result.triage_ips else None,
                       batched_s=round(result.batched_s, 3), triage_s=result.triage_s)
        kind = "bf16 compiled" if args.device == "cuda" else "fp32, static cache"
        args.rec.note(f"Batch ({kind}, {rows} prompts per call, whole image, {args.new_tokens} forced "
                      f"tokens per candidate, majority decision; warm-up {warm:.0f} s):\n\n{result.table()}")
    finally:
        release(backend)


def run_mids(args: argparse.Namespace) -> float:
    """Seconds per face for MIDS's forward pass (1 image, 3 answers of `mids_tokens` T5 tokens),
    in float32 with TF32 off, as the decider runs it."""
    import torch

    from ffaa.mids.net import TINY_CLIP, TINY_T5, MidsConfig, build_random

    tiny = args.dry_run
    from ffaa.models import CLIP_VIT_L_336, T5_BASE_SHAPE

    clip, t5 = (TINY_CLIP, TINY_T5) if tiny else (CLIP_VIT_L_336.config(), T5_BASE_SHAPE)
    config = MidsConfig(clip=dict(clip), t5=dict(t5), dim=t5["d_model"])
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
    args.rec.write("mids", seconds_per_face=round(seconds, 4), first_call_s=round(first, 3), rows=rows,
              t5_tokens=length, peak_memory_gib=round(peak, 2))
    args.rec.note(f"MIDS (random weights, {rows} answers x {length} T5 tokens, fp32): {seconds:.3f} s per face, "
             f"first call {first:.2f} s, peak {peak:.2f} GiB")
    return seconds


def load_fingerprints(out: Path) -> dict[str, Any]:
    """The fingerprints the format steps saved, bf16 ("none") first when present."""
    import torch

    from ffaa.backends.quant import Fingerprint

    found = {}
    for path in sorted(out.glob("fingerprint_*.pt"), key=lambda p: p.name != "fingerprint_none.pt"):
        data = torch.load(path, weights_only=False)
        data["tokens"] = tuple(tuple(t) for t in data["tokens"])
        data["verdict_ids"] = tuple(data["verdict_ids"])
        found[data["quant"]] = Fingerprint(**data)
    return found


def quality(rec: Recorder, written: set[str]) -> list[str]:
    """Each format against bf16 ("none"), or against the first format when bf16 did not run: the
    Markdown lines; a JSON line is written once per format."""
    from ffaa.backends.quant import compare

    fingerprints = load_fingerprints(rec.out)
    if len(fingerprints) < 2:
        return []
    ref_name, ref = next(iter(fingerprints.items()))
    rows = ["| format | vs | greedy tokens equal | common prefix | max logit drift | max margin drift | same verdict |",
            "|---|---|---|---|---|---|---|"]
    for name, fp in list(fingerprints.items())[1:]:
        a = compare(fp, ref)
        if f"{name}/{ref_name}" not in written:
            written.add(f"{name}/{ref_name}")
            rec.write("quality", **a.as_dict())
        rows.append(f"| {a.quant} | {a.reference} | {a.token_agreement:.2f} | {a.prefix_agreement:.2f} | "
                    f"{a.max_logit_drift:.3f} | {a.max_margin_drift:.3f} | {a.same_verdict} |")
    return ["Quality against " + ref_name + " (random weights: numerical drift only)\n\n" + "\n".join(rows)]


def summary(rec: Recorder, final: bool) -> list[str]:
    """The targets: 3 candidates + MIDS <= 3 s at <= 8 GiB, >= 9x the reference flow, warm-up <= 60 s.
    Markdown lines; JSON lines only when `final`."""
    timings = rec.timings()
    mids = rec.rows("mids")
    mids_s = mids[-1]["seconds_per_face"] if mids else 0.0
    refs = {t.quantization: t.seconds_per_face for t in timings if t.name == "ffaa_reference"}
    lines = []
    for t in timings:
        if t.name != "compiled":
            continue
        total = t.seconds_per_face + mids_s
        ratios = {q: round(s / t.seconds_per_face, 2) for q, s in refs.items()}
        against = "".join(f", {r:.1f}x FFAA's flow in {q}" for q, r in ratios.items())
        lines.append(f"{t.quantization} compiled + MIDS: {total:.2f} s per face (target <= 3 s), peak "
                     f"{t.peak_memory_gib:.1f} GiB (<= 8), warm-up {t.first_call_s:.0f} s (<= 60){against} (>= 9x)")
        if final:
            rec.write("target", quant=t.quantization, seconds_with_mids=round(total, 3),
                      peak_memory_gib=round(t.peak_memory_gib, 2), warmup_s=round(t.first_call_s, 1),
                      ratio_to_reference=ratios, mids_measured=bool(mids))
    return lines


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


# Steps in order of importance; those in --optional start only while --optional-step-s is left.
STEPS = ("build", "mids", "exact", "none", "int4-ao", "batch", "4bit", "int4-hqq", "int8-ao")
FORMAT_FLOWS = {"none": ("ffaa_reference", "compiled", "compiled_generate"), "int4-ao": ("compiled",),
                "4bit": ("ffaa_reference", "batched"), "int4-hqq": ("compiled",), "int8-ao": ("compiled",)}


def run_step(name: str, args: argparse.Namespace) -> None:
    """One step, in this (child) process; a failure is recorded, not raised."""
    folder = args.work / "model"

    def build() -> None:
        start = time.perf_counter()
        from ffaa.backends.shapes import build_model

        build_model(folder, args.tokenizer, args.dry_run, args.device)
        args.rec.write("built", seconds=round(time.perf_counter() - start, 1), folder=str(folder))

    actions = {"build": build, "mids": lambda: run_mids(args), "exact": lambda: run_exact(args),
               "batch": lambda: run_batch(folder, args)}
    guarded(name, args, actions.get(name) or (lambda: run_format(folder, name, FORMAT_FLOWS[name], args)))


def launch(name: str, args: argparse.Namespace) -> None:
    """Run step `name` in a child process within what is left of the budget."""
    rec = args.rec
    left = args.budget_s - rec.elapsed()
    if left < (args.optional_step_s if name in args.optional_steps else 1):
        rec.write("skipped", step=name, seconds_left=round(left))
        rec.note(f"not run: {name} ({max(left, 0):.0f} s of the budget left)")
        return
    rec.write("step", step=name)
    argv = [sys.executable, str(Path(__file__).resolve()), *args.argv, "--step", name, "--work", str(args.work)]
    limit = max(left, MIN_STEP_S)  # a step started near the end may run MIN_STEP_S past the budget
    try:
        code = subprocess.run(argv, timeout=limit, check=False).returncode
    except subprocess.TimeoutExpired:
        rec.write("error", step=name, error=f"timed out after {limit:.0f} s (the rest of the budget)")
        rec.note(f"failed: {name}: cut off after {limit:.0f} s, when the budget ran out")
        return
    if code != 0:  # a crash the child could not record (killed, out of memory, a segfault)
        rec.write("error", step=name, error=f"its process exited with {code}")
        rec.note(f"failed: {name}: its process exited with {code}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="Mistral-7B tokenizer.model (SentencePiece); default for --dry-run: mistral-common's")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")), help="results folder (default $OUT)")
    p.add_argument("--work", type=Path, default=None, help="where to save the model (default: a temporary folder)")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU")
    p.add_argument("--budget-s", type=float, default=500.0,
                   help="steps start only within this budget, and a step still running when it ends is stopped")
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2, help="timed calls of compiled flows (plain flows: 1)")
    p.add_argument("--first-tokens", type=int, default=8, help="warm-up length of the plain flows")
    p.add_argument("--quality-tokens", type=int, default=32)
    p.add_argument("--mids-tokens", type=int, default=300)
    p.add_argument("--batch-rows", type=int, default=24, help="prompts per compiled call in the batch step")
    p.add_argument("--batch-images", type=int, default=16, help="images in the batch step")
    p.add_argument("--steps", default=",".join(STEPS), help="comma list of steps to run, in this order")
    p.add_argument("--optional", default="4bit,int4-hqq,int8-ao", help="steps run only while the budget allows")
    p.add_argument("--optional-step-s", type=float, default=OPTIONAL_STEP_S,
                   help="budget seconds an optional step needs to start")
    p.add_argument("--step", default=None, help=argparse.SUPPRESS)  # internal: run one step in this process
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.optional_steps = [q for q in args.optional.split(",") if q]
    unknown = [q for q in [*args.steps.split(","), *args.optional_steps] if q and q not in STEPS]
    if unknown:
        p.error(f"unknown steps {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    if args.dry_run:
        args.new_tokens, args.repeats, args.first_tokens, args.quality_tokens = 6, 1, 2, 6
        args.batch_rows, args.batch_images = min(args.batch_rows, 6), min(args.batch_images, 4)
    return args


def title(args: argparse.Namespace, env: dict[str, Any]) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    shape = "tiny shapes (dry run, CPU)" if args.dry_run else "FFAA shape: Mistral-7B + CLIP-L/336, 576 image tokens"
    return (f"ffaa GPU bench · {env.get('gpu', 'cpu')} · {stamp} · {shape} · random weights · "
            f"{args.new_tokens} new tokens per candidate, 3 candidates per face")


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
    if args.step is not None:
        args.rec = Recorder(args.out, "")
        run_step(args.step, args)
        return 0
    env = environment(args)
    args.rec = rec = Recorder(args.out, title(args, env), fresh=True)
    rec.write("env", **env, dry_run=args.dry_run, new_tokens=args.new_tokens)
    own_work = args.work is None  # a folder given with --work is kept
    work = args.work = args.work or Path(tempfile.mkdtemp(prefix="ffaa-gpu-bench-"))
    written: set[str] = set()
    try:
        for name in [q for q in args.steps.split(",") if q]:
            launch(name, args)
            if name == "build" and not (work / "model" / "config.json").is_file():
                break
            rec.render(quality(rec, written) + summary(rec, final=False))
        rec.render(quality(rec, written) + summary(rec, final=True))
        rec.write("done", seconds=round(rec.elapsed(), 1))
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
