"""`ffaa eval run`: analyse every image of a benchmark folder, then score the reports.

The analysis is a `ReportsRunner`: given the benchmark's image files and a folder, it writes
`reports.jsonl` there and returns its path. `batch_runner` is the real one (ffaa's resumable
batch runner with an assistant factory); tests pass a fake. Scoring is `ffaa eval detection`
with the benchmark's own labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ffaa.errors import InputError

from .benchmarks import Benchmark, load_benchmark
from .detection_eval import DetectionEvaluation, EvaluationOptions, evaluate_detection
from .detection_report import write_outputs
from .predictions import load_predictions
from .results import input_file

ReportsRunner = Callable[[Sequence[Path], Path], Path]
REPORTS_FOLDER = "reports"


def batch_runner(factory: Callable[[], Any], resume: bool = False, progress: bool = True,
                 arguments: dict[str, Any] | None = None) -> ReportsRunner:
    """A runner on `ffaa.batch.runner.run_batch` (resumable; reports one record per face).
    `arguments`: the command's options, kept in the run record for a later --resume."""

    def run(images: Sequence[Path], out: Path) -> Path:
        from ffaa.batch.journal import LOG_NAME
        from ffaa.batch.runner import BatchConfig, run_batch

        run_batch(BatchConfig(out=out, inputs=tuple(str(p) for p in images), resume=resume, progress=progress,
                              arguments=arguments), factory)
        return out / LOG_NAME

    return run


@dataclass(frozen=True)
class BenchmarkRun:
    benchmark: Benchmark
    reports: Path
    evaluation: DetectionEvaluation
    written: tuple[Path, ...]


def run_benchmark(
    bench_dir: str | Path,
    out_dir: str | Path,
    runner: ReportsRunner,
    options: EvaluationOptions | None = None,
    plots: bool = True,
) -> BenchmarkRun:
    """Load the benchmark, analyse its images into `out_dir/reports/`, score into `out_dir`."""
    bench = load_benchmark(bench_dir)
    images = [item.path for item in bench.items if item.path.is_file()]
    if not images:
        raise InputError(f"{bench.root}: none of the {len(bench.items)} labelled images exists on disk "
                         f"(first expected: {bench.items[0].path if bench.items else 'none'})")
    out = Path(out_dir).expanduser()
    reports = runner(images, out / REPORTS_FOLDER)
    if not reports.is_file():
        raise InputError(f"the analysis wrote no reports file at {reports}")
    evaluation = evaluate_detection(
        load_predictions(reports), bench.label_set(), options,
        inputs=(input_file("reports", reports), input_file("labels", bench.root)),
    )
    written = write_outputs(evaluation, out, plots)
    return BenchmarkRun(bench, reports, evaluation, tuple(written))
