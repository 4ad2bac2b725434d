"""`bench_batch`: images per second analysed one image at a time vs. batched across images.

Both flows run on the same assistant in the same call, on face jobs prepared once beforehand
(decoding and face detection are timed separately), so the ratio measures only how the model
calls are grouped. The triage figure is one verdict-only pass over the same faces.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from .triage import triage_reports

if TYPE_CHECKING:
    from ..pipeline import Assistant, FaceJob


@dataclass(frozen=True)
class BatchBench:
    """Seconds for the same images and faces under each flow, and the rates they give."""

    images: int
    faces: int
    batch_size: int
    group_faces: int
    prepare_s: float
    sequential_s: float
    batched_s: float
    triage_s: float | None
    backend: str
    device: str
    skipped: tuple[str, ...] = ()

    @property
    def sequential_ips(self) -> float:
        return self.images / self.sequential_s

    @property
    def batched_ips(self) -> float:
        return self.images / self.batched_s

    @property
    def triage_ips(self) -> float | None:
        return self.images / self.triage_s if self.triage_s else None

    @property
    def speedup(self) -> float:
        """Batched images/s over one-at-a-time images/s (> 1: batching across images pays)."""
        return self.sequential_s / self.batched_s

    def table(self) -> str:
        """A Markdown table of the three flows."""
        head = (f"{self.images} images, {self.faces} faces · {self.backend} on {self.device} · "
                f"batch size {self.batch_size} prompts · {self.group_faces} faces per group")
        rows = [head,
                "", "| flow | seconds | images/s |", "|---|---|---|",
                f"| one image at a time | {self.sequential_s:.3f} | {self.sequential_ips:.3f} |",
                f"| batched across images | {self.batched_s:.3f} | {self.batched_ips:.3f} |"]
        if self.triage_s:
            rows.append(f"| triage (verdict only) | {self.triage_s:.3f} | {self.triage_ips:.3f} |")
        rows += ["", f"batched / one at a time: {self.speedup:.2f}x; preparing the images took {self.prepare_s:.3f} s"]
        return "\n".join(rows)


def bench_batch(
    assistant_factory: Callable[[], Assistant],
    images: Sequence[str | Path],
    *,
    group_faces: int | None = None,
    triage: bool = True,
    warmup: bool = True,
) -> BatchBench:
    """Time the full analysis of `images` one image at a time and batched, and triage.

    group_faces: faces per `analyze_jobs` call when batched (default: enough to fill one
    generate call, batch_size // 3). Images that cannot be analysed are skipped and named.
    """
    assistant = assistant_factory()
    start = time.perf_counter()
    per_image, skipped = _prepare(assistant, images)
    prepare_s = time.perf_counter() - start
    if not per_image:
        raise InputError("bench_batch: none of the images could be analysed: " + "; ".join(skipped))
    size = max(1, assistant.options.batch_size)
    group = group_faces or max(1, size // 3)
    if warmup:
        assistant.analyze_jobs(per_image[0])
    sequential = _timed(lambda: [assistant.analyze_jobs(jobs) for jobs in per_image])
    every = [job for jobs in per_image for job in jobs]
    batched = _timed(lambda: [assistant.analyze_jobs(every[i : i + group]) for i in range(0, len(every), group)])
    triage_s = _timed(lambda: triage_reports(assistant, every, 0.5)) if triage else None
    info = assistant.backend.info
    return BatchBench(len(per_image), len(every), size, group, prepare_s, sequential, batched, triage_s,
                      info.name, info.device, tuple(skipped))


def _prepare(assistant: Assistant, images: Sequence[str | Path]) -> tuple[list[list[FaceJob]], list[str]]:
    per_image, skipped = [], []
    for path in images:
        try:
            per_image.append(assistant.face_jobs(assistant.load(path)))
        except InputError as exc:
            skipped.append(str(exc))
    return per_image, skipped


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
