"""Model text -> `ForensicAnswer`, or a `ParseResult` that says why there is none.

FFAA reads answers with a one-field-per-line regex and raises KeyError when a field is missing.
This parser agrees with it on well-formed answers and is more forgiving of everything else:
fields in any order, any letter case, short keys ("result:"), markdown bold, chatter before or
after the answer, fields that span several lines or start on the next line, CRLF. It never
raises on model text and never invents a verdict: without a readable "Analysis result" the
answer is a parse failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .prompts import AnswerFormat, load_answer_format
from .types import ForensicAnswer, ForgeryType, ParseResult, Verdict

# Multi-line fields: continuation lines are joined to them. Every other field is one line.
_MULTILINE = frozenset({"description", "reasoning"})
_MARKUP = re.compile(r"[*_`#>]+")
# Markdown wrapped around a label or a whole line ("**Analysis result:** Fake", "> quote"); markup
# inside the text ("a > b", "multi_layer") is content and kept.
_OUTER_MARKUP = re.compile(r"^(?:\s|[#>]|\*+|_{2,})+|(?:\s|\*+|_{2,})+$")
_BULLET = re.compile(r"^\s*(?:[-•]\s+)")
# One span in backticks or underscores that is the whole value, perhaps with a final stop.
_WRAPPED = re.compile(r"(?P<mark>[`_])(?P<inner>[^`_]+)(?P=mark)(?P<end>[.!]?)")


@dataclass(frozen=True)
class _Line:
    key: str | None
    value: str
    raw: str


def _label_pattern(fmt: AnswerFormat) -> re.Pattern[str]:
    names = []
    for f in fmt.fields:
        names += [re.escape(f.label), re.escape(f.short)]
    names.sort(key=len, reverse=True)  # "Forgery type" before "type"
    return re.compile(r"^(?P<name>" + "|".join(names) + r")\s*:(?P<value>.*)$", re.IGNORECASE)


def _key_of(name: str, fmt: AnswerFormat) -> str:
    lowered = name.lower()
    for f in fmt.fields:
        if lowered in (f.label.lower(), f.short.lower()):
            return f.key
    raise KeyError(name)  # unreachable: the pattern only matches known names


def _classify(text: str, fmt: AnswerFormat) -> list[_Line]:
    pattern = _label_pattern(fmt)
    lines = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = _BULLET.sub("", raw)
        match = pattern.match(_MARKUP.sub("", line).strip())  # markup may sit inside a label
        if match:
            value = line.split(":", 1)[1]  # labels hold no colon: the first one ends the label
            lines.append(_Line(_key_of(match["name"], fmt), _unwrap(value), raw))
        else:
            lines.append(_Line(None, _unwrap(line), raw))
    return lines


def _unwrap(text: str) -> str:
    """`text` without the Markdown around it: emphasis and quote marks, and a pair of backticks
    or underscores wrapping all of it (`Fake`, _Face swap_)."""
    text = _OUTER_MARKUP.sub("", text)
    match = _WRAPPED.fullmatch(text)
    return f"{match['inner'].strip()}{match['end']}" if match else text


def _collect(lines: list[_Line]) -> tuple[dict[str, str], list[str]]:
    """Group lines into fields; the first occurrence of a field wins."""
    fields: dict[str, list[str]] = {}
    warnings: list[str] = []
    current: str | None = None
    leading_chatter = False
    for idx, line in enumerate(lines):
        if line.key is not None:
            if line.key in fields:
                warnings.append(f"repeated field {line.key!r} ignored: {line.raw.strip()[:60]!r}")
                current = None
                continue
            fields[line.key] = [line.value] if line.value else []
            current = line.key
        elif current is None:
            leading_chatter = leading_chatter or bool(line.value) and not fields
        elif current in _MULTILINE and line.value and not _ends_paragraph(lines, idx):
            fields[current].append(line.value)
        elif line.value and current not in _MULTILINE and not fields[current]:
            fields[current].append(line.value)  # value started on the line after its label
        elif line.value:
            current = None  # trailing chatter after a one-line field
            warnings.append(f"text outside the answer format ignored: {line.value[:60]!r}")
    if leading_chatter:
        warnings.append("text before the first field ignored")
    return {k: " ".join(v).strip() for k, v in fields.items()}, warnings


def _ends_paragraph(lines: list[_Line], idx: int) -> bool:
    """True for a line after a blank line when no field label follows: chatter, not content."""
    if idx == 0 or lines[idx - 1].value:
        return False
    return all(later.key is None for later in lines[idx:])


def _verdict(value: str) -> Verdict | None:
    words = re.findall(r"[a-z]+", value.lower())
    return Verdict(words[0]) if words and words[0] in ("real", "fake") else None


def _probability(value: str) -> tuple[float | None, str | None]:
    match = re.search(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", value)
    if not match:
        return None, f"probability {value!r} is not a number"
    number = float(match.group())
    if "%" in value[match.end() :].strip()[:1] and 0 <= number <= 100:
        number /= 100
    if not 0.0 <= number <= 1.0:
        return None, f"probability {value!r} is outside [0, 1]"
    return number, None


def _forgery_type(value: str) -> ForgeryType | None:
    cleaned = re.sub(r"[^a-z ]", "", value.lower()).strip()
    for kind in ForgeryType:
        if cleaned == kind.value.lower() or cleaned.startswith(kind.value.lower() + " "):
            return kind
    return ForgeryType.NONE if cleaned in ("none", "n a", "na", "no forgery") else None


def _inline_type(verdict_value: str) -> str | None:
    """FFAA's display form puts the type on the verdict line: "fake, Forgery type: X"."""
    match = re.search(r"forgery type\s*:\s*(.+)$", verdict_value, re.IGNORECASE)
    return match.group(1).strip() if match else None


