"""Grad-CAM overlays of MIDS's decision, saved beside the reports (`ffaa analyze --heatmap DIR`)."""

from __future__ import annotations

from pathlib import Path

from .errors import FfaaError
from .parsing import mask_for_mids
from .types import ForensicReport, Verdict


def save_heatmap(decider, face_image, report: ForensicReport, out_dir: Path) -> Path | None:
    """Write the Grad-CAM overlay for the chosen answer's class; None when there is nothing to
    explain (no MIDS decision or no chosen answer)."""
    if getattr(decider, "name", "") != "mids":
        raise FfaaError("--heatmap explains MIDS's decision: give MIDS weights (--mids PATH) or use --demo")
    final = report.final
    if final is None or report.decision.verdict is None:
        return None
    from .mids.heatmap import explain, target_for

    target = target_for(report.decision.verdict is Verdict.FAKE)
    heat = explain(decider, face_image, mask_for_mids(final), target)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(report.image.path).stem
    face = "whole" if report.face_index is None else f"face{report.face_index}"
    path = out_dir / f"{stem}_{face}_heatmap.png"
    heat.overlay.save(path)
    return path
