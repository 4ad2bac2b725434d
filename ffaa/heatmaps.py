"""Grad-CAM overlays of MIDS's decision, saved beside the reports (`ffaa analyze --heatmap DIR`)."""

from __future__ import annotations

from pathlib import Path

from .errors import FfaaError
from .parsing import mask_for_mids
from .types import ForensicReport, Verdict


def save_heatmap(decider, face_image, report: ForensicReport, out_dir: Path) -> Path | None:
    """Write the Grad-CAM overlay for the chosen answer's class, drawn on `face_image` at its own
    size; None when there is nothing to explain (no MIDS decision or no chosen answer)."""
    if not decider.explains:
        raise FfaaError("--heatmap explains MIDS's decision: give MIDS weights (--mids PATH) or use --demo")
    final = report.final
    if final is None or report.decision.verdict is None:
        return None
    from .mids.heatmap import explain, target_for

    target = target_for(report.decision.verdict is Verdict.FAKE)
    heat = explain(decider, face_image, mask_for_mids(final), target)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / heatmap_name(report)
    heat.overlay.save(path)
    return path


def heatmap_name(report: ForensicReport) -> str:
    """`<stem>_<8 hex of the image's sha256>_<face>_heatmap.png`: images of the same name in
    different folders do not overwrite each other, and the same image always gets the same name."""
    face = "whole" if report.face_index is None else f"face{report.face_index}"
    return f"{Path(report.image.path).stem}_{report.image.sha256[:8]}_{face}_heatmap.png"
