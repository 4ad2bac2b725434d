"""ForensicReport <-> JSON, FFAA's display text, and Markdown.

The JSON form is the archive format (`reports.jsonl` in batch runs, the input of `ffaa eval`):
`report_to_dict` and `report_from_dict` round-trip exactly, and every record carries
`schema` so later versions can read old files. Schema 2 added the classic detectors' panel
(`detectors`); schema-1 records read as reports without one.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .parsing import format_answer
from .prompts import load_answer_format
from .types import (
    Candidate,
    CandidateScore,
    Decision,
    DecodingSettings,
    DetectorPanel,
    EnsembleVerdict,
    FaceBox,
    FaceTrack,
    ForensicAnswer,
    ForensicReport,
    ForgeryType,
    ImageInfo,
    MemberScore,
    ParseResult,
    Provenance,
    Verdict,
    VideoDetection,
)

SCHEMA = "ffaa.report/2"
READABLE_SCHEMAS = ("ffaa.report/1", SCHEMA)


def is_report_schema(schema: object) -> bool:
    """True for every report schema this version reads."""
    return schema in READABLE_SCHEMAS


def to_plain(value: Any) -> Any:
    """Dataclasses/enums/tuples -> JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def report_to_dict(report: ForensicReport) -> dict[str, Any]:
    """The report as JSON-ready data, plus derived fields a reader wants without recomputing."""
    data = {"schema": SCHEMA, **to_plain(report)}
    final = report.final
    data["summary"] = {
        "verdict": report.decision.verdict.value if report.decision.verdict else None,
        "forgery_type": final.forgery_type.value if final and final.forgery_type else None,
        "probability": final.probability if final else None,
        "match_score": report.decision.match_score,
        "forgery_score": report.decision.forgery_score,
        "difficulty": report.decision.difficulty,
        "agreement": report.decision.agreement,
    }
    data["provenance"]["timings"] = dict(report.provenance.timings)
    data["provenance"]["software"] = dict(report.provenance.software)
    data["provenance"]["detectors"] = dict(report.provenance.detectors)
    return data


def _answer(d: dict[str, Any] | None) -> ForensicAnswer | None:
    if d is None:
        return None
    kind = d.get("forgery_type")
    return ForensicAnswer(
        description=d["description"],
        reasoning=d["reasoning"],
        verdict=Verdict(d["verdict"]),
        verdict_text=d["verdict_text"],
        probability=d.get("probability"),
        forgery_type=ForgeryType(kind) if kind is not None else None,
        forgery_type_text=d.get("forgery_type_text"),
    )


def _candidate(d: dict[str, Any]) -> Candidate:
    p = d["parse"]
    parse = ParseResult(_answer(p["answer"]), p.get("error"), tuple(p.get("warnings", ())))
    return Candidate(
        index=d["index"],
        prompt_kind=d["prompt_kind"],
        question=d["question"],
        raw_text=d["raw_text"],
        parse=parse,
        new_tokens=d.get("new_tokens", 0),
        stopped_by=d.get("stopped_by", "unknown"),
    )


def _score(d: dict[str, Any]) -> CandidateScore:
    probs = d.get("probabilities")
    return CandidateScore(
        index=d["index"],
        match_score=d.get("match_score"),
        probabilities=tuple(probs) if probs is not None else None,
        excluded_reason=d.get("excluded_reason"),
    )


def _decision(d: dict[str, Any]) -> Decision:
    return Decision(
        method=d["method"],
        verdict=Verdict(d["verdict"]) if d.get("verdict") else None,
        chosen_index=d.get("chosen_index"),
        match_score=d.get("match_score"),
        forgery_score=d.get("forgery_score"),
        difficulty=d.get("difficulty"),
        verdicts=tuple(d.get("verdicts", ())),
        scores=tuple(_score(s) for s in d.get("scores", ())),
        note=d.get("note", ""),
    )


def box_from_dict(d: dict[str, Any] | None) -> FaceBox | None:
    return None if d is None else face_box(d)


def face_box(d: dict[str, Any]) -> FaceBox:
    crop = d.get("crop")
    return FaceBox(
        d["left"], d["top"], d["right"], d["bottom"],
        crop=tuple(crop) if crop is not None else None,
        detector=d.get("detector", "dlib-hog"),
        score=d.get("score"),
    )


def _provenance(d: dict[str, Any]) -> Provenance:
    return Provenance(
        model_id=d["model_id"],
        model_revision=d.get("model_revision"),
        backend=d["backend"],
        quantization=d["quantization"],
        device=d["device"],
        dtype=d["dtype"],
        prompt_set=d["prompt_set"],
        decoder=d["decoder"],
        decoding=DecodingSettings(**d["decoding"]),
        software=tuple(d.get("software", {}).items()),
        timings=tuple(d.get("timings", {}).items()),
        demo=d.get("demo", False),
        detectors=tuple(d.get("detectors", {}).items()),
    )


