"""The summary files of a batch folder, always rebuilt from `reports.jsonl` (the only source of
truth): `summary.md`, `summary.csv` and the self-contained `report.html`, each written
atomically. `ffaa batch --summarize-only DIR` calls `write_summaries` alone, so they can be
rebuilt at any time, even during a run. It sits above `summary` (the items and their Markdown
and CSV) and `html` (the page), which both read a `BatchSummary`.
"""

from __future__ import annotations

from pathlib import Path

from .html import render_html
from .journal import atomic_write
from .summary import BatchSummary, load_summary, to_csv, to_markdown

SUMMARY_MD = "summary.md"
SUMMARY_CSV = "summary.csv"
REPORT_HTML = "report.html"


def write_summaries(folder: str | Path) -> BatchSummary:
    """Rebuild summary.md, summary.csv and report.html from the log."""
    summary = load_summary(folder)
    for name, text in ((SUMMARY_MD, to_markdown(summary)), (SUMMARY_CSV, to_csv(summary)),
                       (REPORT_HTML, render_html(summary))):
        atomic_write(summary.folder / name, _utf8(text))
    return summary


def _utf8(text: str) -> bytes:
    """UTF-8 for display files: a file name's undecodable bytes (kept by Python as lone
    surrogates) are shown as U+FFFD rather than refused."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").encode("utf-8")
