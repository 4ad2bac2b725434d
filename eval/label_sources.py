"""Ground truth from any of its sources, chosen by what the path is: a benchmark folder
(`benchmarks`), a `<set>.json`, or a CSV/JSONL table (`labels`). It sits above both modules,
which know nothing of each other's formats."""

from __future__ import annotations

from pathlib import Path

from ffaa.errors import InputError

from .benchmarks import load_benchmark, load_set_json
from .labels import LabelSet, build_label_set, load_table_labels


def load_labels(path: str | Path) -> LabelSet:
    """Read labels from a benchmark folder, a `<set>.json`, a CSV or a JSONL file."""
    p = Path(path).expanduser()
    if p.is_dir():
        return load_benchmark(p).label_set()
    if not p.is_file():
        raise InputError(f"labels not found: {p}")
    try:
        if p.suffix.lower() == ".json":
            return build_label_set(str(p), load_set_json(p))
        return load_table_labels(p)
    except UnicodeDecodeError as exc:
        raise InputError(f"labels {p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
