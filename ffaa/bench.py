"""Benchmarks: FFAA's reference flow against ours, on the same model in the same run.

Flows, all on the same image and prompts with the same forced answer length
(`min_new_tokens` = `max_new_tokens`), so ratios measure the flow and nothing else:

* `ffaa_reference` - FFAA's flow: the three candidates one after another, plain `generate`;
* `batched`        - ours: the three candidates in one plain batched `generate`;
* `compiled`       - ours with compiled decoding (static cache + torch.compile, `backends/fast.py`)
  and ffaa's own greedy loop (`backends/steploop.py`); its first call is the start-up warm-up,
  i.e. the compile time;
* `compiled_generate` - the same static cache and compile, decoded by transformers' `generate`
  instead of ffaa's loop (what the own loop saves); its first call compiles that path.

`run_formats` repeats this for several weight formats (`--quant` choices), loading one model at a
time, and `format_rows` puts everything in one Markdown table with the ratio of each flow to the
reference flow measured first. Figures are printed, never asserted in tests.
"""

from __future__ import annotations

import contextlib
import gc
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace

from .backends.base import Backend, GenerationRequest
from .prompts import load_prompt_set
from .types import DecodingSettings, Verdict

FLOWS = ("ffaa_reference", "batched", "compiled", "compiled_generate")
COMPILED_FLOWS = ("compiled", "compiled_generate")


@dataclass(frozen=True)
class FlowTiming:
    """One flow's figures for three candidates of one face."""

    name: str
    seconds_per_face: float
    first_call_s: float
    new_tokens: int
    tokens_per_s: float
    peak_memory_gib: float
    quantization: str = ""
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BenchResult:
    device: str
    model: str
    quantization: str
    new_tokens: int
    repeats: int
    flows: tuple[FlowTiming, ...]
    memory_note: str
    skipped: tuple[str, ...] = field(default=())

    def flow(self, name: str) -> FlowTiming:
        return next(f for f in self.flows if f.name == name)

    @classmethod
    def from_dict(cls, data: dict) -> BenchResult:
        """The inverse of `dataclasses.asdict` (results written by another process)."""
        flows = tuple(FlowTiming(**f) for f in data["flows"])
        return cls(**{**data, "flows": flows, "skipped": tuple(data.get("skipped", ()))})

    @classmethod
    def failed(cls, quantization: str, device: str, model: str, reason: str) -> BenchResult:
        """A format that produced no figures, with the reason shown under the table."""
        return cls(device, model, quantization, 0, 0, (), "", (reason,))

    @property
    def speedup(self) -> float:
        """Reference seconds / batched seconds (> 1 means ours is faster)."""
        return self.flow("ffaa_reference").seconds_per_face / self.flow("batched").seconds_per_face


def candidate_requests(image, question_index: int = 0) -> list[GenerationRequest]:
    """The three prompts of one face: free question, real hypothesis, fake hypothesis."""
    ps = load_prompt_set()
    questions = [ps.questions[question_index], ps.hypothesis(Verdict.REAL), ps.hypothesis(Verdict.FAKE)]
    return [GenerationRequest(image, ps.chat([(q, None)])) for q in questions]


@contextlib.contextmanager
def plain_decoding(backend: Backend) -> Iterator[Backend]:
    """Plain `generate` for the duration (the compiled decoder, if any, is set aside)."""
    fast = getattr(backend, "fast", None)
    if fast is not None:
        backend.fast = None
    try:
        yield backend
    finally:
        if fast is not None:
            backend.fast = fast


def reference_flow(backend: Backend, requests: Sequence[GenerationRequest], settings) -> int:
    """FFAA: one plain `generate` per candidate, in order. Returns new tokens written."""
    with plain_decoding(backend):
        return sum(backend.generate([r], settings)[0].new_tokens for r in requests)


def batched_flow(backend: Backend, requests: Sequence[GenerationRequest], settings) -> int:
    """Ours: all candidates in one plain batched `generate`."""
    with plain_decoding(backend):
        return sum(g.new_tokens for g in backend.generate(list(requests), settings))


def compiled_flow(backend: Backend, requests: Sequence[GenerationRequest], settings) -> int:
    """Ours: all candidates through the backend's compiled (static-cache) decoder."""
    if getattr(backend, "fast", None) is None:
        raise ValueError("this backend has no compiled decoder (loaded with compile 'off' or a bitsandbytes format)")
    return sum(g.new_tokens for g in backend.generate(list(requests), settings))


