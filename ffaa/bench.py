"""Benchmarks: FFAA's reference flow against ours, on the same model in the same run.

FFAA's flow generates the three candidates one after another (answer 0, then the two
hypotheses). Ours sends them to the backend as one batch. Both are timed on the same image and
prompts with the same forced answer length (`min_new_tokens` = `max_new_tokens`), so the ratio
measures the flow and nothing else. Figures are printed, never asserted in tests.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .backends.base import Backend, GenerationRequest
from .prompts import load_prompt_set
from .types import DecodingSettings, Verdict


@dataclass(frozen=True)
class FlowTiming:
    """One flow's figures for three candidates of one face."""

    name: str
    seconds_per_face: float
    first_call_s: float
    new_tokens: int
    tokens_per_s: float
    peak_memory_gib: float


@dataclass(frozen=True)
class BenchResult:
    device: str
    model: str
    quantization: str
    new_tokens: int
    repeats: int
    flows: tuple[FlowTiming, ...]
    memory_note: str

    def flow(self, name: str) -> FlowTiming:
        return next(f for f in self.flows if f.name == name)

    @property
    def speedup(self) -> float:
        """Reference seconds / batched seconds (> 1 means ours is faster)."""
        return self.flow("ffaa_reference").seconds_per_face / self.flow("batched").seconds_per_face


def candidate_requests(image, question_index: int = 0) -> list[GenerationRequest]:
    """The three prompts of one face: free question, real hypothesis, fake hypothesis."""
    ps = load_prompt_set()
    questions = [ps.questions[question_index], ps.hypothesis(Verdict.REAL), ps.hypothesis(Verdict.FAKE)]
    return [GenerationRequest(image, ps.chat([(q, None)])) for q in questions]


def reference_flow(backend: Backend, requests: Sequence[GenerationRequest], settings) -> int:
    """FFAA: one `generate` per candidate, in order. Returns new tokens written."""
    return sum(backend.generate([r], settings)[0].new_tokens for r in requests)


def batched_flow(backend: Backend, requests: Sequence[GenerationRequest], settings) -> int:
    """Ours: all candidates in one batched `generate`."""
    return sum(g.new_tokens for g in backend.generate(list(requests), settings))


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
    name: str, flow: Callable[[], int], repeats: int, memory: _Memory
) -> FlowTiming:
    """First call timed separately (it may compile or warm caches), then `repeats` timed calls."""
    memory.reset()
    start = time.perf_counter()
    flow()
    first = time.perf_counter() - start
    seconds, tokens = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = flow()
        seconds.append(time.perf_counter() - start)
    mean = statistics.mean(seconds)
    return FlowTiming(name, mean, first, tokens, tokens / mean, memory.peak_gib())


def run_bench(backend: Backend, image, new_tokens: int = 256, repeats: int = 2) -> BenchResult:
    """Time FFAA's reference flow and our batched flow on the same backend and image."""
    settings = DecodingSettings(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, stop_at_answer_end=False
    )
    requests = candidate_requests(image)
    memory = _Memory(backend.info.device)
    flows = (
        time_flow("ffaa_reference", lambda: reference_flow(backend, requests, settings), repeats, memory),
        time_flow("batched", lambda: batched_flow(backend, requests, settings), repeats, memory),
    )
    info = backend.info
    return BenchResult(info.device, info.model_id, info.quantization, new_tokens, repeats, flows, memory.note)


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


def format_table(result: BenchResult) -> str:
    """A Markdown table of the flows and the speed-up ratio."""
    rows = [
        f"model: {result.model} · {result.quantization} · {result.device} · "
        f"{result.new_tokens} new tokens per candidate · mean of {result.repeats}",
        "",
        "| flow | s per face (3 candidates) | first call s | tokens/s | peak memory GiB |",
        "|---|---|---|---|---|",
    ]
    for f in result.flows:
        rows.append(
            f"| {f.name} | {f.seconds_per_face:.3f} | {f.first_call_s:.3f} | "
            f"{f.tokens_per_s:.1f} | {f.peak_memory_gib:.2f} |"
        )
    rows += ["", f"speed-up of batched over FFAA's reference flow: {result.speedup:.2f}x",
             f"memory: {result.memory_note}"]
    return "\n".join(rows)


def print_result(result: BenchResult, out=sys.stdout) -> None:
    print(format_table(result), file=out)
