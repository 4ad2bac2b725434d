"""`ffaa eval detection`: match predictions to labels, compute every detection metric, and
render the result as JSON, Markdown and plots.

Hard-decision metrics (ACC, recalls, confusion matrix...) use the assistant's verdict; ranking
metrics (AUC, AP, EER, calibration, threshold sweep) use its forgery score. Items are images
(faces aggregated, see `predictions.AGGREGATION_RULE`). Undecided images are left out of the
hard-decision metrics and counted (`coverage`); images without a valid score are left out of
the ranking metrics and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ffaa.types import Verdict

from . import detection as m
from .labels import Label, LabelSet
from .matching import PathIndex
from .predictions import (
    AGGREGATION_RULE,
    ImagePrediction,
    PredictionSet,
    aggregate_images,
)
from .results import InputFile, ProvenanceGroup

DEFAULT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
NO_SET = "(no set)"
MATCHING_RULE = (
    "report path -> label id: the longest label id that is a trailing run of the path's components; "
    "else the one label id that ends with the whole path; else unmatched (see ffaa.eval.matching)"
)
SACC_RULE = ("sACC = population standard deviation (divide by k) of the per-set accuracies; "
             "the sample std (k-1) is given beside it")


@dataclass(frozen=True)
class EvaluationOptions:
    n_bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0
    calibration_bins: int = 10
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS


@dataclass(frozen=True)
class Item:
    """One evaluated image: its label and the aggregated prediction."""

    id: str
    path: str
    set: str | None
    label: Verdict
    label_type: str | None
    verdict: Verdict | None
    score: float | None
    difficulty: str | None
    forgery_type: str | None
    n_faces: int

    @property
    def y(self) -> int:
        return int(self.label is Verdict.FAKE)

    @property
    def correct(self) -> bool | None:
        return None if self.verdict is None else self.verdict is self.label


@dataclass(frozen=True)
class Coverage:
    """What was read, what matched, and what was left out, with reasons."""

    prediction_records: int
    invalid_records: int
    duplicate_records: int
    images_predicted: int
    images_matched: int
    images_unmatched: int
    images_ambiguous: int
    labels: int
    labels_invalid: int
    labels_duplicate: int
    labels_conflicting: int
    labels_without_prediction: int
    undecided: int
    scored: int
    bad_scores: int
    missing_scores: int
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class HardMetrics:
    """Metrics of the verdicts (decided items only). None = undefined; `undefined` says why."""

    n: int
    n_fake: int
    n_real: int
    confusion: m.Confusion
    accuracy: float | None
    balanced_accuracy: float | None
    precision_fake: float | None
    recall_fake: float | None
    f1_fake: float | None
    recall_real: float | None
    undefined: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScoreMetrics:
    """Metrics of the forgery score (items with a valid score only)."""

    n: int
    n_fake: int
    n_real: int
    auc: float | None
    ap: float | None
    eer: float | None
    eer_threshold: float | None
    ece: float | None
    undefined: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupMetrics:
    """Accuracy within a group of items (a set, a difficulty, a forgery type)."""

    name: str
    n: int
    n_fake: int
    n_real: int
    undecided: int
    accuracy: float | None
    recall_fake: float | None
    recall_real: float | None
    auc: float | None = None


@dataclass(frozen=True)
class SetSpread:
    """Per-set accuracy spread; see `detection.Spread`. `sacc` is the population std."""

    k: int
    sacc: float | None
    sacc_sample: float | None
    macro_accuracy: float | None
    min_accuracy: float | None
    max_accuracy: float | None
    rule: str = SACC_RULE


@dataclass(frozen=True)
class NamedInterval:
    name: str
    value: float | None
    low: float | None
    high: float | None
    n_valid: int
    note: str = ""


@dataclass(frozen=True)
class TypeAccuracy:
    """Among fakes with a known type that were called fake: how often the type was right."""

    n: int
    correct: int
    accuracy: float | None


@dataclass(frozen=True)
class DetectionResult:
    kind: str
    inputs: tuple[InputFile, ...]
    rules: tuple[str, ...]
    coverage: Coverage
    hard: HardMetrics
    score: ScoreMetrics
    intervals: tuple[NamedInterval, ...]
    per_set: tuple[GroupMetrics, ...]
    spread: SetSpread | None
    by_difficulty: tuple[GroupMetrics, ...]
    by_type: tuple[GroupMetrics, ...]
    type_accuracy: TypeAccuracy
    sweep: tuple[m.SweepRow, ...]
    best_threshold: m.SweepRow | None
    calibration_bins: tuple[m.CalibrationBin, ...]
    provenance: tuple[ProvenanceGroup, ...]
    settings: EvaluationOptions
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DetectionEvaluation:
    """The result plus the per-item data plots and `items.jsonl` are made from."""

    result: DetectionResult
    items: tuple[Item, ...]
    roc: m.RocCurve | None = None
    pr: m.PrCurve | None = None


# -- matching ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matched:
    items: tuple[Item, ...]
    unmatched: tuple[str, ...]
    ambiguous: tuple[str, ...]
    labels_without_prediction: tuple[str, ...]


def match_items(images: Sequence[ImagePrediction], labels: Sequence[Label]) -> Matched:
    """Pair each image prediction with its label (matching rule in `ffaa.eval.matching`).
    Two predictions matching the same label: the later one is used, the earlier counted as
    unmatched (it would otherwise be counted twice)."""
    index = PathIndex(lab.id for lab in labels)
    by_id = {lab.id: lab for lab in labels}
    chosen: dict[str, Item] = {}
    unmatched, ambiguous = [], []
    for image in images:
        hit = index.match(image.path)
        if hit.id is None:
            (ambiguous if hit.how == "ambiguous" else unmatched).append(image.path)
            continue
        if hit.id in chosen:
            unmatched.append(chosen[hit.id].path)
        lab = by_id[hit.id]
        chosen[hit.id] = Item(lab.id, image.path, lab.set, lab.verdict, lab.forgery_type, image.verdict,
                              image.score, image.difficulty, image.forgery_type, image.n_faces)
    missing = tuple(lab.id for lab in labels if lab.id not in chosen)
    return Matched(tuple(chosen.values()), tuple(unmatched), tuple(ambiguous), missing)


# -- metric sections ---------------------------------------------------------------------------


def _undefined(metrics: dict[str, Callable[[], float]]) -> tuple[dict[str, float | None], tuple[str, ...]]:
    values: dict[str, float | None] = {}
    reasons = []
    for name, fn in metrics.items():
        try:
            values[name] = fn()
        except m.UndefinedMetricError as exc:
            values[name] = None
            reasons.append(str(exc))
    return values, tuple(reasons)


def hard_metrics(items: Sequence[Item]) -> HardMetrics:
    decided = [i for i in items if i.verdict is not None]
    y = [i.y for i in decided]
    pred = [int(i.verdict is Verdict.FAKE) for i in decided]
    c = m.confusion(y, pred)
    v, why = _undefined({
        "accuracy": lambda: m.accuracy(c),
        "balanced_accuracy": lambda: m.balanced_accuracy(c),
        "precision_fake": lambda: m.precision_fake(c),
        "recall_fake": lambda: m.recall_fake(c),
        "f1_fake": lambda: m.f1_fake(c),
        "recall_real": lambda: m.recall_real(c),
    })
    return HardMetrics(c.n, c.n_fake, c.n_real, c, **v, undefined=why)


def _scored(items: Sequence[Item]) -> tuple[np.ndarray, np.ndarray]:
    scored = [i for i in items if i.score is not None]
    return np.array([i.y for i in scored], dtype=int), np.array([i.score for i in scored], dtype=float)


def score_metrics(items: Sequence[Item], bins: int) -> tuple[ScoreMetrics, m.Calibration | None]:
    y, s = _scored(items)
    values, why = _undefined({
        "auc": lambda: m.roc_auc(y, s),
        "ap": lambda: m.average_precision(y, s),
    })
    try:
        e = m.equal_error_rate(y, s)
        eer, eer_thr = e.eer, e.threshold
    except m.UndefinedMetricError as exc:
        eer, eer_thr = None, None
        why += (f"EER: {exc}",)
    try:
        cal = m.calibration(y, s, bins)
    except m.UndefinedMetricError as exc:
        cal = None
        why += (str(exc),)
    n_fake = int(y.sum())
    return ScoreMetrics(int(y.size), n_fake, int(y.size) - n_fake, values["auc"], values["ap"], eer, eer_thr,
                        cal.ece if cal else None, why), cal


def group_metrics(name: str, items: Sequence[Item], with_auc: bool = False) -> GroupMetrics:
    hard = hard_metrics(items)
    auc = None
    if with_auc:
        y, s = _scored(items)
        auc = m.defined(m.roc_auc, y, s)
    n_fake = sum(i.y for i in items)
    return GroupMetrics(name, len(items), n_fake, len(items) - n_fake, sum(i.verdict is None for i in items),
                        hard.accuracy, hard.recall_fake, hard.recall_real, auc)


def groups(items: Sequence[Item], key: Callable[[Item], str], with_auc: bool = False) -> tuple[GroupMetrics, ...]:
    buckets: dict[str, list[Item]] = {}
    for item in items:
        buckets.setdefault(key(item), []).append(item)
    return tuple(group_metrics(k, v, with_auc) for k, v in sorted(buckets.items()))


def set_spread(per_set: Sequence[GroupMetrics]) -> SetSpread | None:
    accs = [g.accuracy for g in per_set if g.accuracy is not None and g.name != NO_SET]
    if not accs:
        return None
    s = m.spread(accs)
    return SetSpread(s.k, s.population_std, s.sample_std, s.macro_mean, s.min, s.max)


def type_of(item: Item) -> str:
    if item.label is Verdict.REAL:
        return "real"
    return item.label_type or "fake (type unknown)"


def type_accuracy(items: Sequence[Item]) -> TypeAccuracy:
    eligible = [i for i in items if i.label is Verdict.FAKE and i.label_type and i.verdict is Verdict.FAKE]
    correct = sum(i.forgery_type is not None and i.forgery_type.lower() == i.label_type.lower() for i in eligible)
    return TypeAccuracy(len(eligible), correct, correct / len(eligible) if eligible else None)


def intervals(items: Sequence[Item], options: EvaluationOptions) -> tuple[NamedInterval, ...]:
    """Seeded percentile bootstrap over images for the headline metrics."""
    if options.n_bootstrap <= 0:
        return ()
    decided = [i for i in items if i.verdict is not None]
    yd = np.array([i.y for i in decided], dtype=int)
    pd = np.array([int(i.verdict is Verdict.FAKE) for i in decided], dtype=int)
    ys, ss = _scored(items)

    def on_hard(fn: Callable[[m.Confusion], float]) -> Callable[[np.ndarray], float]:
        return lambda idx: fn(m.confusion(yd[idx], pd[idx]))

    def on_score(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[np.ndarray], float]:
        return lambda idx: fn(ys[idx], ss[idx])

    plan: list[tuple[str, Callable[[np.ndarray], float], int]] = [
        ("accuracy", on_hard(m.accuracy), yd.size),
        ("balanced_accuracy", on_hard(m.balanced_accuracy), yd.size),
        ("recall_fake", on_hard(m.recall_fake), yd.size),
        ("recall_real", on_hard(m.recall_real), yd.size),
        ("auc", on_score(m.roc_auc), ys.size),
        ("ap", on_score(m.average_precision), ys.size),
    ]
    out = []
    for name, fn, n in plan:
        full = np.arange(n)
        value = m.defined(fn, full) if n else None
        try:
            iv = m.bootstrap_interval(fn, n, options.n_bootstrap, options.confidence, options.seed)
        except m.UndefinedMetricError as exc:
            out.append(NamedInterval(name, value, None, None, 0, str(exc)))
            continue
        note = "" if iv.n_valid == iv.n_resamples else f"undefined on {iv.n_resamples - iv.n_valid} resamples, left out"
        out.append(NamedInterval(name, value, iv.low, iv.high, iv.n_valid, note))
    return tuple(out)


def sweep(items: Sequence[Item], thresholds: Sequence[float]) -> tuple[tuple[m.SweepRow, ...], m.SweepRow | None]:
    y, s = _scored(items)
    if y.size == 0:
        return (), None
    rows = m.threshold_sweep(y, s, thresholds)
    ranked = [r for r in rows if r.balanced_accuracy is not None]
    best = max(ranked, key=lambda r: r.balanced_accuracy) if ranked else None
    return rows, best


# -- the flow ----------------------------------------------------------------------------------


def evaluate_detection(
    predictions: PredictionSet,
    labels: LabelSet,
    options: EvaluationOptions | None = None,
    inputs: tuple[InputFile, ...] = (),
) -> DetectionEvaluation:
    """Every detection metric of `predictions` against `labels`."""
    options = options or EvaluationOptions()
    images = aggregate_images(predictions.faces)
    matched = match_items(images, labels.labels)
    items = matched.items
    hard = hard_metrics(items)
    score, cal = score_metrics(items, options.calibration_bins)
    per_set = groups(items, lambda i: i.set or NO_SET, with_auc=True) if any(i.set for i in items) else ()
    rows, best = sweep(items, options.thresholds)
    y, s = _scored(items)
    coverage = _coverage(predictions, labels, images, matched, items)
    result = DetectionResult(
        kind="detection",
        inputs=inputs,
        rules=(MATCHING_RULE, AGGREGATION_RULE, "positive class = fake; a score calls fake iff score > threshold",
               SACC_RULE),
        coverage=coverage,
        hard=hard,
        score=score,
        intervals=intervals(items, options),
        per_set=per_set,
        spread=set_spread(per_set),
        by_difficulty=groups(items, lambda i: i.difficulty or "unknown"),
        by_type=groups(items, type_of),
        type_accuracy=type_accuracy(items),
        sweep=rows,
        best_threshold=best,
        calibration_bins=cal.bins if cal else (),
        provenance=predictions.provenance,
        settings=options,
        notes=_notes(coverage, hard, score, best),
    )
    return DetectionEvaluation(
        result, items,
        roc=_try(lambda: m.roc_curve(y, s, drop_intermediate=False)),
        pr=_try(lambda: m.pr_curve(y, s)),
    )


def _try(fn: Callable[[], object]):
    try:
        return fn()
    except m.UndefinedMetricError:
        return None


def _coverage(predictions: PredictionSet, labels: LabelSet, images: Sequence[ImagePrediction],
              matched: Matched, items: Sequence[Item]) -> Coverage:
    problems = list(predictions.problems) + list(labels.problems)
    problems += [f"no label for predicted image: {p}" for p in matched.unmatched[:10]]
    problems += [f"predicted image matches several labels: {p}" for p in matched.ambiguous[:10]]
    problems += [f"no prediction for labelled image: {i}" for i in matched.labels_without_prediction[:10]]
    return Coverage(
        prediction_records=predictions.records,
        invalid_records=predictions.invalid,
        duplicate_records=predictions.duplicates,
        images_predicted=len(images),
        images_matched=len(items),
        images_unmatched=len(matched.unmatched),
        images_ambiguous=len(matched.ambiguous),
        labels=len(labels.labels),
        labels_invalid=labels.invalid,
        labels_duplicate=labels.duplicates,
        labels_conflicting=labels.conflicting,
        labels_without_prediction=len(matched.labels_without_prediction),
        undecided=sum(i.verdict is None for i in items),
        scored=sum(i.score is not None for i in items),
        bad_scores=predictions.bad_scores,
        missing_scores=predictions.missing_scores,
        problems=tuple(problems),
    )


def _notes(c: Coverage, hard: HardMetrics, score: ScoreMetrics, best: m.SweepRow | None) -> tuple[str, ...]:
    notes = []
    if c.images_matched == 0:
        notes.append("no prediction matched a label: check that report paths end with the label ids")
    if c.images_unmatched or c.labels_without_prediction:
        notes.append(f"{c.images_unmatched} predicted images had no label and {c.labels_without_prediction} "
                     "labelled images had no prediction; both are excluded")
    if c.undecided:
        notes.append(f"{c.undecided} matched images were undecided and are excluded from ACC and the recalls "
                     f"(coverage {c.images_matched - c.undecided}/{c.images_matched})")
    notes += list(hard.undefined) + [u for u in score.undefined if u not in hard.undefined]
    if hard.n and min(hard.n_fake, hard.n_real) / hard.n < 0.2:
        notes.append("skewed labels: accuracy is dominated by the larger class; "
                     "read recall on fakes and balanced accuracy")
    if best is not None:
        notes.append(f"the threshold with the best balanced accuracy ({best.threshold:g}) "
                     "was chosen on this same data: "
                     "an optimistic figure, not a tuned operating point")
    return tuple(dict.fromkeys(notes))  # balanced ACC fails for the same reason as a recall: say it once
