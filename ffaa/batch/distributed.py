"""The batch on Ray: Ray Data feeds items to a pool of actors, each holding one model replica.

Each actor builds its assistant once from the (picklable) factory, then prepares and analyses
the items it is given with the same code as a local run (`runner.process`), and returns each
item's block as JSON. This process, the driver, is the only writer of the log: it commits
blocks as they stream back, so resume and de-duplication work exactly as in a local run. The
inputs must be readable at the same paths on every node (a shared file system).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..lazy import require
from .engine import EngineSettings, prepare
from .inputs import Item, item_from_dict, item_to_dict
from .records import Block

if TYPE_CHECKING:
    from .runner import AssistantFactory, RayOptions, Writer


def run_on_ray(items: Sequence[Item], factory: AssistantFactory, settings: EngineSettings,
               group_faces: int, options: RayOptions, writer: Writer) -> None:
    """Analyse `items` on an actor pool and commit every returned block through `writer`."""
    ray = require("ray", "distributed", "--ray")
    started = _connect(ray, options.address)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours counts committed items
        actors, resources = actor_plan(ray.cluster_resources(), options)
        rows = [{"item": json.dumps(item_to_dict(i))} for i in items]
        dataset = ray.data.from_items(rows).map_batches(
            _Worker,
            fn_constructor_args=(factory, settings, group_faces),
            batch_size=max(1, group_faces),
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            **resources,
        )
        for row in dataset.iter_rows():
            writer.commit(Block.from_json(row["block"]))
    finally:
        if started:
            ray.shutdown()


def _connect(ray, address: str | None) -> bool:
    """Join the given cluster (or RAY_ADDRESS, or start a local one); True if we started it."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address)
    else:
        ray.init(include_dashboard=False)
    return True


def actor_plan(cluster: dict[str, float], options: RayOptions) -> tuple[int, dict[str, Any]]:
    """Actor count and per-actor resources: one replica per GPU when the cluster has GPUs,
    else `options.actors` (default 1) replicas of `cpus_per_actor` CPUs each.
    """
    gpus = int(cluster.get("GPU", 0))
    if gpus:
        return options.actors or gpus, {"num_gpus": 1}
    return options.actors or 1, {"num_cpus": options.cpus_per_actor}


class _Worker:
    """One model replica. Ray Data calls it with batches of serialised items."""

    def __init__(self, factory: AssistantFactory, settings: EngineSettings, group_faces: int):
        self.assistant = factory()
        self.settings = settings
        self.group_faces = group_faces

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from .runner import prefetch, process

        items = [item_from_dict(json.loads(text)) for text in batch["item"]]
        prepared = prefetch(items, lambda i: prepare(i, self.assistant, self.settings))
        blocks = [b.to_json() for b in process(prepared, self.assistant, self.settings, self.group_faces)]
        return {"block": np.array(blocks, dtype=object)}
