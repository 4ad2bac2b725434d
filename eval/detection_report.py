"""`ffaa eval detection`'s outputs: the result as Markdown, `items.jsonl`, and the files of an
evaluation folder (detection.json, detection.md, items.jsonl, plots)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .detection_eval import DetectionEvaluation, DetectionResult, GroupMetrics, Item

# -- Markdown ----------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def num(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def to_markdown(r: DetectionResult, plots: Sequence[str] = ()) -> str:
    c, h, s = r.coverage, r.hard, r.score
    ci = {i.name: i for i in r.intervals}

    def with_ci(name: str, value: float | None, fmt: Callable[[float | None], str] = pct) -> str:
        i = ci.get(name)
        if i is None or i.low is None:
            return fmt(value)
        return f"{fmt(value)} [{fmt(i.low)}, {fmt(i.high)}]"

    level = f"{100 * r.settings.confidence:.0f}%"
    out = ["# Detection evaluation", ""]
    out += [f"{c.images_matched} images matched to labels ({h.n_fake} fake / {h.n_real} real decided), "
            f"{c.undecided} undecided, {c.scored} with a forgery score. Positive class: fake.", ""]
    out += [f"| metric | value ({level} bootstrap interval) |", "|---|---|"]
    out += [
        f"| ACC | {with_ci('accuracy', h.accuracy)} |",
        f"| balanced ACC | {with_ci('balanced_accuracy', h.balanced_accuracy)} |",
        f"| recall on fakes (caught) | {with_ci('recall_fake', h.recall_fake)} |",
        f"| recall on reals | {with_ci('recall_real', h.recall_real)} |",
        f"| precision on fakes | {pct(h.precision_fake)} |",
        f"| F1 on fakes | {pct(h.f1_fake)} |",
        f"| ROC-AUC | {with_ci('auc', s.auc, num)} |",
        f"| AP | {with_ci('ap', s.ap, num)} |",
        f"| EER | {num(s.eer)} (threshold {num(s.eer_threshold)}) |",
        f"| ECE ({r.settings.calibration_bins} bins) | {num(s.ece)} |",
    ]
    cm = h.confusion
    out += ["", "## Confusion matrix", "", "| actual \\ predicted | real | fake |", "|---|---|---|",
            f"| real | {cm.tn} | {cm.fp} |", f"| fake | {cm.fn} | {cm.tp} |"]
    if r.per_set:
        out += ["", "## Per set", "", "| set | n | fake/real | ACC | recall fake | recall real | AUC |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {g.name} | {g.n} | {g.n_fake}/{g.n_real} | {pct(g.accuracy)} | {pct(g.recall_fake)} | "
                f"{pct(g.recall_real)} | {num(g.auc)} |" for g in r.per_set]
        if r.spread:
            sp = r.spread
            out += ["", f"sACC (population std of {sp.k} per-set ACCs) = {100 * sp.sacc:.2f} points; sample std = "
                    f"{'n/a' if sp.sacc_sample is None else f'{100 * sp.sacc_sample:.2f}'} points; mean per-set ACC "
                    f"(FFAA's overall ACC) = {pct(sp.macro_accuracy)}; "
                    f"range {pct(sp.min_accuracy)}–{pct(sp.max_accuracy)}."]
    out += ["", "## By difficulty", ""] + _group_table(r.by_difficulty)
    out += ["", "## By true forgery type", ""] + _group_table(r.by_type)
    ta = r.type_accuracy
    out += ["", f"Forgery type named correctly on {ta.correct}/{ta.n} fakes that were caught and have a known type "
            f"({pct(ta.accuracy)})."]
    if r.sweep:
        out += ["", "## Threshold sweep (fake iff score > t)", "",
                "| t | ACC | balanced ACC | recall fake | recall real | precision fake | F1 fake |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {w.threshold:g} | {pct(w.accuracy)} | {pct(w.balanced_accuracy)} | {pct(w.recall_fake)} | "
                f"{pct(w.recall_real)} | {pct(w.precision_fake)} | {pct(w.f1_fake)} |" for w in r.sweep]
    out += ["", "## Coverage", "",
            f"- prediction records: {c.prediction_records} "
            f"({c.invalid_records} invalid, {c.duplicate_records} duplicates)",
            f"- images predicted: {c.images_predicted}; matched {c.images_matched}; "
            f"without label {c.images_unmatched}; "
            f"ambiguous {c.images_ambiguous}",
            f"- labels: {c.labels} ({c.labels_invalid} invalid rows, {c.labels_duplicate} duplicates, "
            f"{c.labels_conflicting} conflicting ids dropped); without prediction {c.labels_without_prediction}",
            f"- scores: {c.scored} valid, {c.bad_scores} invalid (NaN or outside [0, 1]), {c.missing_scores} missing"]
    out += [f"- {p}" for p in c.problems]
    if r.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    out += ["", "## Provenance", ""]
    out += [f"- {p.model_id} (revision {p.model_revision or 'n/a'}, {p.backend}, {p.quantization}, {p.dtype}); "
            f"prompts {p.prompt_set}; decoder {p.decoder}; decoding {p.decoding}"
            + ("; DEMO MODEL (random weights)" if p.demo else "") + f" — {p.n_reports} reports" for p in r.provenance]
    if not r.provenance:
        out.append("- none recorded (plain predictions)")
    out += [f"- input {i.role}: {i.path} (sha256 {i.sha256 or 'n/a'})" for i in r.inputs]
    out += ["", "## Rules", ""] + [f"- {rule}" for rule in r.rules]
    if plots:
        out += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(out) + "\n"


def _group_table(rows: Sequence[GroupMetrics]) -> list[str]:
    out = ["| group | n | fake/real | undecided | ACC | recall fake | recall real |", "|---|---|---|---|---|---|---|"]
    out += [f"| {g.name} | {g.n} | {g.n_fake}/{g.n_real} | {g.undecided} | {pct(g.accuracy)} | {pct(g.recall_fake)} | "
            f"{pct(g.recall_real)} |" for g in rows]
    return out


# -- files -------------------------------------------------------------------------------------


def item_record(item: Item) -> dict[str, object]:
    """One line of `items.jsonl`: the label and the aggregated prediction of one image."""
    return {
        "id": item.id, "path": item.path, "set": item.set, "label": item.label.value,
        "label_type": item.label_type, "verdict": item.verdict.value if item.verdict else None,
        "score": item.score, "correct": item.correct, "difficulty": item.difficulty,
        "forgery_type": item.forgery_type, "n_faces": item.n_faces,
    }


def write_outputs(evaluation: DetectionEvaluation, out_dir: Path, plots: bool = True) -> list[Path]:
    """detection.json, detection.md, items.jsonl and the plots, in `out_dir`."""
    import json

    from .results import write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    plot_paths: list[Path] = []
    if plots:
        from .plots import write_detection_plots

        plot_paths = write_detection_plots(evaluation, out_dir)
    written = [write_json(evaluation.result, out_dir / "detection.json")]
    md = out_dir / "detection.md"
    md.write_text(to_markdown(evaluation.result, [str(p) for p in plot_paths]), encoding="utf-8")
    items = out_dir / "items.jsonl"
    items.write_text("".join(json.dumps(item_record(i), ensure_ascii=False) + "\n" for i in evaluation.items),
                     encoding="utf-8")
    return written + [md, items] + plot_paths
