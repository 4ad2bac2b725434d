"""Load, validate and render the prompt files in `prompts/`.

All prompt text lives in YAML/Jinja files shipped as package data; code never inlines prompt
strings. Rendering uses Jinja with `StrictUndefined`, so a missing variable is an error rather
than an empty string silently sent to the model.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from .types import Verdict

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)


class PromptError(ValueError):
    """A prompt file is missing, malformed or rendered with missing variables."""


def prompts_dir() -> Path:
    """The folder holding the prompt files (package data of `ffaa.prompt_files`)."""
    return Path(str(importlib.resources.files("ffaa.prompt_files")))


def _read_yaml(name: str, folder: Path | None = None) -> dict[str, Any]:
    path = (folder or prompts_dir()) / name
    if not path.is_file():
        raise PromptError(f"prompt file not found: {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise PromptError(f"{path}: expected a mapping at the top level")
    return data


def render(template: str, **variables: Any) -> str:
    """Render a Jinja template string; every variable it uses must be given."""
    try:
        return _ENV.from_string(template).render(**variables)
    except jinja2.UndefinedError as exc:
        raise PromptError(f"prompt variable missing: {exc.message}") from exc


@dataclass(frozen=True)
class AnswerField:
    """One line of the answer format, e.g. key "verdict" with label "Analysis result"."""

    key: str
    label: str
    short: str
    guide: str
    words: str | None = None


@dataclass(frozen=True)
class AnswerFormat:
    """The answer's fields in order; the one source for rendering, parsing and MIDS masking."""

    version: str
    fields: tuple[AnswerField, ...]
    mids_fields: tuple[str, ...]

    def field(self, key: str) -> AnswerField:
        for f in self.fields:
            if f.key == key:
                return f
        raise KeyError(f"unknown answer field {key!r}; known: {[f.key for f in self.fields]}")

    def label(self, key: str) -> str:
        return self.field(key).label

    @property
    def end_labels(self) -> tuple[str, ...]:
        """The names of the field that closes an answer (its label and the short form the parser
        accepts): a backend stops a row once it has written a complete line of one of them."""
        last = self.fields[-1]
        return (last.label, last.short)


@dataclass(frozen=True)
class PromptSet:
    """The inference prompts of one version (FFAA's checkpoint: `ffaa-v1`)."""

    version: str
    system: str
    questions: tuple[str, ...]
    hypothesis_template: str
    triage: str
    chat_template: str

    def hypothesis(self, label: Verdict | str) -> str:
        """The hypothesis prompt for "real" or "fake"."""
        value = Verdict(label).value
        return render(self.hypothesis_template, label=value)

    def question_index(self, seed: int, key: str = "") -> int:
        """A reproducible choice of the free question.

        FFAA draws it with an unseeded `random.choice`; we hash (seed, key) instead, where key is
        usually the image's content hash, so the same image and seed always get the same
        question while different images still spread over all ten.
        """
        digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % len(self.questions)

    def chat(self, turns: Sequence[tuple[str, str | None]], with_image: bool = True) -> str:
        """Render a conversation with the chat template.

        `turns` are (user_text, assistant_text) pairs; the last assistant text may be None,
        which asks for the generation prompt. The image goes in the first user turn.
        """
        return render_chat(self.chat_template, self.system, turns, with_image)


def render_chat(
    template: str, system: str, turns: Sequence[tuple[str, str | None]], with_image: bool
) -> str:
    if not turns:
        raise PromptError("a conversation needs at least one user turn")
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for i, (user, assistant) in enumerate(turns):
        content: list[dict[str, str]] = [{"type": "text", "text": user}]
        if i == 0 and with_image:
            content.insert(0, {"type": "image"})
        messages.append({"role": "user", "content": content})
        if assistant is not None:
            messages.append({"role": "assistant", "content": assistant})
        elif i != len(turns) - 1:
            raise PromptError("only the last turn may lack an assistant answer")
    wants_answer = turns[-1][1] is None
    return render(template, messages=messages, add_generation_prompt=wants_answer)


