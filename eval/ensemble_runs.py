"""The talk's evaluation table computed from real runs: `ffaa eval ensemble --reports`.

Reads `ffaa detect`'s `detect.jsonl` or `ffaa batch --detectors`' `reports.jsonl` and takes,
per file, each classic detector's P(fake) (for a video: its deciding face track; for an image:
its deciding face), the seconds each spent, and FFAA's own verdict and forgery score when the
run has them. Against labels it reports, per detector, for the talk's vote (recomputed with the
given threshold and tie rule) and for FFAA: accuracy, recall on fakes and on reals, balanced
accuracy, ROC-AUC on P(fake), and seconds per file.

Beside the vote, a fitted alternative: logistic regression over the members' P(fake)
(scikit-learn), scored on out-of-fold predictions of a stratified k-fold cross-validation so
that it is never scored on the files it was fitted on. The vote stays the default; the fit
says how much a learned combination would add on this labelled set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ffaa.detectors.vote import VoteRule, decide, vote
from ffaa.errors import InputError
from ffaa.types import Verdict

from .detection import balanced_accuracy, confusion, defined, roc_auc
from .ensemble import Tally, score_voter
from .labels import parse_label
from .predictions import read_jsonl


@dataclass(frozen=True)
class RunItem:
    """One analysed file of a run."""

    id: str
    path: str
    label: Verdict | None
    probabilities: dict[str, float | None]
    seconds: dict[str, float]
    total_seconds: float | None = None
    ffaa_verdict: Verdict | None = None
    ffaa_score: float | None = None


@dataclass(frozen=True)
class MemberMetrics:
    name: str
    accuracy: Tally
    recall_fake: Tally
    recall_real: Tally
    balanced_accuracy: float | None
    auc: float | None
    seconds_per_file: float | None
    abstentions: int


@dataclass(frozen=True)
class FittedFusion:
    """Logistic regression over the members' P(fake), cross-validated."""

    members: tuple[str, ...]
    folds: int
    items: int
    accuracy: float | None
    balanced_accuracy: float | None
    auc: float | None
    coefficients: tuple[float, ...]
    intercept: float
    note: str = ""


@dataclass(frozen=True)
class RunEnsembleResult:
    kind: str
    source: str
    rule: str
    detectors: tuple[str, ...]
    titles: tuple[str, ...]
    items: tuple[str, ...]
    labels: tuple[str | None, ...]
    probabilities: tuple[tuple[float | None, ...], ...]
    predictions: tuple[str | None, ...]
    members: tuple[MemberMetrics, ...]
    ensemble: MemberMetrics
    ffaa: MemberMetrics | None
    fitted: FittedFusion | None
    unlabelled: int
    problems: tuple[str, ...] = ()


# -- reading runs --------------------------------------------------------------------------------


def load_run(path: str | Path) -> tuple[list[RunItem], dict[str, str], list[str]]:
    """Items of a detect or batch run, the detectors' titles, and problems found."""
    from ffaa.detectors.items import is_detect_record

    lines = read_jsonl(path)
    records = [line.record for line in lines if line.record is not None]
    problems = [f"{path}:{line.number}: {line.problem}" for line in lines if line.record is None]
    if any(is_detect_record(r) for r in records):
        items, titles = _from_detect(records, problems)
    else:
        items, titles = _from_batch(records, problems)
    if any(_demo(r) for r in records):
        problems.insert(0, "DEMO detectors (random weights) made this run: their scores mean nothing")
    if not items:
        raise InputError(f"{path}: no classic-detector results found (run `ffaa detect ... --out DIR` "
                         "or `ffaa batch ... --detectors ...` first)")
    return items, titles, problems


def _demo(record: dict[str, Any]) -> bool:
    from ffaa.detectors.items import is_detect_record

    weights = record.get("detectors") if is_detect_record(record) else (record.get("provenance") or {}).get("detectors")
    return isinstance(weights, dict) and any(str(w).startswith("demo") for w in weights.values())


def _members(panel: dict[str, Any] | None, titles: dict[str, str]) -> tuple[dict, dict]:
    probs, seconds = {}, {}
    for m in (panel or {}).get("members", ()):
        titles.setdefault(m["detector"], m.get("title", m["detector"]))
        probs[m["detector"]] = m.get("probability")
        seconds[m["detector"]] = float(m.get("seconds") or 0.0)
    return probs, seconds


def _label(value: Any) -> Verdict | None:
    try:
        return parse_label(value)[0] if value not in (None, "") else None
    except ValueError:
        return None


def _from_detect(records: list[dict], problems: list[str]) -> tuple[list[RunItem], dict[str, str]]:
    titles: dict[str, str] = {}
    items = []
    for r in records:
        if r.get("error"):
            problems.append(f"{r.get('id')}: {r['error']}; left out")
            continue
        probs, _ = _members(r.get("panel"), titles)
        seconds = _file_seconds(r)
        items.append(RunItem(r["id"], r["path"], _label(r.get("label")), probs, seconds, r.get("seconds")))
    return items, titles


