"""The batch on Ray: Ray Data feeds items to a pool of actors, each holding one model replica.

Each actor builds its assistant once from the (picklable) factory, then prepares and analyses
the items it is given with the same code as a local run (`work.process`), and returns each
item's block as JSON. This process, the driver, is the only writer of the log: it commits
blocks as they stream back, so resume and de-duplication work exactly as in a local run. The
inputs must be readable at the same paths on every node (a shared file system).

Failures: a replica that cannot build its model (an `FfaaError` such as missing weights) ends
the run with that message; a bug in the worker ends it with the worker's traceback. A worker
process that dies (crash, out of memory, lost node) is restarted and its batch retried
`WORKER_TRIES` times; items still lost are retried one per batch, so one crashing item cannot
sink its batch-mates, and those that still kill their worker get an error record (stage
"worker") while the rest of the run goes on. Workers that keep dying (more than
`WORKER_RESTARTS` times in a pass: while building the model, or on every item) end the run with
one message.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import FfaaError
from ..lazy import require
from .engine import EngineSettings, ItemError, Prepared, build_block, prepare
from .inputs import Item, item_from_dict, item_to_dict
from .records import Block
from .work import prefetch, process

if TYPE_CHECKING:
    from .runner import AssistantFactory, RayOptions, Writer

WORKER_TRIES = 3  # tries of a batch whose worker process died, before it counts as lost
# Deaths an actor pool survives in one pass: enough for a few crashing items, and a bound for a
# worker that dies while building its model or on every item (which would otherwise loop forever).
WORKER_RESTARTS = 10


# Ray's notices that tell a user of `--ray` nothing, by logger and the start of their message:
# token authentication being on (Ray's safe default; its warning that auth is *off* stays) and
# Ray Data's progress bars being off (ours counts committed items).
RAY_CHATTER = {
    "ray._private.authentication.authentication_token_setup": "Token authentication is enabled",
    "ray.data._internal.progress": "Progress bars disabled",
}


class RayConnectError(FfaaError):
    """The Ray cluster could not be joined or started."""


class RayWorkerError(FfaaError):
    """A model replica could not be built on a Ray worker; the message is the worker's."""


@dataclass(frozen=True)
class RayJob:
    """What every batch of one run needs besides its items."""

    factory: AssistantFactory
    settings: EngineSettings
    group_faces: int
    options: RayOptions


@contextmanager
def ray_session(options: RayOptions | None, notice=None) -> Iterator[None]:
    """Joins (or starts) the cluster for the whole run when `options` is set; stops what it started."""
    if options is None:
        yield
        return
    ray = require("ray", "distributed", "--ray")
    started = _connect(ray, options.address, notice)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _connect(ray, address: str | None, notice=None) -> bool:
    """Join the given cluster (or RAY_ADDRESS, or start a local one); True if we started it."""
    if ray.is_initialized():
        return False
    where = f"the Ray cluster at {address}" if address else "Ray (RAY_ADDRESS or a new local cluster)"
    if notice:
        notice(f"connecting to {where}")
    quiet_ray_chatter()
    # log_to_driver stays on: the workers' own messages (the demo banner, a crash's traceback)
    # reach the user only that way; their library noise is silenced in the workers (`_Worker`).
    quiet = {"logging_level": logging.WARNING, "configure_logging": True, "log_to_driver": True}
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")  # Ray Data's per-dataset INFO lines bury ours
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        reason = _first_line(exc)
        problem = reason if address and address in reason else f"cannot connect to {where}: {reason}"
        raise RayConnectError(f"--ray: {problem}. Give the head node's host:port, 'auto' for a cluster "
                              "started here with `ray start --head`, or --ray alone for a local cluster") from exc
    return True


class _DropNotice(logging.Filter):
    """Drops the records of one logger whose message starts with `prefix`; the rest pass."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def quiet_ray_chatter() -> None:
    """Filter `RAY_CHATTER` out of Ray's loggers in this process (once, however often called).
    By message rather than by level, so that the same loggers' real warnings still show."""
    for name, prefix in RAY_CHATTER.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotice) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropNotice(prefix))


def _first_line(exc: BaseException) -> str:
    """Ray's first sentence: the rest names its own flags (--address), not ours."""
    text = " ".join(str(exc).split())
    return text.split(". ")[0].rstrip(".") or type(exc).__name__


def run_on_ray(items: Sequence[Item], factory: AssistantFactory, settings: EngineSettings,
               group_faces: int, options: RayOptions, writer: Writer) -> None:
    """Analyse `items` on an actor pool and commit every returned block through `writer`.

    Needs a connected cluster (`ray_session`).
    """
    ray = require("ray", "distributed", "--ray")
    quiet_ray_chatter()  # also when the caller connected to Ray itself
    context = ray.data.DataContext.get_current()
    kept = context.enable_progress_bars, context.max_errored_blocks  # restored for other Ray Data users
    context.enable_progress_bars = False  # ours counts committed items
    context.max_errored_blocks = -1  # a batch whose worker died for good is retried below, not fatal
    try:
        job = RayJob(factory, settings, group_faces, options)
        lost = _analyse(ray, items, job, max(1, group_faces), writer)
        if lost and group_faces > 1:
            lost = _analyse(ray, lost, job, 1, writer)
    finally:
        context.enable_progress_bars, context.max_errored_blocks = kept
    for item in lost:
        writer.commit(lost_block(item, settings))


