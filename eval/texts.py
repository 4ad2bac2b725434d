"""Explanation texts to score: predictions and references, read and paired by id.

A file is either ffaa's reports.jsonl or plain JSONL.

- Report records: the id is the image path (`path#face<i>` for each face when an image has
  several), the text is the raw answer of the chosen candidate (what the user was shown), empty
  when the report is undecided. Records written by `ffaa batch` are understood too: a face
  record stands for every path its content was listed under (`batch.paths`), a video frame's
  id is `path#frame<k>` (then `#face<i>` as above), verdict-only triage records (no explanation)
  and the batch's own bookkeeping records (run, item, error, video) are skipped.
- Plain records: `id` and `text` by default (configurable); `text` may be a string or, for
  references, a list of strings; an optional `label` ("real"/"fake") is kept for the judge.
  Several lines with the same id add references; for predictions the later line replaces the
  earlier and is counted as a duplicate.

Predictions are paired with references by the path rule of `ffaa.eval.matching`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ffaa.errors import InputError
from ffaa.parsing import parse_answer
from ffaa.report import READABLE_SCHEMAS, is_report_schema, report_from_dict
from ffaa.types import Verdict

from .labels import note_problem, parse_label
from .matching import PathIndex
from .predictions import BATCH_SCHEMA, is_report, read_jsonl
from .results import ProvenanceGroup, provenance_groups

Compare = Literal["explanation", "full"]


@dataclass(frozen=True)
class TextRecord:
    id: str
    texts: tuple[str, ...]
    label: Verdict | None = None


@dataclass(frozen=True)
class TextSet:
    source: str
    records: tuple[TextRecord, ...]
    lines: int
    invalid: int
    duplicates: int
    problems: tuple[str, ...]
    provenance: tuple[ProvenanceGroup, ...] = ()


@dataclass(frozen=True)
class TextFields:
    id: str = "id"
    text: str = "text"
    label: str = "label"


def _report_text(rec: dict[str, Any]) -> list[tuple[str, int | None, str]]:
    """[(image id, face index, chosen answer's raw text)] of a report record, one per path an `ffaa
    batch` record stands for; [] for a triage record (it has no explanation); ValueError if it does
    not load."""
    if not is_report_schema(rec.get("schema")):
        raise ValueError(f"schema {rec.get('schema')!r} is not one of {READABLE_SCHEMAS}")
    try:
        report = report_from_dict(rec)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"report record is incomplete ({type(exc).__name__}: {exc})") from None
    batch = rec.get("batch")
    batch = batch if isinstance(batch, dict) else {}
    if batch.get("mode") == "triage" or report.decision.method == "triage":
        return []
    chosen = [c for c in report.candidates if c.index == report.decision.chosen_index]
    text = chosen[0].raw_text if chosen else ""
    paths = batch.get("paths")
    if not (isinstance(paths, list) and paths and all(isinstance(p, str) and p for p in paths)):
        paths = [report.image.path]
    frame = batch.get("frame_index")
    suffix = f"#frame{frame}" if isinstance(frame, int) and not isinstance(frame, bool) else ""
    return [(f"{path}{suffix}", report.face_index, text) for path in dict.fromkeys(paths)]


def _face_ids(faces: list[tuple[int, str, int | None, str]]) -> list[tuple[int, str, str, Verdict | None]]:
    """Entries keyed by image path, or `path#face<i>` when an image has several faces."""
    per_path = Counter(path for _, path, _, _ in faces)
    return [
        (number, f"{path}#face{face}" if per_path[path] > 1 and face is not None else path, text, None)
        for number, path, face, text in faces
    ]


def load_texts(path: str | Path, fields: TextFields = TextFields(), references: bool = False) -> TextSet:
    """Read predictions (one text per id) or references (several texts per id allowed)."""
    lines = read_jsonl(path)
    problems: list[str] = []
    invalid = duplicates = 0
    texts: dict[str, list[str]] = {}
    labels: dict[str, Verdict | None] = {}
    reports: list[dict[str, Any]] = []
    faces: list[tuple[int, str, int | None, str]] = []
    entries: list[tuple[int, str, str, Verdict | None]] = []
    for line in lines:
        rec = line.record
        if rec is None:
            invalid += 1
            note_problem(problems, invalid, f"{path}:{line.number}: {line.problem}; skipped")
            continue
        try:
            if rec.get("schema") == BATCH_SCHEMA:
                continue  # `ffaa batch` bookkeeping (run, item, error, video): no explanation text
            if is_report(rec):
                found = _report_text(rec)
                faces += [(line.number, *entry) for entry in found]
                if found:
                    reports.append(rec)
            else:
                entries += _plain_entries(line.number, rec, fields, references)
        except ValueError as exc:
            invalid += 1
            note_problem(problems, invalid, f"{path}:{line.number}: {exc}; skipped")
    entries += _face_ids(faces)
    for number, ident, text, label in sorted(entries, key=lambda e: e[0]):
        if ident in texts and not references:
            duplicates += 1
            note_problem(problems, duplicates, f"{path}:{number}: id {ident!r} seen before; the later text is used")
            texts[ident] = []
        texts.setdefault(ident, []).append(text)
        if label is not None:
            labels[ident] = label
    if not texts:
        raise InputError(f"{path}: no usable records ({len(lines)} lines, {invalid} invalid)"
                         + (f"; first problem: {problems[0]}" if problems else ""))
    records = tuple(TextRecord(i, tuple(t), labels.get(i)) for i, t in texts.items())
    return TextSet(str(path), records, len(lines), invalid, duplicates, tuple(problems), provenance_groups(reports))


def _plain_entries(number: int, rec: dict[str, Any], fields: TextFields, references: bool
                   ) -> list[tuple[int, str, str, Verdict | None]]:
    ident = rec.get(fields.id)
    if ident in (None, ""):
        raise ValueError(f"no {fields.id!r} field")
    value = rec.get(fields.text)
    if isinstance(value, str):
        values = [value]
    elif references and isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        values = list(value)
    else:
        raise ValueError(f"{fields.text!r} is {'missing' if value is None else type(value).__name__}, "
                         f"expected {'a string or a list of strings' if references else 'a string'}")
    label = None
    if rec.get(fields.label) not in (None, ""):
        label = parse_label(rec[fields.label])[0]
    return [(number, str(ident), v, label) for v in values]


# -- pairing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One prediction and its references (empty when none were found)."""

    id: str
    prediction: str
    references: tuple[str, ...]
    label: Verdict | None


@dataclass(frozen=True)
class Pairing:
    pairs: tuple[Pair, ...]
    without_reference: tuple[str, ...]
    references_without_prediction: tuple[str, ...]
    empty_references_dropped: int


def pair_texts(predictions: TextSet, references: TextSet | None) -> Pairing:
    """Pair each prediction with its references; blank reference texts are dropped and counted."""
    if references is None:
        return Pairing(tuple(Pair(r.id, r.texts[-1], (), r.label) for r in predictions.records), (), (), 0)
    by_id = {r.id: r for r in references.records}
    index = PathIndex(by_id)
    pairs, missing, used, dropped = [], [], set(), 0
    for rec in predictions.records:
        hit = index.match(rec.id)
        ref = by_id.get(hit.id) if hit.id else None
        texts = tuple(t for t in ref.texts if t.strip()) if ref else ()
        dropped += (len(ref.texts) - len(texts)) if ref else 0
        if not texts:
            missing.append(rec.id)
        if ref:
            used.add(ref.id)
        label = rec.label or (ref.label if ref else None)
        pairs.append(Pair(rec.id, rec.texts[-1], texts, label))
    unused = tuple(i for i in by_id if i not in used)
    return Pairing(tuple(pairs), tuple(missing), unused, dropped)


# -- the text that is compared -----------------------------------------------------------------

_SPACE = re.compile(r"\s+")


def one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed to single spaces; '|||' removed (METEOR's separator)."""
    return _SPACE.sub(" ", text.replace("|||", " ")).strip()


def compared_text(text: str, compare: Compare) -> str:
    """`explanation`: the parsed description and reasoning (the verdict and the field labels left
    out, so similarity measures the explanation, not the shared format); text that does not parse
    into either field is compared whole. `full`: the whole text."""
    if compare == "explanation":
        parsed = parse_answer(text)
        if parsed.answer is not None and (parsed.answer.description or parsed.answer.reasoning):
            return one_line(f"{parsed.answer.description} {parsed.answer.reasoning}")
    return one_line(text)


def compared_texts(pairs: Sequence[Pair], compare: Compare) -> tuple[list[str], list[list[str]]]:
    return ([compared_text(p.prediction, compare) for p in pairs],
            [[compared_text(r, compare) for r in p.references] for p in pairs])