def _file_seconds(r: dict[str, Any]) -> dict[str, float]:
    """A detector's time over every face or track of a file (what it cost to score the file)."""
    panels = [f["panel"] for f in r.get("faces", ())]
    if r.get("video"):
        panels = [t["panel"] for t in r["video"]["tracks"]]
    out: dict[str, float] = {}
    for p in panels:
        for m in p["members"]:
            out[m["detector"]] = out.get(m["detector"], 0.0) + float(m.get("seconds") or 0.0)
    return out


def _from_batch(records: list[dict], problems: list[str]) -> tuple[list[RunItem], dict[str, str]]:
    from ffaa.detectors.items import deciding_face
    from ffaa.report import box_from_dict, detector_panel

    titles: dict[str, str] = {}
    by_key: dict[str, dict[str, Any]] = {}
    for r in records:
        b = r.get("batch") or {}
        key = b.get("key")
        if key is None:
            continue
        slot = by_key.setdefault(key, {"batch": b, "faces": [], "video": None, "item": None})
        if r.get("record") == "face" and r.get("detectors"):
            slot["faces"].append(r)
        elif r.get("record") == "video":
            slot["video"] = r
        elif r.get("record") == "item":
            slot["item"] = r
    items = []
    for slot in by_key.values():
        b, item = slot["batch"], slot["item"]
        if item is None or item.get("status") == "error":
            continue
        video = slot["video"]
        if video is not None and video.get("detectors_error"):
            problems.append(f"{b['path']}: the classic detectors failed ({video['detectors_error']}); left out")
            continue
        if video is not None and video.get("detectors") is not None:
            det = slot["video"]["detectors"]
            panel = det.get("panel")
            seconds: dict[str, float] = {}
            for t in det["tracks"]:
                for m in t["panel"]["members"]:
                    seconds[m["detector"]] = seconds.get(m["detector"], 0.0) + float(m.get("seconds") or 0.0)
        elif slot["faces"]:
            faces = [(box_from_dict(f.get("face")), detector_panel(f["detectors"])) for f in slot["faces"]]
            panel = slot["faces"][deciding_face(faces)]["detectors"]
            seconds = {}
            for f in slot["faces"]:
                for m in f["detectors"]["members"]:
                    seconds[m["detector"]] = seconds.get(m["detector"], 0.0) + float(m.get("seconds") or 0.0)
        else:
            continue
        probs, _ = _members(panel, titles)
        verdict = item.get("verdict")
        items.append(RunItem(b["item_id"], b["path"], _label(b.get("label")), probs, seconds, None,
                             Verdict(verdict) if verdict in ("real", "fake") else None, item.get("score")))
    if not items and by_key:
        problems.append("the batch run has no classic-detector results (was it run with --detectors?)")
    return items, titles


# -- scoring -------------------------------------------------------------------------------------


def _metrics(name: str, predictions: Sequence[Verdict | None], scores: Sequence[float | None],
             labels: Sequence[Verdict], seconds: Sequence[float | None]) -> MemberMetrics:
    voter = score_voter(name, predictions, labels)
    y = [int(v is Verdict.FAKE) for v in labels]
    pred = [int(p is Verdict.FAKE) for p in predictions]
    bacc = defined(balanced_accuracy, confusion(y, pred)) if labels else None
    scored = [(yy, s) for yy, s in zip(y, scores) if s is not None and math.isfinite(s)]
    auc = defined(roc_auc, [a for a, _ in scored], [b for _, b in scored]) if scored else None
    timed = [s for s in seconds if s is not None]
    return MemberMetrics(name, voter.accuracy, voter.recall_fake, voter.recall_real, bacc, auc,
                         sum(timed) / len(timed) if timed else None, voter.abstentions)


def fit_fusion(items: Sequence[RunItem], detectors: Sequence[str], seed: int = 0) -> FittedFusion | None:
    """Cross-validated logistic regression over the members' P(fake); None when there are
    too few labelled files with every member's probability to fit anything."""
    rows = [i for i in items if i.label is not None and all(i.probabilities.get(d) is not None for d in detectors)]
    y = [int(i.label is Verdict.FAKE) for i in rows]
    per_class = min(sum(y), len(y) - sum(y)) if y else 0
    if not detectors or per_class < 2:
        return FittedFusion(tuple(detectors), 0, len(rows), None, None, None, (), 0.0,
                            note="needs at least 2 labelled files of each class with every detector's P(fake)")
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.array([[i.probabilities[d] for d in detectors] for i in rows])
    folds = min(5, per_class)
    model = LogisticRegression(max_iter=1000)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    p = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    pred = (p > 0.5).astype(int)
    c = confusion(y, pred)
    model.fit(x, y)
    return FittedFusion(tuple(detectors), folds, len(rows), float((pred == np.array(y)).mean()),
                        defined(balanced_accuracy, c), defined(roc_auc, y, p),
                        tuple(float(w) for w in model.coef_[0]), float(model.intercept_[0]))


