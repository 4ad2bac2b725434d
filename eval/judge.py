"""LLM-as-judge: score explanations on the rubric in `prompts/judge.yaml` (completeness,
correctness, plausibility; integers on the rubric's scale, 0-5).

A judge is anything with `judge(prompt: str) -> str` (the `Judge` protocol): a plain callable
wrapped in `CallableJudge`, or an ffaa model backend wrapped in `BackendJudge`.

The judge's answer is parsed per criterion ("correctness: 4", "**Correctness** = 4/5",
"- plausibility: 3" all read). A criterion whose score is missing, not an integer, outside the
scale, out of another maximum ("4/10") or given twice with different values is a *failure*:
counted and shown, never turned into a score. Means are over the scores that parsed. A judge
that raises is a failure of every criterion of that item, with the error kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ffaa.prompts import load_judge_rubric, render, render_chat
from ffaa.types import DecodingSettings, Verdict

from .labels import LabelSet
from .matching import PathIndex
from .results import InputFile, ProvenanceGroup
from .texts import Pair, Pairing

if TYPE_CHECKING:
    from PIL import Image

    from ffaa.backends.base import Backend
    from ffaa.prompts import PromptSet

NO_REFERENCE = "(no reference analysis available)"
UNKNOWN_LABEL = "unknown"


@runtime_checkable
class Judge(Protocol):
    """Turns a rubric prompt into the judge model's answer text."""

    def judge(self, prompt: str) -> str: ...


class CallableJudge:
    """A judge from a function `prompt -> answer`."""

    def __init__(self, fn: Callable[[str], str], name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def judge(self, prompt: str) -> str:
        return self.fn(prompt)


class BackendJudge:
    """A judge from an ffaa `Backend` (a vision-language model).

    Backends answer about an image, so the rubric prompt is sent with `image` (default: a plain
    mid-grey 336x336 canvas that carries no evidence) in the backend's chat template, with the
    rubric's `system` prompt. Greedy decoding, `max_new_tokens` 64 unless given.
    """

    def __init__(self, backend: Backend, prompts: PromptSet | None = None,
                 settings: DecodingSettings | None = None, image: Image.Image | None = None,
                 system: str | None = None):
        from ffaa.prompts import load_prompt_set

        self.backend = backend
        self.prompts = prompts or load_prompt_set()
        self.settings = settings or DecodingSettings(max_new_tokens=64)
        self.image = image if image is not None else _grey_canvas()
        self.system = system if system is not None else str(load_judge_rubric().get("system", "")).strip()
        self.name = f"{backend.info.name}:{backend.info.model_id}"

    def judge(self, prompt: str) -> str:
        from ffaa.backends.base import GenerationRequest

        text = render_chat(self.prompts.chat_template, self.system, [(prompt, None)], with_image=True)
        return self.backend.generate([GenerationRequest(self.image, text)], self.settings)[0].text


def _grey_canvas() -> Image.Image:
    from PIL import Image

    return Image.new("RGB", (336, 336), (128, 128, 128))


@dataclass(frozen=True)
class Rubric:
    version: str
    criteria: tuple[tuple[str, str], ...]
    scale: tuple[int, int]
    template: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.criteria)

    def prompt(self, prediction: str, reference: str, label: str) -> str:
        return render(self.template, prediction=prediction, reference=reference, label=label,
                      criteria=dict(self.criteria), scale=list(self.scale))


def load_rubric(folder: str | None = None) -> Rubric:
    data = load_judge_rubric(folder)
    low, high = (int(x) for x in data["scale"])
    return Rubric(str(data["version"]), tuple((str(k), str(v)) for k, v in data["criteria"].items()),
                  (low, high), str(data["prompt"]))


# -- parsing the judge's answer ----------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    """One item's scores and the criteria that failed to parse (with why)."""

    id: str
    scores: tuple[tuple[str, int], ...]
    failures: tuple[tuple[str, str], ...]
    raw: str
    error: str | None = None

    @property
    def complete(self) -> bool:
        return not self.failures


def _criterion_pattern(name: str) -> re.Pattern[str]:
    words = r"[\s_]+".join(re.escape(w) for w in name.split("_"))
    return re.compile(
        rf"(?<![a-z]){words}(?![a-z])[\s*_`\"']*(?:score)?[\s*_`\"']*[:=\-–—]+\s*[*_`\"']*\s*"
        r"(?P<value>[-+]?\d+(?:[.,]\d+)?)\s*(?:(?:/|out\s+of)\s*(?P<of>\d+))?",
        re.IGNORECASE,
    )


def parse_judgement(text: str, criteria: Sequence[str],
                    scale: tuple[int, int]) -> tuple[dict[str, int], dict[str, str]]:
    """(scores, failures) per criterion; never raises on any text."""
    scores: dict[str, int] = {}
    failures: dict[str, str] = {}
    low, high = scale
    for name in criteria:
        found = [(m["value"], m["of"]) for m in _criterion_pattern(name).finditer(text or "")]
        if not found:
            failures[name] = "no score given"
            continue
        values = set()
        problem = None
        for value, of in found:
            if of is not None and int(of) != high:
                problem = f"scored out of {of}, the scale is {low}-{high}"
                break
            number = float(value.replace(",", "."))
            if not number.is_integer():
                problem = f"{value} is not an integer"
                break
            if not low <= number <= high:
                problem = f"{value} is outside {low}-{high}"
                break
            values.add(int(number))
        if problem is None and len(values) > 1:
            problem = f"given {len(values)} different scores ({', '.join(map(str, sorted(values)))})"
        if problem is not None:
            failures[name] = problem
        else:
            scores[name] = values.pop()
    return scores, failures


