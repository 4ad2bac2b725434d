"""Detection predictions: ffaa's reports.jsonl (one record per face) or plain JSONL.

A record whose `schema` is ffaa's report schema is read with `ffaa.report.report_from_dict`:
its image path, face index, decided verdict, forgery score, difficulty and the chosen answer's
forgery type. Records written by `ffaa batch` are understood too: a face record stands for every
path its item's content was listed under (`batch.paths`); a video is judged by its `video`
record's aggregate (its per-frame face records are skipped); an item whose `item` record has no
face report (no face found, unreadable...) is an undecided prediction, not a missing one. Run
and error records are skipped. Any other object is a *plain* record: `id` (or `--id-field`),
`verdict` ("real"/"fake"/0/1, may be null), optional `score`, `face_index`, `difficulty`,
`forgery_type`.

Bad records are counted and described, never fatal: lines that are not JSON objects, report
records that do not load, scores that are missing, NaN or outside [0, 1] (the verdict is still
used; the score is left out of score-based metrics). A record repeating an earlier (path, face)
replaces it: a resumed batch run re-analyses what it re-writes.

Faces -> images: an image is fake if any decided face is fake and real if all decided faces are
real; undecided if no face was decided. Its forgery score is the largest valid face score; its
difficulty is hard if any face is hard; its predicted forgery type is that of the
highest-scoring face called fake.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ffaa.errors import InputError
from ffaa.report import READABLE_SCHEMAS, is_report_schema, report_from_dict
from ffaa.types import Verdict

from .labels import note_problem
from .results import ProvenanceGroup, provenance_groups

# The schema of the non-report records `ffaa batch` writes (see ffaa.batch.records).
BATCH_SCHEMA = "ffaa.batch/1"

AGGREGATION_RULE = (
    "faces -> image: fake if any decided face is fake, real if all decided faces are real, undecided "
    "if none was decided; score = max valid face score; hard if any face is hard; type = type of the "
    "highest-scoring fake face"
)


@dataclass(frozen=True)
class FacePrediction:
    """One face's outcome; `no_report` marks an analysed image that yielded no face report."""

    path: str
    face_index: int | None
    verdict: Verdict | None
    score: float | None
    difficulty: str | None = None
    forgery_type: str | None = None
    no_report: bool = False


@dataclass(frozen=True)
class ImagePrediction:
    path: str
    verdict: Verdict | None
    score: float | None
    difficulty: str | None
    forgery_type: str | None
    n_faces: int
    n_undecided_faces: int


@dataclass(frozen=True)
class PredictionSet:
    source: str
    faces: tuple[FacePrediction, ...]
    records: int
    invalid: int
    duplicates: int
    bad_scores: int
    missing_scores: int
    problems: tuple[str, ...]
    provenance: tuple[ProvenanceGroup, ...]


@dataclass(frozen=True)
class JsonlLine:
    number: int
    record: dict[str, Any] | None
    problem: str | None = None


def read_jsonl(path: str | Path) -> list[JsonlLine]:
    """Every non-blank line as a dict, or None with the reason; a torn last line is reported too."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            lines.append(JsonlLine(number, None, f"not valid JSON ({exc.msg})"))
            continue
        if not isinstance(record, dict):
            lines.append(JsonlLine(number, None, f"a JSON {type(record).__name__}, not an object"))
            continue
        lines.append(JsonlLine(number, record))
    return lines


def is_report(record: dict[str, Any]) -> bool:
    return "schema" in record


def check_score(value: Any) -> tuple[float | None, str | None]:
    """A valid forgery score, or None and what is wrong with it (None: no score at all)."""
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"score {value!r} is not a number"
    if not math.isfinite(value):
        return None, f"score {value!r} is not finite"
    if not 0.0 <= value <= 1.0:
        return None, f"score {value!r} is outside [0, 1]"
    return float(value), None


def _verdict(value: Any) -> Verdict | None:
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    table = {"real": Verdict.REAL, "fake": Verdict.FAKE, "0": Verdict.REAL, "1": Verdict.FAKE}
    if isinstance(value, bool) or text not in table:
        raise ValueError(f"verdict {value!r} is neither real nor fake")
    return table[text]


def face_from_report(record: dict[str, Any]) -> tuple[FacePrediction, Any]:
    """(face prediction, raw score) of an ffaa report record; raises ValueError if it does not load."""
    try:
        report = report_from_dict(record)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"report record does not load ({type(exc).__name__}: {exc})") from None
    final = report.final
    kind = final.forgery_type.value if final is not None and final.forgery_type is not None else None
    d = report.decision
    face = FacePrediction(report.image.path, report.face_index, d.verdict, None, d.difficulty, kind)
    return face, d.forgery_score


def face_from_plain(record: dict[str, Any], id_field: str) -> tuple[FacePrediction, Any]:
    ident = record.get(id_field)
    if ident in (None, ""):
        raise ValueError(f"no {id_field!r} field")
    face_index = record.get("face_index")
    return (
        FacePrediction(str(ident), face_index if isinstance(face_index, int) else None,
                       _verdict(record.get("verdict")), None, record.get("difficulty"), record.get("forgery_type")),
        record.get("score"),
    )


def _batch_paths(record: dict[str, Any], default: str) -> list[str]:
    """Every path the record's content was listed under (`batch.paths`), else `default`."""
    batch = record.get("batch")
    batch = batch if isinstance(batch, dict) else {}
    paths = batch.get("paths")
    if isinstance(paths, list) and paths and all(isinstance(p, str) for p in paths):
        return list(dict.fromkeys(paths))
    path = default or batch.get("path")
    return [path] if isinstance(path, str) and path else []


