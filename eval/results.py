"""Result files: JSON form of the result dataclasses, provenance, and `ffaa eval compare`.

Every result JSON carries `schema`, `kind` (detection, ensemble, explanations, judge), the
inputs with their SHA-256, and the provenance of the reports it scored (model, revision,
backend, quantization, prompt set, decoder, decoding settings), so two runs can be compared.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ffaa.errors import InputError

SCHEMA = "ffaa.eval/1"


@dataclass(frozen=True)
class InputFile:
    role: str
    path: str
    sha256: str | None


def input_file(role: str, path: str | Path) -> InputFile:
    """A file an evaluation read, with its hash (None for a folder or a missing file)."""
    p = Path(path)
    if not p.is_file():
        return InputFile(role, str(p), None)
    digest = hashlib.sha256()
    with p.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return InputFile(role, str(p), digest.hexdigest())


@dataclass(frozen=True)
class ProvenanceGroup:
    """Reports that share one model/prompt/decoder configuration, and how many there are."""

    model_id: str
    model_revision: str | None
    backend: str
    quantization: str
    dtype: str
    prompt_set: str
    decoder: str
    decoding: str
    demo: bool
    n_reports: int


def provenance_groups(records: Iterable[dict[str, Any]]) -> tuple[ProvenanceGroup, ...]:
    """Group the `provenance` blocks of report records (plain records without one are skipped)."""
    counts: Counter[tuple[Any, ...]] = Counter()
    for rec in records:
        p = rec.get("provenance")
        if not isinstance(p, dict):
            continue
        decoding = json.dumps(p.get("decoding", {}), sort_keys=True)
        counts[(str(p.get("model_id")), p.get("model_revision"), str(p.get("backend")),
                str(p.get("quantization")), str(p.get("dtype")), str(p.get("prompt_set")),
                str(p.get("decoder")), decoding, bool(p.get("demo", False)))] += 1
    return tuple(ProvenanceGroup(*key, n) for key, n in counts.most_common())


def jsonable(value: Any) -> Any:
    """Dataclasses, enums, tuples, numpy scalars -> JSON values; NaN and inf become None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(result: Any, path: Path) -> Path:
    """Write a result dataclass as indented JSON with `schema` first."""
    data = {"schema": SCHEMA, **jsonable(result)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_result(path: str | Path) -> dict[str, Any]:
    p = Path(path).expanduser()
    if p.is_dir():
        raise InputError(f"{p}: is a folder; give the result JSON inside it (e.g. {p / 'detection.json'})")
    if not p.is_file():
        raise InputError(f"result file not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "expected an ffaa eval result JSON") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise InputError(f"{p}: not an ffaa eval result "
                         f"(schema {data.get('schema') if isinstance(data, dict) else None!r}, "
                         f"expected {SCHEMA!r})")
    return data


# -- compare -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonRow:
    """One number in A and B; counts stay ints, metrics floats."""

    key: str
    a: int | float | None
    b: int | float | None

    @property
    def delta(self) -> int | float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass(frozen=True)
class Comparison:
    kind_a: str
    kind_b: str
    rows: tuple[ComparisonRow, ...]
    provenance_a: tuple[str, ...]
    provenance_b: tuple[str, ...]
    inputs_differ: tuple[str, ...]


# Sections whose numbers are compared; lists of per-threshold rows and bins are left out.
_SKIP = ("sweep", "calibration_bins", "items", "inputs", "provenance", "problems", "rules",
         "notes", "examples", "failures", "settings")


def _numbers(data: Any, prefix: str = "") -> dict[str, int | float | None]:
    """Flatten numbers to dotted keys; lists of named groups are keyed by their names."""
    out: dict[str, int | float | None] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            if k not in _SKIP and k != "name":
                out.update(_numbers(v, f"{prefix}{k}."))
    elif isinstance(data, list):
        if all(isinstance(x, dict) and "name" in x for x in data):
            for x in data:
                out.update(_numbers(x, f"{prefix}{x['name']}."))
    elif data is None:
        out[prefix[:-1]] = None  # an undefined metric
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        out[prefix[:-1]] = data
    return out


def _provenance_lines(data: dict[str, Any]) -> tuple[str, ...]:
    lines = []
    for p in data.get("provenance") or ():
        lines.append(f"{p.get('model_id')}@{p.get('model_revision') or '-'} {p.get('backend')} {p.get('quantization')} "
                     f"{p.get('dtype')} prompts={p.get('prompt_set')} decoder={p.get('decoder')} "
                     f"decoding={p.get('decoding')} ({p.get('n_reports')} reports)")
    return tuple(lines)


def compare_results(a: dict[str, Any], b: dict[str, Any]) -> Comparison:
    """Every number present in either result, side by side."""
    na, nb = _numbers(a), _numbers(b)
    keys = list(na) + [k for k in nb if k not in na]
    rows = tuple(ComparisonRow(k, na.get(k), nb.get(k)) for k in keys)
    ia = {i.get("role"): i.get("sha256") for i in a.get("inputs") or ()}
    ib = {i.get("role"): i.get("sha256") for i in b.get("inputs") or ()}
    differ = tuple(sorted(k for k in set(ia) | set(ib) if ia.get(k) != ib.get(k)))
    return Comparison(str(a.get("kind")), str(b.get("kind")), rows, _provenance_lines(a), _provenance_lines(b), differ)


def format_comparison(c: Comparison, name_a: str = "A", name_b: str = "B", changed_only: bool = False) -> str:
    def fmt(x: float | None, sign: str = "") -> str:
        if x is None:
            return "n/a"
        return f"{x:{sign}d}" if isinstance(x, int) else f"{x:{sign}.4f}"

    rows = [r for r in c.rows if not changed_only or r.a != r.b]
    width = max([len("metric")] + [len(r.key) for r in rows])
    lines = [f"A = {name_a} ({c.kind_a})", f"B = {name_b} ({c.kind_b})"]
    if c.kind_a != c.kind_b:
        lines.append("warning: the two results are of different kinds; only shared keys line up")
    for label, prov in (("A", c.provenance_a), ("B", c.provenance_b)):
        for line in prov or ("(no provenance recorded)",):
            lines.append(f"{label} provenance: {line}")
    if c.inputs_differ:
        lines.append("inputs that differ: " + ", ".join(c.inputs_differ))
    lines.append("")
    lines.append(f"{'metric':<{width}}  {'A':>10}  {'B':>10}  {'B-A':>10}")
    for r in rows:
        lines.append(f"{r.key:<{width}}  {fmt(r.a):>10}  {fmt(r.b):>10}  {fmt(r.delta, '+'):>10}")
    return "\n".join(lines)
