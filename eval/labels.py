"""Ground truth for detection: which image is real and which is fake.

Three sources, chosen by what the path is:

- a folder: FFAA's benchmark layout (`<set>/<set>.json` per set, see `benchmarks`);
- `<set>.json` inside such a folder: that one set;
- `.csv` with a header row, or `.jsonl` with one object per line: columns/keys `id` and
  `label`, optional `set` and `type`. Labels are "real"/"fake" (any case) or 0/1 (1 = fake);
  FFAA's MA set writes `[result, type]`, which is accepted wherever a label is.

Bad rows never stop the load: they are counted and described in `LabelSet.problems`. An id
given twice with the same label is kept once; an id given with conflicting labels is dropped.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ffaa.errors import InputError
from ffaa.types import ForgeryType, Verdict

from .matching import normalize_id

MAX_LISTED = 10  # problems listed by name; the rest are counted


@dataclass(frozen=True)
class Label:
    """One labelled image. `id` is a path relative to the benchmark root (or as given)."""

    id: str
    verdict: Verdict
    set: str | None = None
    forgery_type: str | None = None

    @property
    def is_fake(self) -> int:
        return int(self.verdict is Verdict.FAKE)


@dataclass(frozen=True)
class LabelSet:
    source: str
    labels: tuple[Label, ...]
    rows: int
    invalid: int = 0
    duplicates: int = 0
    conflicting: int = 0
    problems: tuple[str, ...] = ()


def parse_label(value: Any) -> tuple[Verdict, str | None]:
    """"real"/"fake"/0/1, or a [result, type] pair -> (verdict, forgery type or None).

    Raises ValueError with the offending value when it is none of these.
    """
    kind = None
    if isinstance(value, (list, tuple)):
        if not 1 <= len(value) <= 2:
            raise ValueError(f"label {value!r}: expected [result, type]")
        value, kind = value[0], (value[1] if len(value) == 2 else None)
    if isinstance(value, bool):
        raise ValueError(f"label {value!r} is neither real nor fake")
    text = str(value).strip().lower()
    mapping = {"real": Verdict.REAL, "fake": Verdict.FAKE, "0": Verdict.REAL, "1": Verdict.FAKE}
    if text not in mapping:
        raise ValueError(f"label {value!r} is neither real nor fake")
    verdict = mapping[text]
    return verdict, normalize_type(kind) if verdict is Verdict.FAKE else None


def normalize_type(kind: Any) -> str | None:
    """A forgery type as ffaa spells it when it is one of FFAA's three, else the text as given."""
    if kind is None or not str(kind).strip():
        return None
    text = " ".join(str(kind).split())
    for known in ForgeryType:
        if text.lower() == known.value.lower():
            return None if known is ForgeryType.NONE else known.value
    return text


def load_table_labels(p: Path) -> LabelSet:
    """Labels from a CSV or JSONL table (`ffaa.eval.label_sources.load_labels` reads every
    source, benchmark folders and `<set>.json` files too)."""
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return _from_rows(str(p), _csv_rows(p))
    if suffix == ".jsonl":
        return _from_rows(str(p), _jsonl_rows(p))
    raise InputError(f"labels {p}: expected a benchmark folder, <set>.json, .csv or .jsonl")


def _csv_rows(path: Path) -> Iterable[tuple[str, dict[str, Any] | None]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"id", "label"} <= {f.strip() for f in reader.fieldnames}:
            raise InputError(f"{path}: the header must name at least the columns 'id' and 'label' "
                             f"(found {reader.fieldnames})")
        for row in reader:
            yield f"{path}:{reader.line_num}", {k.strip(): v for k, v in row.items() if k is not None}


def _jsonl_rows(path: Path) -> Iterable[tuple[str, dict[str, Any] | None]]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        yield f"{path}:{number}", row if isinstance(row, dict) else None


def _from_rows(source: str, rows: Iterable[tuple[str, dict[str, Any] | None]]) -> LabelSet:
    parsed: list[tuple[str, Label | None, str | None]] = []
    for where, row in rows:
        if row is None:
            parsed.append((where, None, "not a JSON object"))
            continue
        ident = str(row.get("id") or "").strip()
        if not ident:
            parsed.append((where, None, "no id"))
            continue
        try:
            verdict, kind = parse_label(row.get("label"))
        except ValueError as exc:
            parsed.append((where, None, str(exc)))
            continue
        if row.get("type") and verdict is Verdict.FAKE:
            kind = normalize_type(row["type"])
        subset = str(row["set"]).strip() if row.get("set") not in (None, "") else None
        parsed.append((where, Label(normalize_id(ident), verdict, subset, kind), None))
    return build_label_set(source, parsed)


def build_label_set(source: str, parsed: Iterable[tuple[str, Label | None, str | None]]) -> LabelSet:
    """Collect (where, label or None, problem) rows: count invalid rows, fold duplicates."""
    problems: list[str] = []
    invalid = duplicates = 0
    rows = 0
    by_id: dict[str, Label] = {}
    conflicted: set[str] = set()
    for where, label, problem in parsed:
        rows += 1
        if label is None:
            invalid += 1
            note_problem(problems, invalid, f"{where}: {problem}; row skipped")
            continue
        previous = by_id.get(label.id)
        if previous is None and label.id not in conflicted:
            by_id[label.id] = label
        elif previous is not None and previous.verdict is label.verdict:
            duplicates += 1
            note_problem(problems, duplicates, f"{where}: id {label.id!r} given again; kept once")
        else:
            if previous is not None:
                del by_id[label.id]
                conflicted.add(label.id)
            duplicates += 1
            note_problem(problems, len(conflicted), f"{where}: id {label.id!r} has conflicting labels; dropped")
    return LabelSet(source, tuple(by_id.values()), rows, invalid, duplicates, len(conflicted), tuple(problems))


def note_problem(problems: list[str], count: int, text: str) -> None:
    """Keep the first MAX_LISTED problems of a kind by name; later ones are only counted."""
    if count <= MAX_LISTED:
        problems.append(text)
