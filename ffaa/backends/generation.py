"""Generation helpers shared by the plain (`hf_llava.py`) and the static-cache (`fast.py`) paths:
the answer-end stop and the cut that goes with it.

The backend does not know the answer format. A request may name `end_labels`: the names of
the field that closes an answer (the pipeline takes them from `prompts/answer_format.yaml`,
the label and the short form the parser accepts). Once a row has written a complete line of
that field, `label: value` with the newline, its answer is over and the rest would be chatter;
stopping there changes no parsed field. A request without `end_labels` is never stopped early.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

from ..lazy import require

# New tokens decoded for each answer-end check: enough for the closing line and the newline
# before it, few enough that a check costs little.
TAIL_TOKENS = 48
# What may come before a label on its line, as the parser allows it: indentation, a bullet,
# Markdown quote, heading and emphasis marks.
_LINE_START = r"\n[^\S\n]*(?:[-•][^\S\n]+)?(?:[*_`#>][^\S\n]*)*"


@functools.lru_cache(maxsize=64)
def answer_end_pattern(labels: tuple[str, ...]) -> re.Pattern[str] | None:
    """A complete line of one of `labels` (any case, Markdown around the label allowed, a value
    that is more than markup), at the start of a line; None when there are no labels.

    Searched in text with a newline in front, so the answer's first line counts as a line start.
    """
    names = sorted({label.strip() for label in labels if label.strip()}, key=len, reverse=True)
    if not names:
        return None
    alternatives = "|".join(re.escape(name) for name in names)
    return re.compile(
        _LINE_START + rf"(?:{alternatives})[*_`]*[^\S\n]*:[^\n]*[^\s*_`][^\n]*\n", re.IGNORECASE
    )


def ended(text: str, pattern: re.Pattern[str] | None) -> re.Match[str] | None:
    """Where the closing line of the answer in `text` ends, if `text` has one."""
    return pattern.search("\n" + text + "\n") if pattern is not None else None


def cut_after_answer(text: str, pattern: re.Pattern[str] | None) -> str:
    """`text` up to the end of its closing line (chatter after it dropped); unchanged without one."""
    match = ended(text, pattern)
    return text[: match.end() - 1].rstrip() if match else text  # -1: the newline `ended` put in front


class AnswerEnd:
    """Stopping criterion: row i stops once it has written a complete closing line of
    `patterns[i]` (None, or a row past the list: filler rows, never).

    Decoding the tail of each row forces a GPU sync, so the static-cache path calls this only
    every few tokens. Returns one flag per row, as transformers expects.
    """

    def __init__(self, tokenizer: Any, prompt_len: int, patterns: Sequence[re.Pattern[str] | None]):
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.patterns = list(patterns)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        torch = require("torch", "torch", "running the model")
        done = []
        for i, ids in enumerate(input_ids):
            pattern = self.patterns[i] if i < len(self.patterns) else None
            done.append(pattern is not None and self._row_ended(ids[self.prompt_len :], pattern))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def _row_ended(self, new_ids: Any, pattern: re.Pattern[str]) -> bool:
        tail = self.tokenizer.decode(new_ids[-TAIL_TOKENS:], skip_special_tokens=True)
        # The answer's start is a line start only when the tail is the whole answer: a window
        # that begins mid-line must not read its first word as a label.
        whole = len(new_ids) <= TAIL_TOKENS
        return pattern.search(("\n" if whole else "") + tail) is not None


def answer_end_stop(tokenizer: Any, prompt_len: int, requests: Sequence[Any], enabled: bool) -> AnswerEnd | None:
    """The answer-end criterion for `requests` (each with its own `end_labels`), or None when
    stopping at the answer end is off or no request names an end."""
    patterns = [answer_end_pattern(tuple(r.end_labels)) for r in requests]
    if not enabled or all(p is None for p in patterns):
        return None
    return AnswerEnd(tokenizer, prompt_len, patterns)
