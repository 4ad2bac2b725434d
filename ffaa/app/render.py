"""What the web page shows: verdict cards, candidate tables, chat messages, the boxed image.

Pure functions from a `Case` to strings and images, so they are testable without a browser.
Model text is untrusted: it is escaped for HTML everywhere, and in chat messages (which the
browser renders as Markdown) every Markdown and HTML control character is escaped as well, so
a model cannot inject markup, images that fetch remote URLs, or formulas into the page.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

from ..types import Candidate, DetectorPanel, ForensicReport, Verdict
from .case import Case, FaceThread, Turn, chosen_candidate

if TYPE_CHECKING:
    from PIL import Image

VERDICT_COLOURS = {Verdict.REAL: (22, 163, 74), Verdict.FAKE: (220, 38, 38), None: (100, 116, 139)}
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-!|<>~$&.:])")
PROMPT_KIND_NAMES = {
    "question": "free question",
    "custom": "your question",
    "hypothesis_real": "hypothesis: real",
    "hypothesis_fake": "hypothesis: fake",
}


def escape_markdown(text: str) -> str:
    """Model text made inert for a Markdown renderer: every control character is escaped.

    `&` becomes an entity (a backslash does not stop entities); line breaks are kept.
    """
    return _MARKDOWN_SPECIAL.sub(lambda m: "&amp;" if m.group(1) == "&" else "\\" + m.group(1), text)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


# -- facts about one face --------------------------------------------------------------------


def verdict_word(report: ForensicReport) -> str:
    verdict = report.decision.verdict
    return verdict.value.upper() if verdict else "UNDECIDED"


def facts(report: ForensicReport) -> list[tuple[str, str]]:
    """The headline numbers of a face as (label, value) pairs, in the order FFAA shows them."""
    final, decision = report.final, report.decision
    prob = final.probability if final and final.probability is not None else None
    if final and final.forgery_type:
        kind = final.forgery_type.value
    else:
        kind = (final.forgery_type_text if final else None) or "n/a"
    score = (
        f"{decision.match_score:.4f}" if decision.match_score is not None else f"n/a ({decision.method} decision)"
    )
    difficulty = f"{decision.difficulty or 'n/a'} ({decision.agreement})"
    return [
        ("Probability of forgery", f"{prob:.2f}" if prob is not None else "n/a"),
        ("Forgery type", kind),
        ("Match score", score),
        ("Difficulty", difficulty),
    ]


# -- HTML panels -----------------------------------------------------------------------------


def verdict_cards_html(case: Case | None, demo: bool = False) -> str:
    """One card per face: the verdict badge and the headline numbers."""
    if case is None:
        return '<div class="ffaa-empty">Upload a face image (or pick an example) to start.</div>'
    cards = [_card(thread) for thread in case.threads]
    notes = [*case.info.notes, *(w for t in case.threads for w in t.report.warnings)]
    out = ['<div class="ffaa-cards">', *cards, "</div>"]
    if notes:
        out.append('<ul class="ffaa-notes">' + "".join(f"<li>{esc(n)}</li>" for n in dict.fromkeys(notes)) + "</ul>")
    if demo:
        out.append('<div class="ffaa-demo">Demo mode: these answers do not come from a trained model.</div>')
    return "".join(out)


def _card(thread: FaceThread) -> str:
    report = thread.report
    word = verdict_word(report)
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts(report))
    detectors = detectors_html(report.detectors) if report.detectors is not None else ""
    return (
        f'<div class="ffaa-card" data-verdict="{esc(word.lower())}">'
        f'<div class="ffaa-card-head"><span class="ffaa-face">{esc(thread.label)}</span>'
        f'<span class="ffaa-badge ffaa-{esc(word.lower())}">{esc(word)}</span></div>'
        f'<dl class="ffaa-facts">{rows}</dl>{detectors}</div>'
    )


def detectors_html(panel: DetectorPanel) -> str:
    """The classic detectors beside FFAA's answer: each one's P(fake), vote and time, then
    their majority vote (and whether FFAA's verdict was one of the votes)."""
    e = panel.ensemble
    word = e.verdict.value.upper() if e.verdict else "NO VERDICT"
    head = "<tr><th>Detector</th><th>P(fake)</th><th>Vote</th><th>Time</th></tr>"
    rows = []
    for m in panel.members:
        if m.probability is None:
            rows.append(f"<tr><td>{esc(m.title)}</td><td colspan=\"3\">n/a: {esc(m.error or '')}</td></tr>")
            continue
        vote = m.vote.value if m.vote else "–"
        rows.append(f'<tr data-vote="{esc(vote)}"><td>{esc(m.title)}</td><td>{m.probability:.3f}</td>'
                    f"<td>{esc(vote)}</td><td>{m.seconds:.2f} s</td></tr>")
    notes = [e.note, *panel.notes]
    if e.ffaa_verdict is not None:
        notes.append(f"FFAA's verdict ({e.ffaa_verdict.value}) "
                     + ("voted" if e.ffaa_voted else "is shown, not counted"))
    note_html = "".join(f"<li>{esc(n)}</li>" for n in notes if n)
    return (
        f'<div class="ffaa-detectors"><div class="ffaa-det-head">Classic detectors: '
        f'<span class="ffaa-det-badge ffaa-{esc(word.lower().replace(" ", "-"))}">{esc(word)}</span> '
        f"{e.fake_votes}/{e.votes_cast} fake votes</div>"
        f'<table>{head}{"".join(rows)}</table><p class="ffaa-det-rule">{esc(e.rule)}</p>'
        + (f"<ul>{note_html}</ul>" if note_html else "") + "</div>"
    )


def candidates_html(case: Case | None) -> str:
    """Every candidate of every face with its verdict and score; the chosen one is marked."""
    if case is None:
        return '<div class="ffaa-empty">No analysis yet.</div>'
    return "".join(_candidate_table(thread) for thread in case.threads)


def _candidate_table(thread: FaceThread) -> str:
    report = thread.report
    scores = {s.index: s for s in report.decision.scores}
    head = "<tr><th></th><th>#</th><th>Prompt</th><th>Verdict</th><th>Probability</th><th>Type</th><th>Score</th></tr>"
    rows = [_candidate_row(c, scores.get(c.index), c.index == report.decision.chosen_index) for c in report.candidates]
    return (
        f'<div class="ffaa-cands"><h4>{esc(thread.label)} — decided by {esc(report.decision.method)}</h4>'
        f'<table>{head}{"".join(rows)}</table></div>'
    )


def _candidate_row(cand: Candidate, score: Any, chosen: bool) -> str:
    ans = cand.answer
    verdict = ans.verdict.value if ans else "not parsed"
    prob = f"{ans.probability:.2f}" if ans and ans.probability is not None else "–"
    kind = (ans.forgery_type.value if ans.forgery_type else ans.forgery_type_text or "–") if ans else "–"
    if score is not None and score.excluded_reason:
        shown = f"excluded: {score.excluded_reason}"
    elif score is not None and score.match_score is not None:
        shown = f"{score.match_score:.4f}"
    else:
        shown = "–"
    prompt = f"{PROMPT_KIND_NAMES.get(cand.prompt_kind, cand.prompt_kind)}: {cand.question}"
    raw = f"<details><summary>raw answer</summary><pre>{esc(cand.raw_text)}</pre></details>"
    return (
        f'<tr class="{"ffaa-chosen" if chosen else ""}"><td>{"✔" if chosen else ""}</td><td>{cand.index}</td>'
        f"<td>{esc(prompt)}{raw}</td><td>{esc(verdict)}</td><td>{esc(prob)}</td>"
        f"<td>{esc(kind)}</td><td>{esc(shown)}</td></tr>"
    )


# -- chat ------------------------------------------------------------------------------------


def chat_messages(
    case: Case | None,
    *,
    upload_name: str | None = None,
    pending_question: tuple[int, Turn] | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """The chatbot's messages for a case, plus an answer still being written or a status line."""
    messages: list[dict[str, Any]] = []
    if case is not None:
        messages += _opening_messages(case)
        for index, turn in case.turns:
            messages += _turn_messages(case, index, turn)
        if pending_question is not None:
            messages += _turn_messages(case, *pending_question)
    elif upload_name is not None:
        messages.append({"role": "user", "content": f"Image: {escape_markdown(upload_name)}"})
    if status:
        messages.append({"role": "assistant", "content": status, "metadata": {"title": "Working", "status": "pending"}})
    return messages


def _opening_messages(case: Case) -> list[dict[str, Any]]:
    """The analysis as the first turn: the question, then per face a summary and the reasoning."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": f"Image: {escape_markdown(case.name)}\n\n{escape_markdown(case.question)}"}
    ]
    for thread in case.threads:
        messages += _face_messages(thread, several=len(case.threads) > 1)
    return messages


def _face_messages(thread: FaceThread, several: bool) -> list[dict[str, Any]]:
    report, final = thread.report, thread.report.final
    head = (f"**{thread.label}: {verdict_word(report)}**" if several or report.face_index is None
            else f"**{verdict_word(report)}**")
    numbers = " · ".join(f"{k}: {escape_markdown(v)}" for k, v in facts(report))
    if final is None:
        reason = report.decision.note or "no candidate answer could be parsed"
        raw = chosen_candidate(report).raw_text
        return [
            {"role": "assistant", "content": f"{head} — {escape_markdown(reason)}"},
            {"role": "assistant", "content": escape_markdown(raw) or "(empty)",
             "metadata": {"title": f"Raw answer — {thread.label}", "status": "done"}},
        ]
    return [
        {"role": "assistant", "content": f"{head}\n\n{numbers}\n\n{escape_markdown(final.description)}"},
        {"role": "assistant", "content": escape_markdown(final.reasoning),
         "metadata": {"title": f"Reasoning — {thread.label}", "status": "done"}},
    ]


def _turn_messages(case: Case, index: int, turn: Turn) -> list[dict[str, Any]]:
    prefix = f"*{case.threads[index].label}:* " if len(case.threads) > 1 else ""
    answer = escape_markdown(turn.answer) if turn.answer else "…"
    return [
        {"role": "user", "content": prefix + escape_markdown(turn.question)},
        {"role": "assistant", "content": answer},
    ]


# -- the image -------------------------------------------------------------------------------


def annotated_image(case: Case) -> Image.Image:
    """The display copy with each face's box and verdict drawn on it."""
    from PIL import ImageDraw

    image = case.image.copy()
    scale = image.width / case.info.width
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 250))
    font = _font(max(12, round(max(image.size) / 28)))
    for thread in case.threads:
        box = thread.report.face
        if box is None:
            continue
        colour = VERDICT_COLOURS[thread.report.decision.verdict]
        rect = [round(box.left * scale), round(box.top * scale),
                round(box.right * scale) - 1, round(box.bottom * scale) - 1]
        draw.rectangle(rect, outline=colour, width=width)
        label = f"{thread.report.face_index + 1} {verdict_word(thread.report)}"
        left, top, right, bottom = draw.textbbox((rect[0], rect[1]), label, font=font)
        y = max(0, rect[1] - (bottom - top) - 2 * width)
        draw.rectangle([rect[0], y, rect[0] + (right - left) + 2 * width, y + (bottom - top) + 2 * width], fill=colour)
        draw.text((rect[0] + width, y + width - (top - rect[1])), label, fill=(255, 255, 255), font=font)
    return image


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
