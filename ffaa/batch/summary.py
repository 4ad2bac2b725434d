"""Summaries of a batch folder, always rebuilt from `reports.jsonl` (the only source of truth).

`load_summary` reads the committed blocks and keeps, per item, its latest analysis (a full
analysis wins over a triage verdict); this module renders them as Markdown and CSV, `html.py`
as the self-contained `report.html`, and `outputs.write_summaries` writes all three.
"""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FfaaError
from .journal import LOG_NAME, scan_log

LABELS = {"real": "real", "fake": "fake", "0": "real", "1": "fake"}


@dataclass(frozen=True)
class ItemView:
    """One item as the summaries show it: its item record, face records, video and error."""

    item: dict[str, Any]
    faces: tuple[dict[str, Any], ...]
    video: dict[str, Any] | None
    error: dict[str, Any] | None

    @property
    def batch(self) -> dict[str, Any]:
        return self.item["batch"]

    @property
    def label(self) -> str | None:
        label = self.batch.get("label")
        return LABELS.get(str(label).strip().lower()) if label is not None else None


@dataclass(frozen=True)
class BatchSummary:
    """Everything the summaries show, computed once from the log."""

    folder: Path
    items: tuple[ItemView, ...]
    runs: tuple[dict[str, Any], ...]
    dropped_lines: int = 0

    def count(self, field: str) -> Counter:
        return Counter(str(v.item.get(field)) if field in v.item else str(v.batch.get(field)) for v in self.items)

    @property
    def faces(self) -> int:
        return sum(len(v.faces) for v in self.items)

    @property
    def duplicates(self) -> list[ItemView]:
        return [v for v in self.items if len(v.batch["paths"]) > 1]

    @property
    def demo(self) -> bool:
        return any(f.get("provenance", {}).get("demo") for v in self.items for f in v.faces)

    def label_agreement(self) -> tuple[int, int]:
        """(labelled items with a verdict, of which the verdict equals the label)."""
        scored = [v for v in self.items if v.label and v.item.get("verdict")]
        return len(scored), sum(v.item["verdict"] == v.label for v in scored)


def load_summary(folder: str | Path) -> BatchSummary:
    """The latest committed analysis of every item in the folder's log."""
    folder = Path(folder)
    path = folder / LOG_NAME
    if not path.is_file():
        raise FfaaError(f"{path} not found: not a batch output folder")
    scan = scan_log(path)
    latest: dict[str, ItemView] = {}
    when: dict[str, int] = {}
    runs: list[dict[str, Any]] = []
    productive: set[int] = set()  # runs that wrote an item: a resume with nothing to do is no model's run
    for n, block in enumerate(scan.blocks):
        final = block[-1]
        if final["record"] == "run":
            runs.append(final)
            continue
        if runs:
            productive.add(len(runs) - 1)
        view = _view(block)
        known = latest.get(view.batch["key"])
        if known is None or known.batch["mode"] == "triage" or view.batch["mode"] == "full":
            latest[view.batch["key"]], when[view.batch["key"]] = view, n
    return BatchSummary(folder, _current(latest, when), tuple(r for i, r in enumerate(runs) if i in productive),
                        scan.dropped)


def _current(latest: dict[str, ItemView], when: dict[str, int]) -> tuple[ItemView, ...]:
    """The items that still describe a file: an item whose every path a later item analysed
    again (a file unreadable, missing or empty in one run and fixed before --resume, or changed
    since) is dropped. The log keeps the history; the summaries show the files as they are."""
    owner: dict[str, str] = {}
    for key in sorted(latest, key=when.__getitem__):
        for path in latest[key].batch["paths"]:
            owner[path] = key
    owners = set(owner.values())
    return tuple(v for key, v in latest.items() if key in owners)


def _view(block: tuple[dict[str, Any], ...]) -> ItemView:
    faces = tuple(r for r in block if r["record"] == "face")
    video = next((r for r in block if r["record"] == "video"), None)
    error = next((r for r in block if r["record"] == "error"), None)
    return ItemView(block[-1], faces, video, error)


# -- Markdown --------------------------------------------------------------------------------


