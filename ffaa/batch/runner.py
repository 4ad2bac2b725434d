"""`run_batch`: inputs -> resumable `reports.jsonl` -> summaries, in this process or on Ray.

The steps, in order: check the output folder (refuse a used one unless resuming), expand and
hash the inputs, open the log (cutting off what a crash left half written), skip the items it
already holds, analyse the rest, then regenerate the summaries from the log. Only this
process writes the log, also when Ray does the analysis, so resume semantics are the same.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FfaaError
from .engine import EngineSettings, prepare
from .inputs import Item, Source, build_items, discover
from .journal import LOG_NAME, LogScan, OutputError, ReportLog, check_folder, scan_log
from .records import Block, run_record
from .work import prefetch, process

if TYPE_CHECKING:
    from ..pipeline import Assistant

logger = logging.getLogger(__name__)

AssistantFactory = Callable[[], "Assistant"]


class GenerationFailed(FfaaError):
    """The model failed on several items in a row: it is broken, not the items."""


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run. The committed items are safe; the message says how to go on."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run on Ray. address None: RAY_ADDRESS or a local cluster."""

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0


@dataclass(frozen=True)
class BatchConfig:
    """One `ffaa batch` invocation.

    group_faces: face jobs (of several items) sent to the model per `analyze_jobs` call; the
    assistant's `batch_size` then splits each call's prompts (3 per face) into generate calls.
    explain_flagged: after the run (or alone, without inputs), run the full analysis on the
    items a triage run flagged.
    """

    out: Path
    inputs: tuple[str, ...] = ()
    resume: bool = False
    engine: EngineSettings = field(default_factory=EngineSettings)
    explain_flagged: bool = False
    group_faces: int = 4
    progress: bool = True
    ray: RayOptions | None = None
    failure_limit: int = 3
    retry_errors: bool = False  # with resume: items whose latest analysis is an error are redone
    arguments: dict[str, Any] | None = None  # the command's options, recorded so a resume can reuse them


@dataclass(frozen=True)
class BatchResult:
    """What a run did: items found, skipped as already done, and written by this run."""

    out: Path
    found: int
    skipped: int
    written: int
    errors: int
    seconds: float
    warnings: tuple[str, ...] = ()


def run_batch(config: BatchConfig, factory: AssistantFactory) -> BatchResult:
    """Analyse every input not yet in `config.out`, then write the summaries."""
    from .distributed import ray_session
    from .outputs import write_summaries

    start = time.perf_counter()
    check_output(config)
    notice = (lambda line: print(f"ffaa batch: {line}", file=sys.stderr, flush=True)) if config.progress else None
    with ray_session(config.ray, notice):  # joined before the log opens: a wrong address leaves no trace
        discovery = discover(config.inputs, config.out, notice) if config.inputs else None
        for note in discovery.warnings if discovery else ():
            print(f"warning: {note}", file=sys.stderr)
        found, skipped, log_path, writer = _analyse_all(config, factory, discovery)
    try:
        if log_path.exists():  # a new run that found nothing to analyse took its empty folder back
            write_summaries(config.out)
    except OutputError as exc:
        raise OutputError(f"{exc}. Every item is in {log_path}: fix that, then rebuild the summaries "
                          f"with ffaa batch --summarize-only {config.out}") from exc
    warnings = discovery.warnings if discovery else ()
    return BatchResult(config.out, found, skipped, writer.written, writer.errors,
                       time.perf_counter() - start, tuple(warnings))


def _analyse_all(config: BatchConfig, factory: AssistantFactory, discovery) -> tuple[int, int, Path, Writer]:
    """Open the log, analyse what it lacks; (found, skipped, log path, writer).

    The model is built before anything is written, and the run record goes to the log with the
    first item: a run whose model fails, or that finds nothing to do, leaves the folder as it was.
    """
    models = _Models(factory)
    if config.ray is None and _has_work(config, discovery, scan_log(config.out / LOG_NAME)):
        models.get()  # a model that cannot load fails here, before the folder exists
    new_folders = _missing_folders(config.out)
    log_existed = (config.out / LOG_NAME).exists()
    log, scan = ReportLog.open(config.out, _resuming(config))
    writer = Writer(log, set(), config.failure_limit)
    try:
        with log:
            _report_recovery(scan, log.path)
            settings = _run_settings(config, factory)
            _warn_changed_settings(scan, settings)
            retry = frozenset(scan.failed()) if config.retry_errors else frozenset()
            writer = Writer(log, scan.done() - retry, config.failure_limit, retry, run_record(settings))
            found, skipped = _analyse_inputs(config, models, discovery, writer)
    finally:
        if writer.written == 0 and not log_existed:
            _remove_unused(log.path, new_folders)
    return found, skipped, log.path, writer