def _verdict(value: str | None) -> Verdict | None:
    return Verdict(value) if value else None


def _member(d: dict[str, Any]) -> MemberScore:
    return MemberScore(
        detector=d["detector"], title=d.get("title", d["detector"]), probability=d.get("probability"),
        vote=_verdict(d.get("vote")), threshold=d["threshold"], unit_kind=d.get("unit_kind", "frame"),
        unit_probabilities=tuple(d.get("unit_probabilities", ())), seconds=d.get("seconds", 0.0),
        error=d.get("error"), note=d.get("note", ""),
    )


def panel_from_dict(d: dict[str, Any] | None) -> DetectorPanel | None:
    """A `DetectorPanel` from its JSON form (None stays None)."""
    return None if d is None else detector_panel(d)


def detector_panel(d: dict[str, Any]) -> DetectorPanel:
    e = d["ensemble"]
    ensemble = EnsembleVerdict(
        verdict=_verdict(e.get("verdict")), fake_votes=e["fake_votes"], votes_cast=e["votes_cast"],
        members=e["members"], rule=e["rule"], ffaa_verdict=_verdict(e.get("ffaa_verdict")), note=e.get("note", ""),
        ffaa_voted=e.get("ffaa_voted", False),
    )
    return DetectorPanel(tuple(_member(m) for m in d["members"]), ensemble, d.get("crop", "aligned"),
                         tuple(d.get("notes", ())))


def video_detection_to_dict(v: VideoDetection) -> dict[str, Any]:
    return to_plain(v)


def video_detection_from_dict(d: dict[str, Any]) -> VideoDetection:
    tracks = tuple(
        FaceTrack(t["track_id"], tuple(t["frames"]), tuple(t["timestamps"]),
                  tuple(face_box(b) for b in t["boxes"]), detector_panel(t["panel"]))
        for t in d["tracks"]
    )
    return VideoDetection(tracks, panel_from_dict(d.get("panel")), d.get("deciding_track"),
                          d.get("frames_decoded", 0), tuple(tuple(s) for s in d.get("segments", ())),
                          tuple(d.get("notes", ())))


def report_from_dict(d: dict[str, Any]) -> ForensicReport:
    """Inverse of `report_to_dict` (derived `summary` is ignored)."""
    if not is_report_schema(d.get("schema")):
        raise ValueError(f"not an ffaa report (schema {d.get('schema')!r}, expected one of {READABLE_SCHEMAS})")
    img = d["image"]
    return ForensicReport(
        image=ImageInfo(**{**img, "notes": tuple(img.get("notes", ()))}),
        face_index=d.get("face_index"),
        face=box_from_dict(d.get("face")),
        candidates=tuple(_candidate(c) for c in d["candidates"]),
        decision=_decision(d["decision"]),
        provenance=_provenance(d["provenance"]),
        warnings=tuple(d.get("warnings", ())),
        detectors=panel_from_dict(d.get("detectors")),
    )


def to_json(report: ForensicReport, indent: int | None = 2) -> str:
    return json.dumps(report_to_dict(report), indent=indent, ensure_ascii=False)


def iter_report_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file, skipping blank lines and a torn last line (killed writer)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                return  # a write interrupted mid-line; everything before it is intact
            raise ValueError(f"{path}:{number}: not valid JSON") from None


def display_text(report: ForensicReport) -> str:
    """FFAA's final display: description, reasoning, verdict and type, match score, difficulty.

    Without a match score (no MIDS), the line says which rule decided instead.
    """
    fmt = load_answer_format()
    final, decision = report.final, report.decision
    if final is None:
        reason = decision.note or "no candidate answer could be parsed"
        return f"{fmt.label('verdict')}: undecided ({reason})"
    kind = final.forgery_type.value if final.forgery_type else (final.forgery_type_text or "unknown")
    score = (
        f"Match score: {decision.match_score:.4f}"
        if decision.match_score is not None
        else f"Match score: n/a ({decision.method} decision)"
    )
    lines = [
        f"{fmt.label('description')}: {final.description}",
        f"{fmt.label('reasoning')}: {final.reasoning}",
        f"{fmt.label('verdict')}: {final.verdict_text}, {fmt.label('forgery_type')}: {kind}",
        f"{score}; Difficulty: {decision.difficulty or 'n/a'}",
    ]
    return "\n".join(lines)


