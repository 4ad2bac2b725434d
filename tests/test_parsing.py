"""The answer parser: parity with FFAA on well-formed text, robustness on everything else."""

from __future__ import annotations

import json

import pytest

from ffaa.parsing import format_answer, mask_for_mids, parse_answer
from ffaa.types import ForgeryType, Verdict

WELL_FORMED = [
    "well_formed_fake", "well_formed_real", "capitalised_result", "fields_reordered",
    "short_keys", "chatter_before_after", "value_contains_colon", "crlf_line_endings",
]


@pytest.fixture(scope="module")
def cases(shared_fixtures):
    data = json.loads((shared_fixtures / "mids" / "parsing_cases.json").read_text())
    return {c["name"]: c for c in data["cases"]}


@pytest.mark.parametrize("name", WELL_FORMED)
def test_agrees_with_ffaa_on_well_formed_answers(cases, name):
    case = cases[name]
    result = parse_answer(case["input"])
    assert result.ok, result.error
    expected = case["mask_result"]["ok"]
    assert mask_for_mids(result.answer) == expected["masked_text"]
    assert result.answer.verdict_text.lower() == expected["result"]
    fields = case["decode_response"]["ok"]["fields"]
    assert result.answer.description == fields["Image description"]
    assert result.answer.reasoning == fields["Forgery reasoning"]
    assert result.answer.probability == pytest.approx(float(fields["Probability"]))
    assert result.answer.forgery_type == ForgeryType(fields["Forgery type"])


@pytest.mark.parametrize("name", sorted(set(WELL_FORMED) - {"chatter_before_after"}))
def test_format_answer_matches_ffaa_canonical_text(cases, name):
    result = parse_answer(cases[name]["input"])
    expected = cases[name]["decode_response"]["ok"]["formatted"]
    # FFAA keeps the probability as written; we normalise it as a float ("0.10" -> "0.1").
    assert format_answer(result.answer) == expected


def test_more_forgiving_where_ffaa_crashes_or_misreads(cases):
    bold = parse_answer(cases["markdown_bold_keys"]["input"])
    assert bold.ok and bold.answer.verdict is Verdict.FAKE and bold.answer.probability == 0.9
    nextline = parse_answer(cases["reasoning_starts_on_next_line"]["input"])
    assert nextline.answer.reasoning.startswith("The jawline shows a blending seam")
    multi = parse_answer(cases["multiline_reasoning"]["input"])
    assert "3. Eyes: the reflections do not match." in multi.answer.reasoning
    lower = parse_answer(cases["lowercase_keys"]["input"])
    assert lower.answer.probability == 0.9
    assert lower.answer.forgery_type is ForgeryType.FACIAL_ATTRIBUTE_MANIPULATION
    chatter = parse_answer(cases["chatter_overrides_field"]["input"])
    assert chatter.answer.verdict is Verdict.FAKE  # FFAA lets trailing chatter flip it to real
    assert any("outside the answer format" in w for w in chatter.warnings)
    punct = parse_answer(cases["verdict_with_punctuation"]["input"])
    assert punct.answer.verdict is Verdict.REAL and punct.answer.verdict_text == "Real."
    display = parse_answer(cases["ffaa_display_format_reparsed"]["input"])
    assert display.answer.verdict is Verdict.FAKE
    assert display.answer.forgery_type is ForgeryType.IDENTITY_EXCHANGE
    missing = parse_answer(cases["missing_probability"]["input"])
    assert missing.ok and missing.answer.probability is None
    assert any("Probability" in w for w in missing.warnings)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty answer"),
        ("   \n ", "empty answer"),
        ("I am not sure what this image shows.", "no 'Analysis result' field"),
        ("Image description: a face\nForgery reasoning: the skin is", "no 'Analysis result' field"),
        ("Image description: a\nForgery reasoning: b\nAnalysis result: maybe", "neither real nor fake"),
        ("Analysis result:\n\n", "neither real nor fake"),
    ],
)
def test_failures_say_why_and_never_invent_a_verdict(text, reason):
    result = parse_answer(text)
    assert result.answer is None
    assert reason in result.error


def test_truncated_answer_reports_the_fields_it_found():
    result = parse_answer("Image description: a man\nForgery reasoning: the jaw shows a seam and")
    assert not result.ok
    assert "Image description, Forgery reasoning" in result.error


def test_non_string_input_does_not_raise():
    assert parse_answer(None).error == "empty answer"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value, expected",
    [("0.92", 0.92), ("92%", 0.92), ("about 0.3.", 0.3), ("1.5", None), ("high", None)],
)
def test_probability_forms(value, expected):
    text = f"Image description: a\nForgery reasoning: b\nAnalysis result: fake\nProbability: {value}"
    answer = parse_answer(text).answer
    assert answer.probability == (pytest.approx(expected) if expected is not None else None)


def test_unknown_forgery_type_is_kept_as_text_with_a_warning():
    text = "Analysis result: fake\nForgery type: Deep morphing"
    result = parse_answer(text)
    assert result.answer.forgery_type is None
    assert result.answer.forgery_type_text == "Deep morphing"
    assert any("unknown forgery type" in w for w in result.warnings)


def test_first_occurrence_of_a_field_wins():
    text = "Analysis result: real\nProbability: 0.1\nAnalysis result: fake"
    result = parse_answer(text)
    assert result.answer.verdict is Verdict.REAL
    assert any("repeated field" in w for w in result.warnings)


def test_markup_around_labels_goes_markup_inside_text_stays():
    text = ("**Image description:** a *studio* portrait_2 of a man\n"
            "## Forgery reasoning: the seam width > 2 px at the jaw;\n"
            "> the multi_layer blend shows `halos`\n"
            "**Analysis result:** **Fake**\n"
            "Probability: 0.9\n"
            "Forgery type: __Identity exchange__")
    answer = parse_answer(text).answer
    assert answer.description == "a *studio* portrait_2 of a man"
    assert answer.reasoning == "the seam width > 2 px at the jaw; the multi_layer blend shows `halos`"
    assert answer.verdict_text == "Fake" and answer.forgery_type_text == "Identity exchange"
    wrapped = parse_answer(text.replace("**Fake**", "`Fake`").replace("__Identity exchange__", "_Face swap_")).answer
    assert wrapped.verdict_text == "Fake" and wrapped.forgery_type_text == "Face swap"
    stop = parse_answer(text.replace("**Fake**", "`Fake`.")).answer
    assert stop.verdict_text == "Fake."
    two = parse_answer(text.replace("__Identity exchange__", "`Face swap` or `Identity exchange`")).answer
    assert two.forgery_type_text == "`Face swap` or `Identity exchange`"  # two spans: left as written