def compiled_generate_flow(backend: Backend, requests: Sequence[GenerationRequest], settings) -> int:
    """The compiled decoder's cache and compile, with transformers' `generate` as the loop."""
    fast = getattr(backend, "fast", None)
    if fast is None:
        raise ValueError("this backend has no compiled decoder (loaded with compile 'off' or a bitsandbytes format)")
    own = fast.settings
    fast.settings = replace(own, loop="generate")
    try:
        return compiled_flow(backend, requests, settings)
    finally:
        fast.settings = own


_FLOW_FUNCTIONS = {"ffaa_reference": reference_flow, "batched": batched_flow, "compiled": compiled_flow,
                   "compiled_generate": compiled_generate_flow}


class _Memory:
    """Peak memory of the model's device: CUDA allocator peak, or the process's peak RSS."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**30
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux

    @property
    def note(self) -> str:
        return "CUDA allocator peak" if self.cuda else "process peak RSS (includes everything loaded)"


def time_flow(
    name: str,
    flow: Callable[[], int],
    repeats: int,
    memory: _Memory,
    first: Callable[[], object] | None = None,
) -> FlowTiming:
    """`first` (default: one call of `flow`) timed separately - it may compile or warm caches -
    then `repeats` timed calls of `flow`. The memory peak covers all of them."""
    memory.reset()
    start = time.perf_counter()
    (first or flow)()
    first_s = time.perf_counter() - start
    seconds, tokens = [], 0
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        tokens = flow()
        seconds.append(time.perf_counter() - start)
    mean = statistics.mean(seconds)
    return FlowTiming(name, mean, first_s, tokens, tokens / mean, memory.peak_gib())


def bench_settings(new_tokens: int) -> DecodingSettings:
    """Greedy, exactly `new_tokens` tokens per candidate, no early stop: equal work per flow."""
    return DecodingSettings(max_new_tokens=new_tokens, min_new_tokens=new_tokens, stop_at_answer_end=False)


def run_flow(backend: Backend, name: str, requests: Sequence[GenerationRequest], new_tokens: int,
             repeats: int, first_tokens: int | None = None) -> FlowTiming:
    """Time one flow. The first call is the warm-up: for `compiled` the decoder's compile (when
    not yet done), for the others a call of `first_tokens` tokens (default: a full call)."""
    if name not in _FLOW_FUNCTIONS:
        raise ValueError(f"unknown flow {name!r}; choose from {', '.join(FLOWS)}")
    fn, settings = _FLOW_FUNCTIONS[name], bench_settings(new_tokens)
    first_settings = bench_settings(first_tokens) if first_tokens else settings
    def first() -> object:
        return fn(backend, requests, first_settings)

    fast = getattr(backend, "fast", None)
    note = ""
    if name in COMPILED_FLOWS:
        if fast is None:
            raise ValueError(f"{name} flow needs a backend loaded with compile 'on' or 'static'")
        if name == "compiled" and not fast.warm:
            first = backend.warmup
        note = "static cache + torch.compile" if fast.compiled else "static cache, not compiled"
        note += ", ffaa's loop" if name == "compiled" else ", transformers' generate"
    memory = _Memory(backend.info.device)

    def flow() -> int:
        if name in COMPILED_FLOWS and getattr(backend, "fast", None) is None:
            raise RuntimeError(f"compiled decoding was given up: {getattr(backend, 'fast_error', None)}")
        return fn(backend, requests, settings)

    timing = time_flow(name, flow, repeats, memory, first)
    return replace(timing, quantization=backend.info.quantization, note=note)


def applicable_flows(backend: Backend, flows: Sequence[str]) -> tuple[list[str], list[str]]:
    """(flows to run, reasons for those skipped): the compiled flows need a compiled decoder."""
    run, skipped = [], []
    for name in flows:
        if name in COMPILED_FLOWS and getattr(backend, "fast", None) is None:
            skipped.append(f"{name} on {backend.info.quantization}: no compiled decoder for this format/device")
        else:
            run.append(name)
    return run, skipped


def run_bench(backend: Backend, image, new_tokens: int = 256, repeats: int = 2,
              flows: Sequence[str] = ("ffaa_reference", "batched"), first_tokens: int | None = None,
              on_flow: Callable[[FlowTiming], None] | None = None) -> BenchResult:
    """Time the chosen flows on one backend and image; `on_flow` sees each timing as it lands."""
    requests = candidate_requests(image)
    names, skipped = applicable_flows(backend, flows)
    timings = []
    for name in names:
        timing = run_flow(backend, name, requests, new_tokens, repeats, first_tokens)
        timings.append(timing)
        if on_flow is not None:
            on_flow(timing)
    info = backend.info
    memory = _Memory(info.device)
    return BenchResult(info.device, info.model_id, info.quantization, new_tokens, repeats, tuple(timings),
                       memory.note, tuple(skipped))


def run_formats(load: Callable[[str], Backend], quants: Sequence[str], image, new_tokens: int = 256,
                repeats: int = 2, flows: Sequence[str] = FLOWS, first_tokens: int | None = None,
                on_flow: Callable[[FlowTiming], None] | None = None) -> list[BenchResult]:
    """`run_bench` for each weight format in turn; each model is released before the next loads."""
    results = []
    for quant in quants:
        backend = load(quant)
        try:
            results.append(run_bench(backend, image, new_tokens, repeats, flows, first_tokens, on_flow))
        finally:
            release(backend)
            del backend
    return results


def release(backend: Backend) -> None:
    """Free a backend's model and its decoder thread, and return its device memory."""
    fast = getattr(backend, "fast", None)
    if fast is not None:
        fast.close()
    for attr in ("fast", "model"):
        if hasattr(backend, attr):
            setattr(backend, attr, None)
    gc.collect()
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def bench_decider(decider, image, candidates, repeats: int = 3) -> tuple[float, float]:
    """Seconds to score one face's candidates: (first call, mean of `repeats`)."""
    start = time.perf_counter()
    decider.decide_many([image], [candidates])
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        decider.decide_many([image], [candidates])
        times.append(time.perf_counter() - start)
    return first, statistics.mean(times)


