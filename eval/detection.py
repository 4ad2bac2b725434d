"""Detection metrics as small pure functions over numpy arrays.

Conventions used everywhere in `ffaa.eval`:

- the positive class is **fake**: `y_true` holds 1 for fake and 0 for real;
- `scores` are forgery scores in [0, 1], higher meaning more likely fake;
- a hard prediction from a score is "fake iff score > threshold" (strictly greater), the rule of
  the ensemble table of the talk "Deep into DeepFakes: Draw a line b/w Real & Fake".

A metric that cannot be computed on the given data (AUC with one class only, recall on fakes
when there are none) raises `UndefinedMetricError` with the reason; callers record the reason
instead of a number. Nothing here imports more than numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

FloatArray = np.ndarray
IntArray = np.ndarray


class UndefinedMetricError(ValueError):
    """A metric has no value on this data; the message says why."""


# -- confusion-matrix metrics ------------------------------------------------------------------


@dataclass(frozen=True)
class Confusion:
    """Counts of a binary confusion matrix with fake as the positive class.

    tp: fake called fake, fn: fake called real, fp: real called fake, tn: real called real.
    """

    tp: int
    fn: int
    fp: int
    tn: int

    @property
    def n(self) -> int:
        return self.tp + self.fn + self.fp + self.tn

    @property
    def n_fake(self) -> int:
        return self.tp + self.fn

    @property
    def n_real(self) -> int:
        return self.fp + self.tn

    def matrix(self) -> list[list[int]]:
        """Rows = actual (real, fake), columns = predicted (real, fake), as sklearn orders 0/1."""
        return [[self.tn, self.fp], [self.fn, self.tp]]


def confusion(y_true: Sequence[int] | IntArray, y_pred: Sequence[int] | IntArray) -> Confusion:
    """Count the four cells; both arrays hold 0 (real) / 1 (fake)."""
    t = _binary(y_true, "y_true")
    p = _binary(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} items but y_pred has {p.size}")
    return Confusion(
        tp=int(np.sum((t == 1) & (p == 1))),
        fn=int(np.sum((t == 1) & (p == 0))),
        fp=int(np.sum((t == 0) & (p == 1))),
        tn=int(np.sum((t == 0) & (p == 0))),
    )


def accuracy(c: Confusion) -> float:
    """Share of items whose prediction equals the label."""
    if c.n == 0:
        raise UndefinedMetricError("accuracy: no items")
    return (c.tp + c.tn) / c.n


def recall_fake(c: Confusion) -> float:
    """Share of fakes caught (sensitivity, true positive rate)."""
    if c.n_fake == 0:
        raise UndefinedMetricError("recall on fakes: no fake items")
    return c.tp / c.n_fake


def recall_real(c: Confusion) -> float:
    """Share of real items called real (specificity, true negative rate)."""
    if c.n_real == 0:
        raise UndefinedMetricError("recall on reals: no real items")
    return c.tn / c.n_real


def precision_fake(c: Confusion) -> float:
    """Share of items called fake that are fake."""
    if c.tp + c.fp == 0:
        raise UndefinedMetricError("precision on fakes: nothing was called fake")
    return c.tp / (c.tp + c.fp)


def f1_fake(c: Confusion) -> float:
    """Harmonic mean of precision and recall on fakes; 0 when no fake was caught."""
    if c.n_fake == 0:
        raise UndefinedMetricError("F1 on fakes: no fake items")
    denominator = 2 * c.tp + c.fp + c.fn
    return 2 * c.tp / denominator if denominator else 0.0


def balanced_accuracy(c: Confusion) -> float:
    """Mean of the recalls on fake and on real; needs both classes."""
    return (recall_fake(c) + recall_real(c)) / 2


# -- score-based metrics -----------------------------------------------------------------------


@dataclass(frozen=True)
class RocCurve:
    """ROC points from the highest threshold down; the first point is (0, 0) at +inf."""

    fpr: FloatArray
    tpr: FloatArray
    thresholds: FloatArray


def _counts_at_thresholds(y_true: IntArray, scores: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Cumulative (false positives, true positives) when calling fake every score >= each
    distinct score, distinct scores in decreasing order."""
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], y_true[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(t)[last_of_value].astype(float)
    fps = (last_of_value + 1) - tps
    return fps, tps, s[last_of_value]


def _check_scored(y_true: Sequence[int] | IntArray,
                  scores: Sequence[float] | FloatArray) -> tuple[IntArray, FloatArray]:
    t = _binary(y_true, "y_true")
    s = np.asarray(scores, dtype=float)
    if t.shape != s.shape:
        raise ValueError(f"y_true has {t.size} items but scores has {s.size}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    return t, s


def roc_curve(
    y_true: Sequence[int] | IntArray, scores: Sequence[float] | FloatArray, drop_intermediate: bool = True
) -> RocCurve:
    """The ROC curve with one point per distinct score.

    With `drop_intermediate`, a point lying on a straight segment between its neighbours (both
    counts changing linearly) is dropped: the convention of scikit-learn's `roc_curve`, which
    DeepfakeBench's EER is computed on.
    """
    t, s = _check_scored(y_true, scores)
    n_fake, n_real = int(t.sum()), int(t.size - t.sum())
    if t.size == 0:
        raise UndefinedMetricError("ROC: no scored items")
    if n_fake == 0 or n_real == 0:
        only = "real" if n_fake == 0 else "fake"
        raise UndefinedMetricError(f"ROC: the labels contain only {only} items ({t.size}), so there is no curve")
    fps, tps, thr = _counts_at_thresholds(t, s)
    if drop_intermediate and fps.size > 2:
        bends = np.logical_or(np.diff(fps, 2) != 0, np.diff(tps, 2) != 0)
        keep = np.r_[True, bends, True]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps, tps, thr = np.r_[0.0, fps], np.r_[0.0, tps], np.r_[np.inf, thr]
    return RocCurve(fpr=fps / n_real, tpr=tps / n_fake, thresholds=thr)


def roc_auc(y_true: Sequence[int] | IntArray, scores: Sequence[float] | FloatArray) -> float:
    """Area under the ROC curve (trapezoids; ties count one half). Undefined with one class."""
    curve = roc_curve(y_true, scores, drop_intermediate=False)
    return float(np.sum(np.diff(curve.fpr) * (curve.tpr[1:] + curve.tpr[:-1]) / 2))


@dataclass(frozen=True)
class PrCurve:
    """Precision and recall on fakes at each distinct threshold, highest threshold first."""

    precision: FloatArray
    recall: FloatArray
    thresholds: FloatArray


def pr_curve(y_true: Sequence[int] | IntArray, scores: Sequence[float] | FloatArray) -> PrCurve:
    """Precision/recall of "fake iff score >= threshold" for every distinct score."""
    t, s = _check_scored(y_true, scores)
    if t.sum() == 0:
        raise UndefinedMetricError(f"precision-recall: there are no fake items ({t.size} scored)")
    fps, tps, thr = _counts_at_thresholds(t, s)
    return PrCurve(precision=tps / (tps + fps), recall=tps / t.sum(), thresholds=thr)


def average_precision(y_true: Sequence[int] | IntArray, scores: Sequence[float] | FloatArray) -> float:
    """AP = sum over thresholds of (recall gain) x precision, without interpolation
    (scikit-learn's `average_precision_score`)."""
    curve = pr_curve(y_true, scores)
    gains = np.diff(np.r_[0.0, curve.recall])
    return float(np.sum(gains * curve.precision))


@dataclass(frozen=True)
class EqualErrorRate:
    """DeepfakeBench's EER: the FPR at the ROC point where |FNR - FPR| is smallest."""

    eer: float
    threshold: float
    fnr_at_threshold: float


def equal_error_rate(y_true: Sequence[int] | IntArray, scores: Sequence[float] | FloatArray) -> EqualErrorRate:
    """EER as DeepfakeBench computes it: on scikit-learn-style ROC vertices (intermediate
    collinear points dropped), FNR = 1 - TPR; the first point minimising |FNR - FPR| gives the
    EER as its FPR. No interpolation between vertices."""
    curve = roc_curve(y_true, scores, drop_intermediate=True)
    fnr = 1.0 - curve.tpr
    i = int(np.argmin(np.abs(fnr - curve.fpr)))
    return EqualErrorRate(eer=float(curve.fpr[i]), threshold=float(curve.thresholds[i]), fnr_at_threshold=float(fnr[i]))


@dataclass(frozen=True)
class CalibrationBin:
    """One bin of a reliability diagram: (low, high] except the first, which includes 0."""

    low: float
    high: float
    count: int
    mean_score: float | None
    fraction_fake: float | None


@dataclass(frozen=True)
class Calibration:
    """Expected calibration error of the forgery score read as P(fake), and its bins."""

    ece: float
    bins: tuple[CalibrationBin, ...]


def calibration(
    y_true: Sequence[int] | IntArray, scores: Sequence[float] | FloatArray, n_bins: int = 10
) -> Calibration:
    """ECE = sum over equal-width bins of (bin share) x |fraction of fakes - mean score|.

    Bins are right-closed like scikit-learn's `calibration_curve(strategy="uniform")`; empty
    bins contribute nothing.
    """
    t, s = _check_scored(y_true, scores)
    if t.size == 0:
        raise UndefinedMetricError("calibration: no scored items")
    if np.any((s < 0) | (s > 1)):
        raise ValueError("calibration needs scores in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], s, side="left")
    bins, ece = [], 0.0
    for b in range(n_bins):
        mask = ids == b
        count = int(mask.sum())
        if count:
            mean_score, frac = float(s[mask].mean()), float(t[mask].mean())
            ece += count / t.size * abs(frac - mean_score)
            bins.append(CalibrationBin(float(edges[b]), float(edges[b + 1]), count, mean_score, frac))
        else:
            bins.append(CalibrationBin(float(edges[b]), float(edges[b + 1]), 0, None, None))
    return Calibration(ece=float(ece), bins=tuple(bins))


def predict(scores: Sequence[float] | FloatArray, threshold: float) -> IntArray:
    """Hard predictions: fake (1) iff score > threshold."""
    return (np.asarray(scores, dtype=float) > threshold).astype(int)


# -- spread over sets --------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Spread of per-set accuracies.

    `population_std` (divide by k) is what ffaa reports as sACC; `sample_std` (divide by k-1)
    is given beside it because FFAA does not say which it used. `macro_mean` is the unweighted
    mean over sets, which is how FFAA's overall ACC relates to its per-set ACCs.
    """

    k: int
    macro_mean: float
    population_std: float
    sample_std: float | None
    min: float
    max: float


def spread(values: Sequence[float]) -> Spread:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise UndefinedMetricError("spread: no per-set values")
    return Spread(
        k=int(v.size),
        macro_mean=float(v.mean()),
        population_std=float(v.std(ddof=0)),
        sample_std=float(v.std(ddof=1)) if v.size > 1 else None,
        min=float(v.min()),
        max=float(v.max()),
    )


# -- bootstrap ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval. `n_valid` < `n_resamples` when the metric was undefined
    on some resamples (e.g. a resample without any fake), which were left out."""

    low: float
    high: float
    level: float
    n_resamples: int
    n_valid: int


def bootstrap_interval(
    metric: Callable[[IntArray], float],
    n_items: int,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile interval of `metric(indices)` over resamples of item indices with replacement.

    `metric` receives an index array and returns a float or raises UndefinedMetricError. The
    generator is seeded, so the same data and seed give the same interval.
    """
    if n_items == 0:
        raise UndefinedMetricError("bootstrap: no items")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        try:
            values.append(metric(rng.integers(0, n_items, n_items)))
        except UndefinedMetricError:
            continue
    if not values:
        raise UndefinedMetricError(f"bootstrap: the metric was undefined on all {n_resamples} resamples")
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return Interval(float(low), float(high), level, n_resamples, len(values))


# -- threshold sweep ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepRow:
    """Hard-decision metrics of "fake iff score > threshold"; None where undefined."""

    threshold: float
    accuracy: float
    balanced_accuracy: float | None
    recall_fake: float | None
    recall_real: float | None
    precision_fake: float | None
    f1_fake: float | None


def threshold_sweep(
    y_true: Sequence[int] | IntArray, scores: Sequence[float] | FloatArray, thresholds: Sequence[float]
) -> tuple[SweepRow, ...]:
    t, s = _check_scored(y_true, scores)
    rows = []
    for thr in thresholds:
        c = confusion(t, predict(s, thr))
        rows.append(
            SweepRow(
                threshold=float(thr),
                accuracy=accuracy(c),
                balanced_accuracy=defined(balanced_accuracy, c),
                recall_fake=defined(recall_fake, c),
                recall_real=defined(recall_real, c),
                precision_fake=defined(precision_fake, c),
                f1_fake=defined(f1_fake, c),
            )
        )
    return tuple(rows)


def defined(metric: Callable[..., float], *args: object) -> float | None:
    """The metric's value, or None when it is undefined on this data."""
    try:
        return metric(*args)
    except UndefinedMetricError:
        return None


def _binary(values: Sequence[int] | IntArray, name: str) -> IntArray:
    a = np.asarray(values)
    if a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 (real) and 1 (fake)")
    return a.astype(int)