def _analyse_inputs(config: BatchConfig, models: _Models, discovery, writer: Writer) -> tuple[int, int]:
    found = skipped = 0
    try:
        if discovery:
            items = list(discovery.items)
            work = [i for i in items if (i.key, config.engine.mode) not in writer.done]
            found, skipped = len(items), len(items) - len(work)
            _run(work, models, config, config.engine, writer)
        if config.explain_flagged:
            _explain_flagged(models, config, writer)
    except KeyboardInterrupt:
        _stop_interrupted(config, writer)
    except OutputError as exc:
        if exc.says_how_to_go_on:
            raise
        raise OutputError(f"{exc}. The {writer.written} item(s) written before are safe: fix that, then "
                          "rerun the same command with --resume") from exc
    return found, skipped


class _Models:
    """The run's assistant, built once on first use (triage and explanation share it)."""

    def __init__(self, factory: AssistantFactory):
        self.factory = factory
        self._assistant: Assistant | None = None

    def get(self) -> Assistant:
        if self._assistant is None:
            self._assistant = self.factory()
        return self._assistant


def _has_work(config: BatchConfig, discovery, scan: LogScan) -> bool:
    """Whether this run will analyse anything, judged from the log as it is before the run."""
    done = scan.done() - (scan.failed() if config.retry_errors else set())
    if discovery and any((i.key, config.engine.mode) not in done for i in discovery.items):
        return True
    return config.explain_flagged and any(
        r["batch"]["mode"] == "triage" and r.get("flagged") and (r["batch"]["key"], "full") not in done
        for r in scan.items())


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _remove_unused(log_path: Path, new_folders: list[Path]) -> None:
    """Take back what a run that wrote no item created: its empty log and the folders made for it,
    so that the same command can be retried as it was typed."""
    try:
        if log_path.exists() and log_path.stat().st_size == 0:
            log_path.unlink()
        for folder in new_folders:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    except OSError as exc:
        logger.debug("could not remove the unused %s: %s", log_path, exc)


def _stop_interrupted(config: BatchConfig, writer: Writer) -> None:
    """After Ctrl-C: summarise what was committed (a second Ctrl-C skips that) and say how to
    finish. The item in progress was not written, so --resume redoes it."""
    from .outputs import write_summaries

    summaries = "the summaries show them"
    try:
        if writer.written:  # else they are as the last run left them (or there is nothing to sum up)
            write_summaries(config.out)
    except (FfaaError, KeyboardInterrupt):
        summaries = "the summaries were not updated"
    raise BatchInterrupted(
        f"interrupted: {writer.written} item(s) saved by this run in {writer.log.path} ({summaries}); "
        "rerun the same command with --resume to finish") from None


def check_output(config: BatchConfig) -> None:
    """Fail fast, before hashing any input, on a folder that may not be used."""
    if config.explain_flagged and not config.inputs and not (config.out / LOG_NAME).is_file():
        raise FfaaError(f"--explain-flagged: {config.out / LOG_NAME} not found; run a --triage batch into it first")
    check_folder(config.out, _resuming(config))


def _resuming(config: BatchConfig) -> bool:
    """Explaining a finished triage run continues that run, as --resume does."""
    return config.resume or (config.explain_flagged and not config.inputs)


def _report_recovery(scan: LogScan, path: Path) -> None:
    if scan.dropped:
        print(f"note: {path}: dropped {scan.dropped} record line(s) of an item cut short by an "
              "interrupted run; that item is analysed again", file=sys.stderr)


def _warn_changed_settings(scan: LogScan, settings: dict[str, Any]) -> None:
    """Resuming with another model or video rule mixes two analyses in one folder: say so."""
    runs = [b[-1] for b in scan.blocks if b[-1].get("record") == "run"]
    if not runs:
        return
    before = runs[-1]["settings"]
    for key in ("assistant", "video", "triage_threshold"):
        if before.get(key) != settings.get(key):
            print(f"warning: resuming with a different {key} than the run in this folder "
                  f"({before.get(key)} -> {settings.get(key)})", file=sys.stderr)


def _run_settings(config: BatchConfig, factory: AssistantFactory) -> dict[str, Any]:
    describe = getattr(factory, "describe", None)
    return {
        "inputs": list(config.inputs),
        "mode": config.engine.mode,
        "triage_threshold": config.engine.triage_threshold,
        "video": asdict(config.engine.video),
        "group_faces": config.group_faces,
        "explain_flagged": config.explain_flagged,
        "ray": asdict(config.ray) if config.ray else None,
        "assistant": describe() if describe else {},
        **({"arguments": config.arguments} if config.arguments is not None else {}),
    }