def lost_block(item: Item, settings: EngineSettings) -> Block:
    """The error record of an item whose worker process died every time it analysed it."""
    reason = ("the Ray worker process was lost every time it analysed this item (with its batch, then "
              f"alone; {WORKER_TRIES} tries each): a crash or out of memory in decoding or the model; the "
              "workers' logs say which")
    return build_block(Prepared(item, error=ItemError("worker", reason, "WorkerDied")), [], settings)


def _analyse(ray, items: Sequence[Item], job: RayJob, batch_size: int, writer: Writer) -> list[Item]:
    """One pass over the actor pool; returns the items whose batches were lost."""
    actors, resources = actor_plan(ray.cluster_resources(), job.options)
    rows = [{"item": json.dumps(item_to_dict(i))} for i in items]
    with warnings.catch_warnings():  # max_task_retries has no named parameter yet
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        dataset = ray.data.from_items(rows).map_batches(
            _Worker,
            fn_constructor_args=(job.factory, job.settings, job.group_faces),
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            max_task_retries=WORKER_TRIES - 1,
            max_restarts=WORKER_RESTARTS,
            **resources,
        )
    returned: set[str] = set()
    try:
        for row in dataset.iter_rows():
            _raise_failure(row)
            block = Block.from_json(row["block"])
            returned.add(block.key[0])
            writer.commit(block)
    except ray.exceptions.RayActorError as exc:
        raise RayWorkerError(
            f"the Ray workers kept dying ({WORKER_RESTARTS} restarts; last: {_first_line(exc)}): a crash or "
            "out of memory while building the model or on every item; the workers' logs say which. "
            f"The {len(returned)} item(s) written are safe: fix the cause and rerun with --resume") from None
    return [i for i in items if i.key not in returned]


def _raise_failure(row: dict[str, Any]) -> None:
    if row["failure"] == "config":
        raise RayWorkerError(f"on a Ray worker: {row['message']}")
    if row["failure"] == "bug":
        raise RuntimeError(f"a Ray worker failed:\n{row['message']}")


def actor_plan(cluster: dict[str, float], options: RayOptions) -> tuple[int, dict[str, Any]]:
    """Actor count and per-actor resources: one replica per GPU when the cluster has GPUs,
    else `options.actors` (default 1) replicas of `cpus_per_actor` CPUs each.
    """
    gpus = int(cluster.get("GPU", 0))
    if gpus:
        return options.actors or gpus, {"num_gpus": 1}
    return options.actors or 1, {"num_cpus": options.cpus_per_actor}


class _Worker:
    """One model replica. Ray Data calls it with batches of serialised items.

    Failures that are not the items' own come back as rows (column "failure": "config" for an
    `FfaaError` building the model, "bug" for anything else), so the driver can end the run
    with one clear message instead of Ray retrying the actor and printing its tracebacks.
    """

    def __init__(self, factory: AssistantFactory, settings: EngineSettings, group_faces: int):
        # A worker is a fresh process: the CLI's silencing of torchao's and torch's import-time
        # notes never ran here, and log_to_driver would print them under every replica's name.
        # Done here rather than in a runtime_env setup hook, so that it also holds on a cluster
        # the caller connected to (or a job that brings its own hook).
        from ..cli import quiet_third_party_logs

        quiet_third_party_logs()
        self.settings, self.group_faces = settings, group_faces
        self.assistant, self.failure = None, ("", "")
        try:
            self.assistant = factory()
        except FfaaError as exc:
            self.failure = ("config", str(exc))
        except Exception:  # noqa: BLE001 -- a bug: its traceback goes back to the driver
            self.failure = ("bug", traceback.format_exc())

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        count = len(batch["item"])
        try:
            blocks = self._blocks(batch["item"]) if self.assistant is not None else []
            failure = self.failure
        except Exception:  # noqa: BLE001 -- a bug in the batch code, reported by the driver
            blocks, failure = [], ("bug", traceback.format_exc())
        if failure[0]:
            blocks = [""] * count
        rows = len(blocks)
        return {"block": np.array(blocks, dtype=object), "failure": np.array([failure[0]] * rows, dtype=object),
                "message": np.array([failure[1]] * rows, dtype=object)}

    def _blocks(self, texts) -> list[str]:
        items = [item_from_dict(json.loads(text)) for text in texts]
        prepared = prefetch(items, lambda i: prepare(i, self.assistant, self.settings))
        return [b.to_json() for b in process(prepared, self.assistant, self.settings, self.group_faces)]