def _require(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise PromptError(f"{where}: missing key {key!r}")
    return data[key]


@functools.cache
def load_prompt_set(folder: str | None = None) -> PromptSet:
    """Load `inference.yaml` (and its chat template) from `folder` or the packaged prompts."""
    base = Path(folder) if folder else prompts_dir()
    data = _read_yaml("inference.yaml", base)
    where = str(base / "inference.yaml")
    questions = tuple(_require(data, "questions", where))
    if not questions or not all(isinstance(q, str) and q.strip() for q in questions):
        raise PromptError(f"{where}: 'questions' must be a non-empty list of strings")
    template_path = base / _require(data, "chat_template", where)
    if not template_path.is_file():
        raise PromptError(f"{where}: chat template not found: {template_path}")
    return PromptSet(
        version=str(_require(data, "version", where)),
        system=str(_require(data, "system", where)).strip(),
        questions=questions,
        hypothesis_template=str(_require(data, "hypothesis", where)),
        triage=str(_require(data, "triage", where)),
        chat_template=template_path.read_text(encoding="utf-8").strip(),
    )


@functools.cache
def load_answer_format(folder: str | None = None) -> AnswerFormat:
    """Load `answer_format.yaml`: field labels in the order the model writes them."""
    base = Path(folder) if folder else prompts_dir()
    data = _read_yaml("answer_format.yaml", base)
    where = str(base / "answer_format.yaml")
    fields = []
    for key, spec in _require(data, "fields", where).items():
        fields.append(
            AnswerField(
                key=key,
                label=str(_require(spec, "label", f"{where}:{key}")),
                short=str(_require(spec, "short", f"{where}:{key}")),
                guide=" ".join(str(spec.get("guide", "")).split()),
                words=spec.get("words"),
            )
        )
    expected = {"description", "reasoning", "verdict", "probability", "forgery_type"}
    if {f.key for f in fields} != expected:
        raise PromptError(f"{where}: fields must be exactly {sorted(expected)}")
    return AnswerFormat(
        version=str(_require(data, "version", where)),
        fields=tuple(fields),
        mids_fields=tuple(_require(data, "mids_fields", where)),
    )


@dataclass(frozen=True)
class DataGenerationPrompts:
    """Prompts for a teacher model writing training answers (never used at inference)."""

    version: str
    system: str
    sources: Mapping[str, str]
    references: Mapping[str, str]

    def source(self, label: str) -> str:
        if label not in self.sources:
            raise PromptError(f"unknown data-source label {label!r}; known: {sorted(self.sources)}")
        return self.sources[label]

    def reference(self, kind: str) -> str:
        if kind not in self.references:
            raise PromptError(f"unknown reference kind {kind!r}; known: {sorted(self.references)}")
        return self.references[kind]


@functools.cache
def load_data_generation_prompts(folder: str | None = None) -> DataGenerationPrompts:
    base = Path(folder) if folder else prompts_dir()
    data = _read_yaml("data_generation.yaml", base)
    where = str(base / "data_generation.yaml")
    fmt = load_answer_format(folder)
    system = render(str(_require(data, "system", where)), fields=fmt.fields)
    return DataGenerationPrompts(
        version=str(_require(data, "version", where)),
        system=system.strip(),
        sources={k: " ".join(v.split()) for k, v in _require(data, "sources", where).items()},
        references={k: " ".join(v.split()) for k, v in _require(data, "references", where).items()},
    )


def load_judge_rubric(folder: str | None = None) -> dict[str, Any]:
    """The judge rubric (criteria, scale, prompt template) as plain data."""
    base = Path(folder) if folder else prompts_dir()
    data = _read_yaml("judge.yaml", base)
    for key in ("version", "criteria", "scale", "prompt"):
        _require(data, key, str(base / "judge.yaml"))
    return data