def _run(items: Sequence[Item], models: _Models, config: BatchConfig,
         settings: EngineSettings, writer: Writer) -> None:
    if not items:
        return
    assistant = models.get() if config.ray is None else None  # loaded before the bar starts its clock
    with _progress(len(items), config.progress, settings.mode) as bar:
        writer.bar = bar
        if assistant is None:
            from .distributed import run_on_ray

            run_on_ray(items, models.factory, settings, config.group_faces, config.ray, writer)
        else:
            blocks = process(prefetch(items, lambda i: prepare(i, assistant, settings)),
                             assistant, settings, config.group_faces)
            for block in blocks:
                writer.commit(block)
        writer.finish()


class Writer:
    """Commits blocks to the log: each item once, counted on the progress bar.

    Generation failures are held back: if the model then works on a later item, they were the
    items' own and are committed; if `limit` items fail in a row, the model is broken and the
    run stops without recording them, so a resume retries them. Items that failed the same way
    in an earlier run (`known_failures`, redone by --retry-errors) say nothing about the model:
    they are committed at once and never count toward the limit.
    """

    def __init__(self, log: ReportLog, done: set[tuple[str, str]], limit: int = 3,
                 known_failures: frozenset[tuple[str, str]] = frozenset(),
                 run: dict[str, Any] | None = None):
        self.log, self.done, self.limit = log, done, max(1, limit)
        self.known_failures = known_failures
        self.run = run  # the run record, written with the first item (a run that adds nothing leaves no trace)
        self.held: list[Block] = []
        self.bar = None
        self.written = self.errors = 0

    def commit(self, block: Block) -> None:
        if block.key in self.done:
            return  # e.g. a batch Ray retried after an actor died
        final = block.final
        if final.get("stage") == "generate" and block.key not in self.known_failures:
            self.held.append(block)
            if len(self.held) >= self.limit:
                raise GenerationFailed(
                    f"the model failed on {len(self.held)} items in a row (last: {final.get('reason')}); "
                    "stopping. Those items were not recorded: fix the cause and rerun with --resume")
            return
        if final.get("status") != "error":
            self._flush_held()
        self._append(block)

    def finish(self) -> None:
        """At the end of the run the held failures are too few to blame the model: record them."""
        self._flush_held()

    def _flush_held(self) -> None:
        held, self.held = self.held, []
        for block in held:
            self._append(block)

    def _append(self, block: Block) -> None:
        if self.run is not None:  # one write: the run record never stands alone in the log
            block, self.run = Block((self.run, *block.records), block.thumbs), None
        self.log.append(block)
        self.done.add(block.key)
        self.written += 1
        self.errors += block.final.get("status") == "error"
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(errors=self.errors, refresh=False)


class _progress:
    """A tqdm bar over items (rate and ETA), or nothing when disabled."""

    def __init__(self, total: int, enabled: bool, mode: str):
        self.total, self.enabled, self.mode = total, enabled, mode

    def __enter__(self):
        if not self.enabled:
            return None
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, unit="item", desc=f"ffaa batch ({self.mode})", file=sys.stderr,
                        dynamic_ncols=True, smoothing=0.1)
        return self.bar

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.close()


# -- explaining what triage flagged ----------------------------------------------------------


def flagged_items(scan: LogScan, done: set[tuple[str, str]] | None = None) -> tuple[list[Item], list[str]]:
    """Items a triage run flagged that have no full analysis yet (in `done`, default: the log's
    committed items), re-read from their paths.

    An item whose files changed since (no path still holds the same content) is skipped with a
    warning: its triage verdict was about other bytes.
    """
    done = scan.done() if done is None else done
    wanted = [r for r in scan.items() if r["batch"]["mode"] == "triage" and r.get("flagged")
              and (r["batch"]["key"], "full") not in done]
    items, warnings = [], []
    for record in wanted:
        batch = record["batch"]
        sources = [Source(path, item_id, batch.get("label"), origin=LOG_NAME)
                   for path, item_id in zip(batch["paths"], batch["ids"])]
        match = [i for i in build_items(sources) if i.key == batch["key"]]
        if match:
            items.append(match[0])
        else:
            warnings.append(f"{batch['path']}: content changed since triage; not explained")
    return items, warnings


def _explain_flagged(models: _Models, config: BatchConfig, writer: Writer) -> None:
    items, warnings = flagged_items(scan_log(writer.log.path), writer.done)  # without items --retry-errors redoes
    for note in warnings:
        print(f"warning: {note}", file=sys.stderr)
    settings = EngineSettings("full", config.engine.triage_threshold, config.engine.video, config.engine.thumbnails)
    _run([i for i in items if (i.key, "full") not in writer.done], models, config, settings, writer)