# -- tables ---------------------------------------------------------------------------------------

TABLE_HEAD = (
    "| format | flow | s per face (3 candidates) | first call s | tokens/s | peak memory GiB | x vs reference | note |",
    "|---|---|---|---|---|---|---|---|",
)


def reference_seconds(timings: Sequence[FlowTiming]) -> float | None:
    """Seconds per face of the first `ffaa_reference` timing, the baseline of every ratio."""
    return next((t.seconds_per_face for t in timings if t.name == "ffaa_reference"), None)


def format_rows(timings: Sequence[FlowTiming], reference_s: float | None = None) -> list[str]:
    """Markdown rows (with header) for `timings`; ratios against `reference_s` or the first
    reference timing among them."""
    ref = reference_s if reference_s is not None else reference_seconds(timings)
    rows = list(TABLE_HEAD)
    for t in timings:
        ratio = f"{ref / t.seconds_per_face:.2f}" if ref and t.seconds_per_face > 0 else "-"
        rows.append(
            f"| {t.quantization or '-'} | {t.name} | {t.seconds_per_face:.3f} | {t.first_call_s:.1f} | "
            f"{t.tokens_per_s:.1f} | {t.peak_memory_gib:.2f} | {ratio} | {t.note} |"
        )
    return rows


def format_table(result: BenchResult | Sequence[BenchResult], title: str | None = None) -> str:
    """A Markdown table of one or several results (one row per format and flow), with ratios to
    FFAA's reference flow, the speed-up of batched over reference, and skipped flows."""
    results = [result] if isinstance(result, BenchResult) else list(result)
    first = results[0]
    timings = [t for r in results for t in r.flows]
    head = title or (
        f"model: {first.model} · {first.device} · {first.new_tokens} new tokens per candidate · "
        f"mean of {first.repeats}"
    )
    rows = [head, "", *format_rows(timings)]
    for r in results:
        names = {t.name for t in r.flows}
        if {"ffaa_reference", "batched"} <= names:
            rows.append(f"\nspeed-up of batched over FFAA's reference flow ({r.quantization}): {r.speedup:.2f}x")
    skipped = [s for r in results for s in r.skipped]
    if skipped:
        rows.append("\nnot run: " + "; ".join(skipped))
    rows.append(f"\nmemory: {first.memory_note}")
    return "\n".join(rows)