def to_markdown(s: BatchSummary) -> str:
    """Counts first, then what needs a person's attention: flagged items, errors, videos."""
    when = time.strftime("%Y-%m-%d %H:%M")
    out = [f"# ffaa batch summary — {s.folder.name}", "",
           f"Generated {when} from `{LOG_NAME}` ({len(s.runs)} run(s); {_models(s)})."]
    if s.demo:
        out += ["", "**DEMO MODEL: the verdicts and explanations below are noise.**"]
    out += ["", "| | count |", "|---|---|"]
    out += [f"| {name} | {value} |" for name, value in overview(s)]
    flagged = sorted((v for v in s.items if v.item.get("flagged")), key=lambda v: -(v.item.get("score") or 0))
    if flagged:
        out += ["", "## Flagged as fake", "", "| item | kind | mode | score | faces | path |",
                "|---|---|---|---|---|---|"]
        out += [f"| {_md(v.batch['item_id'])} | {v.batch['kind']} | {v.batch['mode']} | {_num(v.item.get('score'))} | "
                f"{v.item.get('faces')} | {_md(v.batch['path'])} |" for v in flagged]
    failed = [v for v in s.items if v.item["status"] in ("error", "undecided", "partial")]
    if failed:
        out += ["", "## Errors, partial and undecided items", "", "| item | status | stage | reason |",
                "|---|---|---|---|"]
        out += [f"| {_md(v.batch['item_id'])} | {v.item['status']} | {v.item.get('stage') or ''} | "
                f"{_md(v.item.get('reason') or '')} |" for v in failed]
    videos = [v for v in s.items if v.video]
    if videos:
        out += ["", "## Videos", "", "| item | rule | score | verdict | frames scored / sampled | partial |",
                "|---|---|---|---|---|---|"]
        for v in videos:
            a = v.video["aggregate"]
            out.append(f"| {_md(v.batch['item_id'])} | {a['rule']} ≥ {a['threshold']:g} | {_num(a['score'])} | "
                       f"{a['verdict'] or 'none'} | {a['frames_scored']} / {a['frames_sampled']} | "
                       f"{'yes' if v.video['partial'] else 'no'} |")
    if s.duplicates:
        out += ["", "## Duplicates (analysed once)", ""]
        out += [f"- {_md(', '.join(v.batch['paths']))}" for v in s.duplicates]
    return "\n".join(out) + "\n"


def overview(s: BatchSummary) -> list[tuple[str, str]]:
    """The headline counts shared by the Markdown and the HTML report."""
    kinds, status, verdicts = s.count("kind"), s.count("status"), s.count("verdict")
    undecided_faces = sum(v.item.get("undecided") or 0 for v in s.items)
    fake, real, none = verdicts.get("fake", 0), verdicts.get("real", 0), verdicts.get("None", 0)
    rows = [
        ("items", f"{len(s.items)} ({_counts(kinds)})"),
        ("faces analysed", f"{s.faces} ({undecided_faces} undecided: no answer parsed)"),
        ("verdicts", f"fake {fake} · real {real} · none {none}"),
        ("status", _counts(status)),
        ("errors", str(status.get("error", 0))),
        ("partial videos", str(status.get("partial", 0))),
        ("duplicates", f"{len(s.duplicates)} item(s) found under more than one path"),
    ]
    labelled, agree = s.label_agreement()
    if labelled:
        rows.append(("labelled items", f"{labelled}; verdict equals label for {agree} ({agree / labelled:.1%})"))
    if s.dropped_lines:
        rows.append(("not committed", f"{s.dropped_lines} line(s) of an interrupted item (redone on --resume)"))
    return rows


def _models(s: BatchSummary) -> str:
    models = {str(r["settings"].get("assistant", {}).get("model")) for r in s.runs}
    modes = {r["settings"].get("mode") for r in s.runs}
    return f"model {', '.join(sorted(models))}; mode {', '.join(sorted(m for m in modes if m))}"


def _counts(counter: Counter) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counter.items())) or "none"


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


# -- CSV -------------------------------------------------------------------------------------

CSV_COLUMNS = ("level", "item_id", "kind", "mode", "status", "verdict", "score", "face_index", "frame_index",
               "timestamp", "forgery_type", "difficulty", "decided_by", "label", "reason", "path", "paths", "sha256",
               "detectors_verdict", "detectors_votes")


def to_csv(s: BatchSummary) -> str:
    """One row per item (level "item") followed by one per analysed face (level "face")."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for v in s.items:
        writer.writerow(_safe(_item_row(v)))
        for face in v.faces:
            writer.writerow(_safe(_face_row(v, face)))
    return buf.getvalue()


def _item_row(v: ItemView) -> dict[str, Any]:
    b = v.batch
    return {"level": "item", "item_id": b["item_id"], "kind": b["kind"], "mode": b["mode"],
            "status": v.item["status"], "verdict": v.item.get("verdict"), "score": v.item.get("score"),
            "label": b.get("label"), "reason": v.item.get("reason"), "path": b["path"],
            "paths": ";".join(b["paths"]), "sha256": b.get("sha256"),
            "detectors_verdict": v.item.get("detectors_verdict"), "detectors_votes": v.item.get("detectors_votes")}


def _face_row(v: ItemView, face: dict[str, Any]) -> dict[str, Any]:
    fb, summ = face["batch"], face["summary"]
    return {**_item_row(v), "level": "face", "status": "", "verdict": summ["verdict"],
            "score": summ["forgery_score"], "face_index": face.get("face_index"),
            "frame_index": fb.get("frame_index"), "timestamp": fb.get("timestamp"),
            "forgery_type": summ.get("forgery_type"), "difficulty": summ.get("difficulty"),
            "decided_by": face["decision"]["method"], "reason": face["decision"].get("note") or "",
            **_face_detectors(face)}


def _face_detectors(face: dict[str, Any]) -> dict[str, Any]:
    panel = face.get("detectors")
    if not panel:
        return {"detectors_verdict": None, "detectors_votes": None}
    e = panel["ensemble"]
    return {"detectors_verdict": e["verdict"], "detectors_votes": f"{e['fake_votes']}/{e['votes_cast']} fake"}


def _safe(row: dict[str, Any]) -> dict[str, Any]:
    """Neutralise text a spreadsheet would run as a formula (a path may start with "=")."""
    return {k: "'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v for k, v in row.items()}
