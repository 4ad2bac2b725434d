"""Several detectors' fake-probabilities per item: a threshold rule per detector and a majority
vote across them, as in the evaluation table of the talk "Deep into DeepFakes: Draw a
line b/w Real & Fake" (five detectors, five videos, P > 0.70).

Rules (`ffaa.detectors.vote`, the same rule the running detectors use):

- a detector calls an item fake iff its probability is strictly greater than the threshold;
  a missing, NaN or out-of-range probability is an abstention (no vote);
- the ensemble calls fake iff more than half of the votes cast say fake, real iff more than half
  say real; an exact tie (possible with an even number of votes) goes to `tie` (default real:
  a tie is not a majority for fake; pass `tie=fake` to send ties to review instead);
- accuracy and recall count every item with a known label; an abstention (a detector without
  a valid probability, or the ensemble when no detector voted) counts as an error, and
  abstentions are reported per detector.

Table formats: that table's JSON (`threshold`, `detectors`, `videos` or `items` with `file`/`id`,
`actual`/`label`, `probabilities`), or CSV with columns `id`, `label`, then one column per
detector.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ffaa.detectors.vote import DEFAULT_THRESHOLD, majority, vote
from ffaa.errors import InputError
from ffaa.types import Verdict

from .labels import parse_label


@dataclass(frozen=True)
class EnsembleItem:
    id: str
    label: Verdict | None
    probabilities: tuple[float | None, ...]


@dataclass(frozen=True)
class EnsembleTable:
    source: str
    detectors: tuple[str, ...]
    items: tuple[EnsembleItem, ...]
    threshold: float | None = None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tally:
    """A count out of a total, kept exact ("4/5") with its value."""

    hits: int
    total: int

    @property
    def value(self) -> float | None:
        return self.hits / self.total if self.total else None

    def __str__(self) -> str:
        return f"{self.hits}/{self.total}"


@dataclass(frozen=True)
class VoterResult:
    """One detector (or the ensemble): its predictions and how good they are."""

    name: str
    predictions: tuple[Verdict | None, ...]
    accuracy: Tally
    recall_fake: Tally
    recall_real: Tally
    abstentions: int


@dataclass(frozen=True)
class EnsembleResult:
    kind: str
    source: str
    threshold: float
    threshold_rule: str
    tie: Verdict
    items: tuple[str, ...]
    labels: tuple[Verdict | None, ...]
    detectors: tuple[VoterResult, ...]
    ensemble: VoterResult
    fake_votes: tuple[int, ...]
    ties: int
    problems: tuple[str, ...] = ()
    threshold_source: str = "the table's"


def score_voter(name: str, predictions: Sequence[Verdict | None], labels: Sequence[Verdict | None]) -> VoterResult:
    pairs = [(p, y) for p, y in zip(predictions, labels) if y is not None]
    fakes = [(p, y) for p, y in pairs if y is Verdict.FAKE]
    reals = [(p, y) for p, y in pairs if y is Verdict.REAL]
    return VoterResult(
        name=name,
        predictions=tuple(predictions),
        accuracy=Tally(sum(p is y for p, y in pairs), len(pairs)),
        recall_fake=Tally(sum(p is Verdict.FAKE for p, _ in fakes), len(fakes)),
        recall_real=Tally(sum(p is Verdict.REAL for p, _ in reals), len(reals)),
        abstentions=sum(p is None for p in predictions),
    )


def evaluate_ensemble(table: EnsembleTable, threshold: float | None = None,
                      tie: Verdict = Verdict.REAL) -> EnsembleResult:
    """Per-detector and majority-vote predictions and their accuracy and recalls."""
    if threshold is not None:
        t, source = threshold, "given"
    elif table.threshold is not None:
        t, source = table.threshold, "the table's"
    else:  # a CSV has no place for one: the talk's rule
        t, source = DEFAULT_THRESHOLD, "the talk's rule, as the table gives none; --threshold changes it"
    labels = tuple(i.label for i in table.items)
    votes = [[vote(p, t) for p in item.probabilities] for item in table.items]
    detectors = tuple(
        score_voter(name, [row[d] for row in votes], labels) for d, name in enumerate(table.detectors)
    )
    ensemble = [majority(row, tie) for row in votes]
    fake_votes = tuple(sum(v is Verdict.FAKE for v in row) for row in votes)
    ties = sum(2 * f == sum(v is not None for v in row) and f > 0 for f, row in zip(fake_votes, votes))
    return EnsembleResult(
        kind="ensemble",
        source=table.source,
        threshold=t,
        threshold_rule="fake iff probability > threshold (strictly greater)",
        threshold_source=source,
        tie=tie,
        items=tuple(i.id for i in table.items),
        labels=labels,
        detectors=detectors,
        ensemble=score_voter("ensemble", ensemble, labels),
        fake_votes=fake_votes,
        ties=ties,
        problems=table.problems,
    )


# -- reading tables ----------------------------------------------------------------------------


def _probability(value: Any, where: str, problems: list[str]) -> float | None:
    if value is None or value == "":
        problems.append(f"{where}: no probability; the detector abstains")
        return None
    try:
        p = float(value)
    except (TypeError, ValueError):
        problems.append(f"{where}: probability {value!r} is not a number; the detector abstains")
        return None
    if not math.isfinite(p) or not 0.0 <= p <= 1.0:
        problems.append(f"{where}: probability {value!r} is not in [0, 1]; the detector abstains")
        return None
    return p


def _label(value: Any, where: str, problems: list[str]) -> Verdict | None:
    if value in (None, ""):
        problems.append(f"{where}: no label; left out of accuracy and recall")
        return None
    try:
        return parse_label(value)[0]
    except ValueError as exc:
        problems.append(f"{where}: {exc}; left out of accuracy and recall")
        return None


def load_table(path: str | Path) -> EnsembleTable:
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"ensemble table not found: {p}")
    try:
        if p.suffix.lower() == ".csv":
            return _csv_table(p)
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return _json_table(p, data)


def _json_table(p: Path, data: Any) -> EnsembleTable:
    if not isinstance(data, dict) or not isinstance(data.get("detectors"), list):
        raise InputError(f"{p}: expected an object with 'detectors' and 'items' (or 'videos')")
    detectors = tuple(str(d) for d in data["detectors"])
    rows = data.get("items", data.get("videos"))
    if not isinstance(rows, list) or not rows:
        raise InputError(f"{p}: no items (expected a non-empty 'items' or 'videos' list)")
    problems: list[str] = []
    items = []
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InputError(f"{p}: item {n} is not an object")
        ident = str(row.get("id", row.get("file", n)))
        probs = row.get("probabilities")
        if not isinstance(probs, list) or len(probs) != len(detectors):
            raise InputError(f"{p}: item {ident!r} has {len(probs) if isinstance(probs, list) else 'no'} "
                             f"probabilities for {len(detectors)} detectors")
        where = f"{p}: item {ident!r}"
        items.append(EnsembleItem(
            ident,
            _label(row.get("label", row.get("actual")), where, problems),
            tuple(_probability(v, f"{where}, {d}", problems) for v, d in zip(probs, detectors)),
        ))
    threshold = data.get("threshold")
    return EnsembleTable(str(p), detectors, tuple(items), float(threshold) if threshold is not None else None,
                         tuple(problems))


def _csv_table(p: Path) -> EnsembleTable:
    with p.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if not rows or len(rows[0]) < 3 or [c.strip().lower() for c in rows[0][:2]] != ["id", "label"]:
        raise InputError(f"{p}: the header must be id,label,<detector>,... with at least one detector")
    detectors = tuple(c.strip() for c in rows[0][2:])
    problems: list[str] = []
    items = []
    for line, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(rows[0]):
            raise InputError(f"{p}:{line}: {len(row)} columns, the header has {len(rows[0])}")
        where = f"{p}:{line}"
        items.append(EnsembleItem(
            row[0].strip(),
            _label(row[1].strip(), where, problems),
            tuple(_probability(v.strip(), f"{where}, {d}", problems) for v, d in zip(row[2:], detectors)),
        ))
    if not items:
        raise InputError(f"{p}: no items below the header")
    return EnsembleTable(str(p), detectors, tuple(items), None, tuple(problems))


def to_markdown(r: EnsembleResult) -> str:
    names = [d.name for d in r.detectors]
    out = ["# Ensemble evaluation", "",
           f"Rule: a detector says fake iff P > {r.threshold:g} (threshold: {r.threshold_source}); the ensemble takes "
           "the majority of the votes cast "
           f"(ties: {r.tie.value}; {r.ties} tie(s) here).", ""]
    out += ["| item | actual | " + " | ".join(names) + " | fake votes | ensemble |",
            "|---" * (len(names) + 4) + "|"]
    for i, ident in enumerate(r.items):
        cells = [_vote_text(d.predictions[i]) for d in r.detectors]
        ens = r.ensemble.predictions[i]
        out.append(f"| {ident} | {_vote_text(r.labels[i], '?')} | " + " | ".join(cells)
                   + f" | {r.fake_votes[i]} | {ens.value if ens else '—'} |")
    out += ["", "| detector | accuracy | recall on fakes | recall on reals | abstentions |", "|---|---|---|---|---|"]
    for d in (*r.detectors, r.ensemble):
        out.append(f"| {d.name} | {d.accuracy} | {d.recall_fake} | {d.recall_real} | {d.abstentions} |")
    if r.problems:
        out += ["", "## Problems", ""] + [f"- {p}" for p in r.problems]
    return "\n".join(out) + "\n"


def _vote_text(verdict: Verdict | None, missing: str = "—") -> str:
    return verdict.value if verdict is not None else missing