def evaluate_run(path: str | Path, labels_path: str | None = None, rule: VoteRule | None = None) -> RunEnsembleResult:
    rule = rule or VoteRule()
    items, titles, problems = load_run(path)
    if labels_path:
        items = _with_labels(items, labels_path, problems)
    detectors = tuple(titles)
    labelled = [i for i in items if i.label is not None]
    if not labelled:
        raise InputError(f"{path}: no file has a label; give --labels (a benchmark folder, or CSV/JSONL id,label)")
    labels = [i.label for i in labelled if i.label is not None]
    members = tuple(
        _metrics(d, [vote(i.probabilities.get(d), rule.threshold_for(d)) for i in labelled],
                 [i.probabilities.get(d) for i in labelled], labels, [i.seconds.get(d) for i in labelled])
        for d in detectors
    )
    decisions = [decide({d: i.probabilities.get(d) for d in detectors}, rule, i.ffaa_verdict) for i in labelled]
    ens_scores = [e.fake_votes / e.votes_cast if e.votes_cast else None for e in decisions]
    ens_seconds = [i.total_seconds if i.total_seconds is not None else sum(i.seconds.values()) for i in labelled]
    ensemble = _metrics("ensemble", [e.verdict for e in decisions], ens_scores, labels, ens_seconds)
    ffaa = None
    if any(i.ffaa_verdict is not None for i in labelled):
        ffaa = _metrics("FFAA", [i.ffaa_verdict for i in labelled], [i.ffaa_score for i in labelled], labels,
                        [None] * len(labelled))
    all_decisions = [decide({d: i.probabilities.get(d) for d in detectors}, rule, i.ffaa_verdict) for i in items]
    return RunEnsembleResult(
        kind="ensemble_run", source=str(path), rule=rule.describe(), detectors=detectors,
        titles=tuple(titles[d] for d in detectors), items=tuple(i.id for i in items),
        labels=tuple(i.label.value if i.label else None for i in items),
        probabilities=tuple(tuple(i.probabilities.get(d) for d in detectors) for i in items),
        predictions=tuple(e.verdict.value if e.verdict else None for e in all_decisions),
        members=members, ensemble=ensemble, ffaa=ffaa, fitted=fit_fusion(labelled, detectors),
        unlabelled=len(items) - len(labelled), problems=tuple(problems),
    )


def _with_labels(items: list[RunItem], labels_path: str, problems: list[str]) -> list[RunItem]:
    from dataclasses import replace

    from .label_sources import load_labels
    from .matching import PathIndex

    labels = {label.id: label for label in load_labels(labels_path).labels}
    index = PathIndex(labels)
    out = []
    for item in items:
        match = index.match(item.path)
        if match.id is None:
            problems.append(f"{item.path}: no label ({match.how})")
            out.append(item)
        else:
            out.append(replace(item, label=labels[match.id].verdict))
    return out


# -- Markdown ------------------------------------------------------------------------------------


def _p(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def to_markdown(r: RunEnsembleResult) -> str:
    out = ["# Classic detectors on a run", "", f"Source: {r.source}", "", f"Rule: {r.rule}.", ""]
    out += ["| file | actual | " + " | ".join(r.titles) + " | prediction |", "|---" * (len(r.titles) + 3) + "|"]
    for ident, label, probs, pred in zip(r.items, r.labels, r.probabilities, r.predictions):
        out.append(f"| {ident} | {label or '?'} | " + " | ".join(_p(p) for p in probs) + f" | {pred or '—'} |")
    out += ["", "| detector | accuracy | recall on fakes | recall on reals | bACC | AUC | s/file |",
            "|---|---|---|---|---|---|---|"]
    rows = [*r.members, r.ensemble] + ([r.ffaa] if r.ffaa else [])
    names = dict(zip(r.detectors, r.titles))
    for m in rows:
        out.append(f"| {names.get(m.name, m.name)} | {m.accuracy} | {m.recall_fake} | {m.recall_real} | "
                   f"{_p(m.balanced_accuracy, 3)} | {_p(m.auc, 3)} | {_p(m.seconds_per_file)} |")
    f = r.fitted
    if f is not None:
        out += ["", "## Fitted alternative (logistic regression over the members' P(fake))", ""]
        if f.accuracy is None:
            out.append(f"Not fitted: {f.note} ({f.items} such files here).")
        else:
            weights = ", ".join(f"{names.get(d, d)} {w:+.2f}" for d, w in zip(f.members, f.coefficients))
            out.append(f"{f.folds}-fold cross-validated on {f.items} files: accuracy {_p(f.accuracy, 3)}, "
                       f"bACC {_p(f.balanced_accuracy, 3)}, AUC {_p(f.auc, 3)}. Weights: {weights}; "
                       f"intercept {f.intercept:+.2f}. The vote above stays the default.")
    if r.unlabelled:
        out += ["", f"{r.unlabelled} file(s) without a label are listed but not scored."]
    if r.problems:
        out += ["", "## Problems", ""] + [f"- {p}" for p in r.problems]
    return "\n".join(out) + "\n"
