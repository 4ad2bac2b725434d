"""The answer-end stop reads its labels from the answer format, not from the backend.

The pipeline passes the closing field's label and short form (`AnswerFormat.end_labels`); the
backend stops a row once it has a complete line of one of them, wherever the parser would read
that field (line start, Markdown around the label), and never on a word inside another field.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ffaa.backends.generation import AnswerEnd, answer_end_pattern, answer_end_stop, cut_after_answer, ended
from ffaa.parsing import parse_answer
from ffaa.prompts import load_answer_format, prompts_dir

ANSWER = ("Image description: A face in soft light.\nForgery reasoning: The skin type: oily, a seam at the jaw.\n"
          "Analysis result: fake\nProbability: 0.9\n{line}\nThanks! Anything else?")


def _renamed(tmp_path: Path, label: str, short: str) -> tuple[str, ...]:
    """The end labels of a copy of the prompts whose closing field is renamed."""
    folder = tmp_path / "prompts"
    shutil.copytree(prompts_dir(), folder)
    path = folder / "answer_format.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace('label: "Forgery type"', f'label: "{label}"').replace('short: "type"', f'short: "{short}"')
    path.write_text(text, encoding="utf-8")
    return load_answer_format(str(folder)).end_labels


def test_the_packaged_format_ends_with_the_forgery_type():
    assert load_answer_format().end_labels == ("Forgery type", "type")


@pytest.mark.parametrize("line", ["Forgery type: Identity exchange", "type: Identity exchange",
                                  "**Forgery type:** Identity exchange", "- **Type**: Identity exchange",
                                  "FORGERY TYPE: Identity exchange"])
def test_the_label_and_its_short_form_end_the_answer(line):
    end = answer_end_pattern(load_answer_format().end_labels)
    text = ANSWER.format(line=line)
    assert ended(text, end)
    cut = cut_after_answer(text, end)
    assert cut.endswith("Identity exchange") and "Thanks" not in cut
    assert parse_answer(cut).answer == parse_answer(text).answer is not None


def test_a_renamed_label_keeps_stopping(tmp_path):
    end = answer_end_pattern(_renamed(tmp_path, "Manipulation kind", "kind"))
    for label in ("Manipulation kind", "kind"):
        assert ended(ANSWER.format(line=f"{label}: Identity exchange"), end)
    assert not ended(ANSWER.format(line="Forgery type: Identity exchange"), end)  # the old name no longer does


def test_words_inside_other_fields_and_unfinished_lines_do_not_end_it():
    end = answer_end_pattern(load_answer_format().end_labels)
    assert not ended("Forgery reasoning: the skin type: oily and smooth", end)
    assert not ended("Image description: a face\nForgery type:", end)  # no value yet
    assert not ended("Forgery type: **", end)  # markup alone is no value
    assert answer_end_pattern(()) is None and not ended("Forgery type: x", None)


def test_requests_without_labels_are_never_stopped():
    class Request:
        end_labels: tuple[str, ...] = ()

    assert answer_end_stop(None, 0, [Request(), Request()], enabled=True) is None


def test_the_stopping_criterion_checks_each_row_with_its_own_labels():
    torch = pytest.importorskip("torch")

    class Letters:  # one character per id: decode is join
        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(int(i)) for i in ids)

    def ids(text: str):
        return [ord(c) for c in text]

    finished, open_line = "Probability: 0.9\nForgery type: None\n", "Probability: 0.9\nForgery type: None."
    rows = torch.tensor([ids(finished), ids(finished.upper()), ids(open_line)])
    default = answer_end_pattern(load_answer_format().end_labels)
    stop = AnswerEnd(Letters(), 0, [default, None, default])
    assert stop(rows, None).tolist() == [True, False, False]
    # A window that starts mid-line ("type: ...", past TAIL_TOKENS) is not taken for a label.
    long_row = torch.tensor([ids("x" * 60 + "\n" + "Skin " + "type: oily\n")])
    tail_cut = torch.tensor([ids("Skin" + " " * 60 + "type: oily\n")])
    stop = AnswerEnd(Letters(), 0, [default])
    assert stop(long_row, None).tolist() == [False] and stop(tail_cut, None).tolist() == [False]
