"""The talk's table from detection records: per file, each detector's P(fake) and the
ensemble's prediction; with labels, each detector's accuracy, recall on fakes and seconds per
file. Plain text for the terminal, CSV and Markdown for files. No torch.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..types import Verdict


@dataclass(frozen=True)
class Row:
    """One line of the table: a file, or one face/person of a file."""

    item: str
    probabilities: tuple[float | None, ...]
    votes: tuple[str | None, ...]
    prediction: str | None
    fake_votes: int
    votes_cast: int
    label: str | None = None
    sub: bool = False  # a face or person line under its file


def _panel_row(name: str, panel: dict[str, Any] | None, detectors: Sequence[str], label: str | None,
               sub: bool = False) -> Row:
    if panel is None:
        return Row(name, (None,) * len(detectors), (None,) * len(detectors), None, 0, 0, label, sub)
    by_name = {m["detector"]: m for m in panel["members"]}
    probs = tuple(by_name.get(d, {}).get("probability") for d in detectors)
    votes = tuple(by_name.get(d, {}).get("vote") for d in detectors)
    e = panel["ensemble"]
    return Row(name, probs, votes, e.get("verdict"), e["fake_votes"], e["votes_cast"], label, sub)


def detector_columns(records: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(name, title) of every detector in the records, in first-seen order."""
    seen: dict[str, str] = {}
    for rec in records:
        for panel in _panels(rec):
            for m in panel["members"]:
                seen.setdefault(m["detector"], m.get("title", m["detector"]))
    return list(seen.items())


def _panels(rec: dict[str, Any]) -> list[dict[str, Any]]:
    found = [rec["panel"]] if rec.get("panel") else []
    found += [f["panel"] for f in rec.get("faces", ())]
    if rec.get("video"):
        found += [t["panel"] for t in rec["video"]["tracks"]]
    return found


def rows(records: Sequence[dict[str, Any]], detectors: Sequence[str]) -> list[Row]:
    """A row per file, plus a row per face or person when a file has several."""
    out = []
    for rec in records:
        out.append(_panel_row(rec["id"], rec.get("panel"), detectors, rec.get("label")))
        subs = []
        if rec.get("video") and len(rec["video"]["tracks"]) > 1:
            subs = [(f"person {t['track_id']} ({len(t['frames'])} frames)", t["panel"]) for t in rec["video"]["tracks"]]
        elif len(rec.get("faces", ())) > 1:
            subs = [(f"face {f['face_index']}", f["panel"]) for f in rec["faces"]]
        out += [_panel_row("  " + n, p, detectors, None, sub=True) for n, p in subs]
    return out


def _cell(p: float | None, vote: str | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.2f}" + ("*" if vote == Verdict.FAKE.value else "")


def _prediction(r: Row) -> str:
    if r.prediction is None:
        return "no verdict"
    return f"{r.prediction} ({r.fake_votes}/{r.votes_cast} fake)"


def text_table(records: Sequence[dict[str, Any]], errors: Sequence[dict[str, Any]] = ()) -> str:
    """The table for a terminal, with a legend; files that failed are listed below it."""
    columns = detector_columns(records)
    names, titles = [c[0] for c in columns], [c[1] for c in columns]
    header = ["file", *titles, "prediction"]
    body = [[r.item, *(_cell(p, v) for p, v in zip(r.probabilities, r.votes)), _prediction(r)]
            for r in rows(records, names)]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)] if body else [len(h) for h in header]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("* votes fake (P > its threshold); n/a: no probability (failed, or a clip detector on a still image)")
    lines += [f"error: {e['id']}: {e['error']}" for e in errors]
    return "\n".join(lines)


def csv_table(records: Sequence[dict[str, Any]]) -> str:
    """One line per file and per face/person: id, label, each detector's P(fake), prediction."""
    columns = detector_columns(records)
    names = [c[0] for c in columns]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", "label", *names, "prediction", "fake_votes", "votes_cast"])
    for r in rows(records, names):
        writer.writerow([r.item.strip(), r.label or "", *("" if p is None else f"{p:.6f}" for p in r.probabilities),
                         r.prediction or "", r.fake_votes, r.votes_cast])
    return buf.getvalue()


def scores_table(records: Sequence[dict[str, Any]]) -> str:
    """With labels: accuracy, recall on fakes and on reals, and seconds per file, per detector
    and for the ensemble (the talk's second table). '' when no record has a label."""
    from ..eval.ensemble import score_voter
    from ..eval.labels import parse_label

    labelled = []
    for rec in records:
        try:
            labelled.append((rec, parse_label(rec["label"])[0]))
        except (ValueError, TypeError, KeyError):
            continue
    if not labelled:
        return ""
    columns = detector_columns([r for r, _ in labelled])
    labels = [y for _, y in labelled]
    out = ["detector                 accuracy  recall fake  recall real  s/file"]
    for name, title in columns:
        votes, seconds = [], []
        for rec, _ in labelled:
            member = next((m for m in (rec.get("panel") or {}).get("members", ()) if m["detector"] == name), None)
            votes.append(Verdict(member["vote"]) if member and member.get("vote") else None)
            seconds.append(_member_seconds(rec, name))
        s = score_voter(name, votes, labels)
        out.append(f"{title:<24} {str(s.accuracy):>8}  {str(s.recall_fake):>11}  {str(s.recall_real):>11}  "
                   f"{sum(seconds) / len(seconds):6.2f}")
    ens = [Verdict(r["verdict"]) if r.get("verdict") else None for r, _ in labelled]
    s = score_voter("ensemble", ens, labels)
    total = sum(r.get("seconds", 0.0) for r, _ in labelled) / len(labelled)
    out.append(f"{'ensemble':<24} {str(s.accuracy):>8}  {str(s.recall_fake):>11}  "
               f"{str(s.recall_real):>11}  {total:6.2f}")
    return "\n".join(out)


def _member_seconds(rec: dict[str, Any], name: str) -> float:
    """A detector's network time over every face or track of a file."""
    panels = [f["panel"] for f in rec.get("faces", ())]
    if rec.get("video"):
        panels = [t["panel"] for t in rec["video"]["tracks"]]
    return sum(m.get("seconds", 0.0) for p in panels for m in p["members"] if m["detector"] == name)
