"""The downloadable case report (JSON, Markdown, self-contained HTML) and where it is written.

The files are rewritten after every answer, so a download always holds the whole conversation.
They live in a private work folder; gradio copies what a page may download into its own cache,
which `delete_cache` empties on a schedule. The work folder is pruned on the same schedule and
removed when the process exits.
"""

from __future__ import annotations

import atexit
import base64
import io
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..report import report_to_dict, to_markdown
from .case import Case, Turn
from .render import annotated_image, detectors_html, esc, facts, verdict_word

CASE_SCHEMA = "ffaa.case/1"


@dataclass(frozen=True)
class ReportFiles:
    """The three downloads of one case."""

    json: Path
    markdown: Path
    html: Path


class Workspace:
    """A private temporary folder with one sub-folder per case, pruned by age."""

    def __init__(self, max_age_s: float = 3600.0, root: Path | None = None):
        """Without `root`, a fresh temporary folder that is removed when the process exits."""
        self.max_age_s = max_age_s
        if root is None:
            self.root = Path(tempfile.mkdtemp(prefix="ffaa-app-"))
            atexit.register(shutil.rmtree, self.root, ignore_errors=True)
        else:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)

    def case_dir(self, case_id: str) -> Path:
        self.prune()
        folder = self.root / case_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def prune(self) -> None:
        """Remove case folders untouched for longer than `max_age_s` (0 keeps everything)."""
        if self.max_age_s <= 0:
            return
        limit = time.time() - self.max_age_s
        for folder in self.root.iterdir():
            if folder.is_dir() and folder.stat().st_mtime < limit:
                shutil.rmtree(folder, ignore_errors=True)


def write_report_files(case: Case, workspace: Workspace, demo: bool = False) -> ReportFiles:
    """Write (or overwrite) the case's three report files."""
    folder = workspace.case_dir(case.case_id)
    stem = f"ffaa-{_safe_stem(case.name)}-{case.case_id}"
    files = ReportFiles(folder / f"{stem}.json", folder / f"{stem}.md", folder / f"{stem}.html")
    files.json.write_text(json.dumps(case_record(case), indent=2, ensure_ascii=False), encoding="utf-8")
    files.markdown.write_text(case_markdown(case), encoding="utf-8")
    files.html.write_text(case_html(case, demo), encoding="utf-8")
    return files


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem).strip("_")
    return stem[:40] or "image"


def _turn_dict(turn: Turn) -> dict[str, Any]:
    return {"question": turn.question, "answer": turn.answer,
            "first_token_s": turn.first_token_s, "total_s": turn.total_s}


def case_record(case: Case) -> dict[str, Any]:
    """The JSON download: every face's full report and the conversation after the analysis."""
    return {
        "schema": CASE_SCHEMA,
        "image": case.name,
        "question": case.question,
        "reports": [report_to_dict(r) for r in case.reports],
        "conversation": [
            {"face_index": case.threads[i].report.face_index, **_turn_dict(t)} for i, t in case.turns
        ],
    }


def case_markdown(case: Case) -> str:
    """The Markdown download: each face's report, then the conversation."""
    parts = [to_markdown(r) for r in case.reports]
    if case.turns:
        lines = ["# Conversation", ""]
        for index, turn in case.turns:
            lines += [f"**{case.threads[index].label} — Q:** {turn.question}", "", turn.answer, ""]
        parts.append("\n".join(lines))
    return "\n".join(parts)


def image_data_uri(case: Case) -> str:
    """The boxed image as an inline JPEG, so the HTML report is a single file."""
    buf = io.BytesIO()
    annotated_image(case).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def case_html(case: Case, demo: bool = False) -> str:
    """The HTML download: a self-contained page, every piece of model text escaped."""
    body = [f"<h1>{esc(case.name)}</h1>", f'<img src="{image_data_uri(case)}" alt="analysed image with face boxes">']
    if demo or any(r.provenance.demo for r in case.reports):
        body.append('<p class="demo">Demo mode: these answers do not come from a trained model.</p>')
    body += [f'<p class="note">{esc(n)}</p>' for n in case.info.notes]
    body += [_face_section(case, index) for index in range(len(case.threads))]
    p = case.reports[0].provenance if case.reports else None
    if p is not None:
        body.append(
            f"<footer>model {esc(p.model_id)} ({esc(p.backend)}, {esc(p.quantization)}, {esc(p.dtype)} on "
            f"{esc(p.device)}) · prompts {esc(p.prompt_set)} · decider {esc(p.decoder)} · "
            f"image sha256 {esc(case.info.sha256)}</footer>"
        )
    return _PAGE.format(title=esc(f"FFAA report — {case.name}"), body="\n".join(body))


def _face_section(case: Case, index: int) -> str:
    thread = case.threads[index]
    report, final = thread.report, thread.report.final
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts(report))
    word = verdict_word(report)
    out = [f'<section><h2>{esc(thread.label)}: <span class="{esc(word.lower())}">{esc(word)}</span></h2>',
           f"<table>{rows}</table>"]
    if final is not None:
        out += [f"<h3>Description</h3><p>{esc(final.description)}</p>",
                f"<h3>Reasoning</h3><p>{esc(final.reasoning)}</p>"]
    out += [f'<p class="note">{esc(w)}</p>' for w in report.warnings]
    if report.detectors is not None:
        out.append(detectors_html(report.detectors))
    out.append("<h3>Candidates</h3><ol start=\"0\">")
    for cand in report.candidates:
        verdict = cand.answer.verdict.value if cand.answer else f"not parsed ({cand.parse.error})"
        out.append(f"<li><b>{esc(cand.prompt_kind)}</b>: {esc(cand.question)} → {esc(verdict)}"
                   f"<pre>{esc(cand.raw_text)}</pre></li>")
    out.append("</ol>")
    turns = case.followups(index)
    if turns:
        out.append("<h3>Conversation</h3>")
        out += [f'<p class="q">{esc(t.question)}</p><p class="a">{esc(t.answer)}</p>' for t in turns]
    out.append("</section>")
    return "".join(out)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #1f2937; }}
img {{ max-width: 100%; border-radius: 6px; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: .2rem .8rem .2rem 0; }}
.fake {{ color: #dc2626; }} .real {{ color: #16a34a; }} .undecided {{ color: #64748b; }}
.demo {{ background: #fef3c7; padding: .5rem; }} .note {{ color: #92400e; }}
pre {{ white-space: pre-wrap; background: #f3f4f6; padding: .5rem; }}
.q {{ font-weight: 600; }} footer {{ color: #6b7280; font-size: .85rem; margin-top: 2rem; }}
</style></head>
<body>
{body}
</body></html>
"""
