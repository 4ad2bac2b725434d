"""Batch forensic reports over folders of images and videos: resumable, summarised, local or Ray.

    from ffaa.batch import BatchConfig, run_batch, ScriptedAssistantFactory
    run_batch(BatchConfig(out=Path("out"), inputs=("photos/",)), factory)

Importing this package is light (no torch, ray or av); each heavy dependency is imported by
the step that needs it.
"""

from .aggregate import RULES, VideoAggregate, aggregate
from .bench import BatchBench, bench_batch
from .engine import EngineSettings, VideoOptions
from .factory import ScriptedAssistantFactory
from .inputs import Discovery, Item, Source, discover
from .journal import LOG_NAME, OutputError, ReportLog, scan_log
from .outputs import write_summaries
from .runner import (
    BatchConfig,
    BatchInterrupted,
    BatchResult,
    GenerationFailed,
    RayOptions,
    run_batch,
)
from .summary import BatchSummary, load_summary
from .triage import triage_prompt, triage_reports

__all__ = [
    "LOG_NAME",
    "RULES",
    "BatchBench",
    "BatchConfig",
    "BatchInterrupted",
    "BatchResult",
    "BatchSummary",
    "Discovery",
    "EngineSettings",
    "GenerationFailed",
    "Item",
    "OutputError",
    "RayOptions",
    "ReportLog",
    "ScriptedAssistantFactory",
    "Source",
    "VideoAggregate",
    "VideoOptions",
    "aggregate",
    "bench_batch",
    "discover",
    "load_summary",
    "run_batch",
    "scan_log",
    "triage_prompt",
    "triage_reports",
    "write_summaries",
]
