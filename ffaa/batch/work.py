"""The analysis loop both ways of running a batch share: items prefetched in a background
thread, their faces grouped for the model, one block per item.

`runner.py` drives it in this process, `distributed.py` in each Ray actor; it lives here so that
neither has to import the other to run the same code.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .engine import EngineSettings, Prepared, analyze_group, build_block
from .inputs import Item
from .records import Block

if TYPE_CHECKING:
    from ..pipeline import Assistant

PREFETCH_ITEMS = 4  # items decoded ahead of the model; lost (and redone) if the run is killed


def process(prepared: Iterable[Prepared], assistant: Assistant, settings: EngineSettings,
            group_faces: int) -> Iterator[Block]:
    """Blocks for a stream of prepared items, whose faces go to the model `group_faces` at a time.

    Items without faces to analyse (errors) need no model and are yielded at once.
    """
    group: list[Prepared] = []
    faces = 0
    for p in prepared:
        if p.error is not None:
            yield build_block(p, [], settings)
            continue
        group.append(p)
        faces += len(p.jobs)
        if faces >= group_faces:
            yield from analyze_group(assistant, group, settings)
            group, faces = [], 0
    if group:
        yield from analyze_group(assistant, group, settings)


class _End:
    pass


@dataclass(frozen=True)
class _Crash:
    error: BaseException


def prefetch(items: Sequence[Item], fn: Callable[[Item], Prepared], depth: int = PREFETCH_ITEMS) -> Iterator[Prepared]:
    """`fn` over items in a background thread, `depth` items ahead: decoding and face detection
    overlap the model's work instead of waiting for it.
    """
    out: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(value) -> None:
        while not stop.is_set():
            try:
                out.put(value, timeout=0.2)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                put(fn(item))
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the consumer, which owns error handling
            put(_Crash(exc))
        finally:
            put(_End())

    threading.Thread(target=work, name="ffaa-batch-prefetch", daemon=True).start()
    try:
        while not isinstance(value := out.get(), _End):
            if isinstance(value, _Crash):
                raise value.error
            yield value
    finally:
        stop.set()