def parse_answer(text: str, fmt: AnswerFormat | None = None) -> ParseResult:
    """Parse one model answer. Never raises on any string input."""
    fmt = fmt or load_answer_format()
    if not isinstance(text, str) or not text.strip():
        return ParseResult(None, "empty answer")
    fields, warnings = _collect(_classify(text, fmt))
    verdict_value = fields.get("verdict", "")
    verdict = _verdict(verdict_value)
    if "verdict" not in fields:
        found = ", ".join(fmt.label(k) for k in fields) or "none"
        return ParseResult(
            None, f"no '{fmt.label('verdict')}' field (fields found: {found}; truncated?)",
            tuple(warnings))
    if verdict is None:
        return ParseResult(
            None, f"'{fmt.label('verdict')}' is {verdict_value!r}, neither real nor fake",
            tuple(warnings))
    for key in ("description", "reasoning"):
        if not fields.get(key):
            warnings.append(f"'{fmt.label(key)}' is missing or empty")
    probability = None
    if "probability" in fields:
        probability, problem = _probability(fields["probability"])
        if problem:
            warnings.append(problem)
    else:
        warnings.append(f"'{fmt.label('probability')}' is missing")
    type_text = fields.get("forgery_type") or _inline_type(verdict_value)
    forgery_type = _forgery_type(type_text) if type_text else None
    if type_text and forgery_type is None:
        warnings.append(f"unknown forgery type {type_text!r}")
    elif not type_text:
        warnings.append(f"'{fmt.label('forgery_type')}' is missing")
    verdict_text = verdict_value.split(",")[0].strip() if _inline_type(verdict_value) else verdict_value
    answer = ForensicAnswer(
        description=fields.get("description", ""),
        reasoning=fields.get("reasoning", ""),
        verdict=verdict,
        verdict_text=verdict_text,
        probability=probability,
        forgery_type=forgery_type,
        forgery_type_text=type_text,
    )
    return ParseResult(answer, None, tuple(warnings))


def mask_for_mids(answer: ForensicAnswer, fmt: AnswerFormat | None = None) -> str:
    """The text MIDS reads: description and reasoning only, the verdict hidden.

    Same layout as FFAA's `mask_result`, so MIDS sees what it was trained on.
    """
    fmt = fmt or load_answer_format()
    values = {"description": answer.description, "reasoning": answer.reasoning}
    return "\n".join(f"{fmt.label(k)}: {values[k]}" for k in fmt.mids_fields)


def format_answer(answer: ForensicAnswer, fmt: AnswerFormat | None = None) -> str:
    """The answer in the model's own five-line format (canonical order)."""
    fmt = fmt or load_answer_format()
    prob = "" if answer.probability is None else f"{answer.probability:g}"
    kind = answer.forgery_type.value if answer.forgery_type else (answer.forgery_type_text or "")
    values = {
        "description": answer.description,
        "reasoning": answer.reasoning,
        "verdict": answer.verdict_text,
        "probability": prob,
        "forgery_type": kind,
    }
    return "\n".join(f"{f.label}: {values[f.key]}" for f in fmt.fields)