# -- running -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CriterionSummary:
    name: str
    scored: int
    failed: int
    mean: float | None
    histogram: tuple[int, ...]  # count of each score from the scale's low end to its high end


@dataclass(frozen=True)
class JudgeCoverage:
    items: int
    judged: int
    complete: int
    judge_errors: int
    without_reference: int
    without_label: int
    references_without_prediction: int = 0


@dataclass(frozen=True)
class JudgeResult:
    kind: str
    judge: str
    rubric_version: str
    scale: tuple[int, int]
    inputs: tuple[InputFile, ...]
    coverage: JudgeCoverage
    criteria: tuple[CriterionSummary, ...]
    provenance: tuple[ProvenanceGroup, ...]
    items: tuple[Judgement, ...]
    failures: tuple[str, ...] = ()


def judge_name(judge: Any) -> str:
    return str(getattr(judge, "name", type(judge).__name__))


def _reference_text(pair: Pair) -> str:
    if not pair.references:
        return NO_REFERENCE
    if len(pair.references) == 1:
        return pair.references[0]
    return " ".join(f"({n}) {r}" for n, r in enumerate(pair.references, 1))


def judge_one(judge: Judge, rubric: Rubric, pair: Pair, label: Verdict | None) -> Judgement:
    prompt = rubric.prompt(pair.prediction, _reference_text(pair), label.value if label else UNKNOWN_LABEL)
    try:
        raw = judge.judge(prompt)
    except Exception as exc:  # noqa: BLE001 - a judge is user code; one failing item must not lose the run
        reason = f"judge raised {type(exc).__name__}: {exc}"
        return Judgement(pair.id, (), tuple((n, reason) for n in rubric.names), "", reason)
    if not isinstance(raw, str):
        reason = f"judge returned {type(raw).__name__}, not text"
        return Judgement(pair.id, (), tuple((n, reason) for n in rubric.names), "", reason)
    scores, failures = parse_judgement(raw, rubric.names, rubric.scale)
    return Judgement(pair.id, tuple(scores.items()), tuple(failures.items()), raw)


def summarize(rubric: Rubric, judgements: Sequence[Judgement]) -> tuple[CriterionSummary, ...]:
    low, high = rubric.scale
    out = []
    for name in rubric.names:
        values = [dict(j.scores)[name] for j in judgements if name in dict(j.scores)]
        hist = tuple(values.count(v) for v in range(low, high + 1))
        out.append(CriterionSummary(name, len(values), len(judgements) - len(values),
                                    sum(values) / len(values) if values else None, hist))
    return tuple(out)


def label_lookup(labels: LabelSet) -> Callable[[Pair], Verdict | None]:
    """The `labels` of `run_judge` from a label set (`--labels`): a pair's label is that of its
    id by the path rule, and a video frame's or a face's id (`clip.mp4#frame3#face1`) takes its
    file's label when no label names that very part (`PathIndex.match_item`)."""
    index = PathIndex(lab.id for lab in labels.labels)
    by_id = {lab.id: lab.verdict for lab in labels.labels}

    def label_of(pair: Pair) -> Verdict | None:
        hit = index.match_item(pair.id)
        return by_id[hit.id] if hit.id else None

    return label_of


def run_judge(
    judge: Judge,
    pairing: Pairing,
    rubric: Rubric | None = None,
    labels: Callable[[Pair], Verdict | None] | None = None,
    limit: int | None = None,
    inputs: tuple[InputFile, ...] = (),
    provenance: tuple[ProvenanceGroup, ...] = (),
    progress: Callable[[int, int], None] | None = None,
) -> JudgeResult:
    """Judge every pair (or the first `limit`); `labels` supplies true labels not in the texts."""
    rubric = rubric or load_rubric()
    pairs = pairing.pairs[:limit] if limit else pairing.pairs
    judgements = []
    without_label = 0
    for n, pair in enumerate(pairs, 1):
        label = pair.label or (labels(pair) if labels else None)
        without_label += label is None
        judgements.append(judge_one(judge, rubric, pair, label))
        if progress:
            progress(n, len(pairs))
    failures = [f"{j.id}: {name}: {why}" + (f" — answer: {j.raw[:120]!r}" if j.raw else "")
                for j in judgements for name, why in j.failures][:20]
    coverage = JudgeCoverage(
        items=len(pairing.pairs), judged=len(judgements), complete=sum(j.complete for j in judgements),
        judge_errors=sum(j.error is not None for j in judgements),
        without_reference=sum(not p.references for p in pairs), without_label=without_label,
        references_without_prediction=len(pairing.references_without_prediction),
    )
    return JudgeResult("judge", judge_name(judge), rubric.version, rubric.scale, inputs, coverage,
                       summarize(rubric, judgements), provenance, tuple(judgements), tuple(failures))


def to_markdown(r: JudgeResult) -> str:
    from .detection_report import num

    c = r.coverage
    out = ["# Judge evaluation", "",
           f"Judge: {r.judge}; rubric {r.rubric_version}, scale {r.scale[0]}-{r.scale[1]}. "
           f"{c.judged} of {c.items} items judged; {c.complete} fully scored; {c.judge_errors} judge errors; "
           f"{c.without_reference} without reference; {c.without_label} without label"
           + (f"; {c.references_without_prediction} references without prediction" if c.references_without_prediction
              else "") + ".", "",
           "| criterion | mean | scored | failed | histogram (low→high) |", "|---|---|---|---|---|"]
    out += [f"| {s.name} | {num(s.mean, 2)} | {s.scored} | {s.failed} | {' '.join(map(str, s.histogram))} |"
            for s in r.criteria]
    if r.failures:
        out += ["", "## Failures (first 20)", ""] + [f"- {f}" for f in r.failures]
    return "\n".join(out) + "\n"