def panel_lines(panel: DetectorPanel) -> list[str]:
    """The classic detectors' view of a face as plain lines: each member's P(fake), vote and
    time, then the ensemble's verdict (and FFAA's beside it)."""
    e = panel.ensemble
    verdict = e.verdict.value if e.verdict else "no verdict"
    lines = [f"Classic detectors: {verdict} ({e.fake_votes}/{e.votes_cast} fake votes; {e.rule})"]
    width = max(len(m.title) for m in panel.members) if panel.members else 0
    for m in panel.members:
        if m.probability is None:
            lines.append(f"  {m.title:<{width}}  n/a   ({m.error})")
            continue
        units = f"{m.units} {m.unit_kind}{'s' if m.units != 1 else ''}"
        lines.append(f"  {m.title:<{width}}  {m.probability:.3f}  {m.vote.value if m.vote else '?'}"
                     f"  ({units}, {m.seconds:.2f} s{'; ' + m.note if m.note else ''})")
    if e.ffaa_verdict is not None:
        lines.append(f"  FFAA's verdict: {e.ffaa_verdict.value}" + (" (voted)" if e.ffaa_voted else " (not a voter)"))
    lines += [f"  note: {n}" for n in (e.note, *panel.notes) if n]
    if panel.crop != "aligned":
        lines.append(f"  note: detector crops: {panel.crop} (not DeepfakeBench's aligned crop)")
    return lines


def _panel_markdown(panel: DetectorPanel) -> list[str]:
    e = panel.ensemble
    out = ["", "## Classic detectors", "",
           f"**{(e.verdict.value if e.verdict else 'no verdict').upper()}** — {e.fake_votes} of {e.votes_cast} "
           f"votes say fake ({_md_text(e.rule)})", "",
           "| detector | P(fake) | vote | units | seconds | note |", "|---|---|---|---|---|---|"]
    for m in panel.members:
        p = f"{m.probability:.3f}" if m.probability is not None else "n/a"
        vote = m.vote.value if m.vote else "—"
        note = _md_text(m.error or m.note).replace("|", "\\|")
        out.append(f"| {m.title} | {p} | {vote} | {m.units} {m.unit_kind} | {m.seconds:.2f} | {note} |")
    if e.ffaa_verdict is not None:
        out.append(f"\nFFAA's own verdict: {e.ffaa_verdict.value}")
    out += [f"- note: {_md_text(n)}" for n in (e.note, *panel.notes) if n]
    return out


def _face_title(report: ForensicReport) -> str:
    if report.face is None:
        return "whole image"
    b = report.face
    return f"face {report.face_index} at ({b.left}, {b.top})–({b.right}, {b.bottom})"


def _md_text(text: str) -> str:
    """Model or user text made inert in Markdown: angle brackets escaped, so HTML in an answer,
    a question or a file name is shown, never rendered, by viewers that allow inline HTML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_markdown(report: ForensicReport) -> str:
    """A human-readable report: verdict first, then explanation, candidates and provenance."""
    d, final = report.decision, report.final
    verdict = d.verdict.value.upper() if d.verdict else "UNDECIDED"
    out = [
        f"# {_md_text(Path(report.image.path).name)} — {_face_title(report)}",
        "",
        f"**Verdict: {verdict}**"
        + (f" · forgery type: {final.forgery_type.value}" if final and final.forgery_type else ""),
        "",
        f"- decided by: {d.method}" + (f" (match score {d.match_score:.4f})" if d.match_score is not None else ""),
        f"- difficulty: {d.difficulty or 'n/a'} ({d.agreement})",
    ]
    if d.forgery_score is not None:
        out.append(f"- forgery score: {d.forgery_score:.4f}")
    if final is not None:
        out += ["", "## Explanation", "", _md_text(format_answer(final))]
    if report.detectors is not None:
        out += _panel_markdown(report.detectors)
    out += ["", "## Candidates", ""]
    for c in report.candidates:
        status = c.answer.verdict.value if c.answer else f"not parsed ({c.parse.error})"
        out.append(f"- #{c.index} [{c.prompt_kind}] {_md_text(repr(c.question))} → {_md_text(status)}")
    p = report.provenance
    out += ["", "## Provenance", "", f"- model: {p.model_id} ({p.backend}, {p.quantization}, {p.dtype} on {p.device})"]
    out.append(f"- prompts: {p.prompt_set}; decoder: {p.decoder}; image sha256: {report.image.sha256}")
    if p.demo:
        out.append("- DEMO MODEL: random weights, the output is noise")
    out += [f"- note: {_md_text(n)}" for n in (*report.image.notes, *report.warnings)]
    return "\n".join(out) + "\n"