def _from_batch_record(record: dict[str, Any]) -> tuple[list[tuple[FacePrediction, Any]], bool]:
    """(predictions, handled) for an `ffaa batch` video or item record; run/error records yield none."""
    kind = record.get("record")
    if kind == "video":
        agg = record.get("aggregate") or {}
        verdict = _verdict(agg.get("verdict"))
        return [(FacePrediction(p, None, verdict, None), agg.get("score")) for p in _batch_paths(record, "")], True
    if kind == "item":
        return [(FacePrediction(p, None, None, None, no_report=True), None) for p in _batch_paths(record, "")], True
    return [], kind in ("run", "error")


def _parse_record(record: dict[str, Any], id_field: str) -> list[tuple[FacePrediction, Any]]:
    """The predictions one record stands for; ValueError for a record that cannot be read."""
    if record.get("schema") == BATCH_SCHEMA:
        found, handled = _from_batch_record(record)
        if not handled:
            raise ValueError(f"unknown {BATCH_SCHEMA} record {record.get('record')!r}")
        return found
    if not is_report(record):
        return [face_from_plain(record, id_field)]
    if not is_report_schema(record.get("schema")):
        raise ValueError(f"schema {record.get('schema')!r} is not one of {READABLE_SCHEMAS}")
    batch = record.get("batch")
    if isinstance(batch, dict) and batch.get("frame_index") is not None:
        return []  # a video frame: the video's own record carries its verdict
    face, raw = face_from_report(record)
    return [(FacePrediction(p, face.face_index, face.verdict, None, face.difficulty, face.forgery_type), raw)
            for p in _batch_paths(record, face.path)]


def load_predictions(path: str | Path, id_field: str = "id") -> PredictionSet:
    """Read per-face predictions; see the module docstring for what counts as bad input."""
    lines = read_jsonl(path)
    problems: list[str] = []
    invalid = duplicates = bad_scores = missing_scores = 0
    faces: dict[tuple[str, int | None], FacePrediction] = {}
    reportless: dict[str, FacePrediction] = {}
    reports: list[dict[str, Any]] = []
    for line in lines:
        where = f"{path}:{line.number}"
        if line.record is None:
            invalid += 1
            note_problem(problems, invalid, f"{where}: {line.problem}; skipped")
            continue
        try:
            found = _parse_record(line.record, id_field)
        except ValueError as exc:
            invalid += 1
            note_problem(problems, invalid, f"{where}: {exc}; skipped")
            continue
        if is_report_schema(line.record.get("schema")):
            reports.append(line.record)
        for n, (face, raw_score) in enumerate(found):
            if face.no_report:
                reportless[face.path] = face
                continue
            score, problem = check_score(raw_score)
            if n == 0 and problem:
                bad_scores += 1
                note_problem(problems, bad_scores, f"{where}: {problem}; left out of score-based metrics")
            elif n == 0 and score is None:
                missing_scores += 1
            key = (face.path, face.face_index)
            if key in faces:
                duplicates += 1
                note_problem(problems, duplicates,
                             f"{where}: {face.path} face {face.face_index} seen before; the later record is used")
            faces[key] = FacePrediction(face.path, face.face_index, face.verdict, score, face.difficulty,
                                        face.forgery_type)
    predicted = {p for p, _ in faces}
    undecided = [f for p, f in reportless.items() if p not in predicted]
    if not faces and not undecided:
        raise InputError(f"{path}: no usable prediction records ({len(lines)} lines, {invalid} invalid)"
                         + (f"; first problem: {problems[0]}" if problems else ""))
    return PredictionSet(str(path), tuple(faces.values()) + tuple(undecided), len(lines), invalid, duplicates,
                         bad_scores, missing_scores, tuple(problems), provenance_groups(reports))


def aggregate_images(faces: Iterable[FacePrediction]) -> list[ImagePrediction]:
    """One prediction per image path by AGGREGATION_RULE, in first-seen order."""
    groups: dict[str, list[FacePrediction]] = {}
    for face in faces:
        groups.setdefault(face.path, []).append(face)
    return [_aggregate(path, group) for path, group in groups.items()]


def _aggregate(path: str, faces: list[FacePrediction]) -> ImagePrediction:
    if all(f.no_report for f in faces):
        return ImagePrediction(path, None, None, None, None, 0, 0)
    decided = [f.verdict for f in faces if f.verdict is not None]
    verdict = None if not decided else (Verdict.FAKE if Verdict.FAKE in decided else Verdict.REAL)
    scores = [f.score for f in faces if f.score is not None]
    difficulties = {f.difficulty for f in faces if f.difficulty}
    difficulty = "hard" if "hard" in difficulties else ("easy" if difficulties else None)
    fakes = [f for f in faces if f.verdict is Verdict.FAKE]
    fakes.sort(key=lambda f: -1.0 if f.score is None else f.score, reverse=True)
    kind = fakes[0].forgery_type if fakes else None
    return ImagePrediction(path, verdict, max(scores) if scores else None, difficulty, kind,
                           len(faces), len(faces) - len(decided))

