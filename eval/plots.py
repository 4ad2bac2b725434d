"""Detection plots as small PNGs: ROC, precision-recall, confusion matrix, reliability diagram,
score histograms by class.

matplotlib is imported on first use, and figures are drawn on their own Agg canvas (no pyplot,
no global backend switch), so plotting works headless and leaves the caller's matplotlib state
alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ffaa.lazy import require

from . import detection as m

if TYPE_CHECKING:
    from .detection_eval import DetectionEvaluation

SIZE = (4.2, 3.8)
DPI = 100
FAKE_COLOUR, REAL_COLOUR = "#c0392b", "#2471a3"


def _figure() -> tuple[Any, Any]:
    require("matplotlib", "eval", "plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def plot_roc(curve: m.RocCurve, path: Path, auc: float | None = None, eer: float | None = None,
             title: str = "ROC (positive = fake)") -> Path:
    fig, ax = _figure()
    label = "ROC" if auc is None else f"ROC, AUC = {auc:.3f}"
    ax.plot(curve.fpr, curve.tpr, color=FAKE_COLOUR, lw=1.8, label=label, drawstyle="default")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance")
    if eer is not None:
        ax.plot([eer], [1 - eer], "o", color="black", ms=4, label=f"EER = {eer:.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (reals flagged)",
           ylabel="true positive rate (fakes caught)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_pr(curve: m.PrCurve, path: Path, ap: float | None = None, base_rate: float | None = None) -> Path:
    fig, ax = _figure()
    recall = np.r_[0.0, curve.recall]
    precision = np.r_[curve.precision[0], curve.precision]
    ax.plot(recall, precision, color=FAKE_COLOUR, lw=1.8, drawstyle="steps-pre",
            label="PR" if ap is None else f"AP = {ap:.3f}")
    if base_rate is not None:
        ax.axhline(base_rate, color="grey", lw=0.8, ls="--", label=f"share of fakes = {base_rate:.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="recall on fakes", ylabel="precision on fakes",
           title="Precision-recall (positive = fake)")
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def plot_confusion(c: m.Confusion, path: Path) -> Path:
    fig, ax = _figure()
    grid = np.array(c.matrix())
    ax.imshow(grid, cmap="Blues", vmin=0, vmax=max(1, int(grid.max())))
    for (row, col), value in np.ndenumerate(grid):
        share = value / grid[row].sum() if grid[row].sum() else 0.0
        ax.text(col, row, f"{value}\n({100 * share:.0f}% of row)", ha="center", va="center",
                color="white" if value > grid.max() / 2 else "black", fontsize=9)
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["real", "fake"], yticklabels=["real", "fake"],
           xlabel="predicted", ylabel="actual", title="Confusion matrix")
    return _save(fig, path)


def plot_reliability(bins: Sequence[m.CalibrationBin], path: Path, ece: float | None = None) -> Path:
    fig, ax = _figure()
    filled = [b for b in bins if b.count]
    centres = [(b.low + b.high) / 2 for b in filled]
    widths = [b.high - b.low for b in filled]
    ax.bar(centres, [b.fraction_fake for b in filled], width=widths, edgecolor="black", color="#aed6f1",
           label="share of fakes in bin")
    ax.plot([b.mean_score for b in filled], [b.fraction_fake for b in filled], "o", color=FAKE_COLOUR, ms=3,
            label="bin: mean score vs share of fakes")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect calibration")
    title = "Reliability" if ece is None else f"Reliability, ECE = {ece:.3f}"
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="forgery score", ylabel="share of fakes", title=title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_score_histograms(y: np.ndarray, scores: np.ndarray, path: Path, threshold: float | None = 0.5,
                          bins: int = 20) -> Path:
    fig, ax = _figure()
    edges = np.linspace(0, 1, bins + 1)
    ax.hist(scores[y == 0], bins=edges, alpha=0.6, color=REAL_COLOUR, label=f"real (n={int((y == 0).sum())})")
    ax.hist(scores[y == 1], bins=edges, alpha=0.6, color=FAKE_COLOUR, label=f"fake (n={int((y == 1).sum())})")
    if threshold is not None:
        ax.axvline(threshold, color="black", lw=0.8, ls=":", label=f"t = {threshold:g}")
    ax.set(xlim=(0, 1), xlabel="forgery score", ylabel="images", title="Scores by true class")
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_detection_plots(evaluation: DetectionEvaluation, out_dir: Path) -> list[Path]:
    """Every plot the data allows; a plot whose data is undefined (one class only) is skipped."""
    r = evaluation.result
    paths = []
    if evaluation.roc is not None:
        paths.append(plot_roc(evaluation.roc, out_dir / "roc.png", r.score.auc, r.score.eer))
    if evaluation.pr is not None:
        rate = r.score.n_fake / r.score.n if r.score.n else None
        paths.append(plot_pr(evaluation.pr, out_dir / "pr.png", r.score.ap, rate))
    if r.hard.n:
        paths.append(plot_confusion(r.hard.confusion, out_dir / "confusion.png"))
    if r.calibration_bins:
        paths.append(plot_reliability(r.calibration_bins, out_dir / "reliability.png", r.score.ece))
    scored = [i for i in evaluation.items if i.score is not None]
    if scored:
        y = np.array([i.y for i in scored])
        s = np.array([i.score for i in scored], dtype=float)
        paths.append(plot_score_histograms(y, s, out_dir / "scores.png"))
    return paths
