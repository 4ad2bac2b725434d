"""Snapshot tests of the rendered prompt strings FFAA's checkpoint was trained with."""

from __future__ import annotations

import pytest

from ffaa.prompts import (
    PromptError,
    load_answer_format,
    load_data_generation_prompts,
    load_judge_rubric,
    load_prompt_set,
    render,
)

SYSTEM = (
    "You are an AI master specialized in face forgery analysis. You'll be provided with a human "
    "face image. You need to think step by step to analyze whether the face is real or fake."
)
QUESTIONS = [
    "The image is a human face image. Is it real or fake? Why?",
    "The photo depicts a human face. Can you tell if it's authentic or manipulated? Please explain your reasoning.",
    "This picture shows a human face. Do you think it's genuine or counterfeit? What are your reasons?",
    "We see a human face in this image. Is it an actual photo or a fabrication? What leads you to that conclusion?",
    "There's a human face in this image. Is it original or has it been altered? Provide your justification.",
    "The picture contains a human face. Is it factual or doctored? What makes you say that?",
    "The visual shows a human face. Is this a real image or a fake one? Could you explain your assessment?",
    "In this photograph, a human face is shown. Is it natural or manipulated? What leads you to this judgement?",
    "A human face is visible in this image. Is it genuine or a forgery? On what grounds do you decide?",
    "The image features a human face. Is it authentic or fabricated? What evidence do you have?",
]


def test_inference_prompts_are_ffaas_exact_strings():
    ps = load_prompt_set()
    assert ps.version == "ffaa-v1"
    assert ps.system == SYSTEM
    assert list(ps.questions) == QUESTIONS
    assert ps.hypothesis("real") == "This is a real human face. What evidence do you have?"
    assert ps.hypothesis("fake") == "This is a fake human face. What evidence do you have?"


def test_single_turn_chat_snapshot():
    ps = load_prompt_set()
    assert ps.chat([(QUESTIONS[0], None)]) == (
        SYSTEM + " USER: <image>\nThe image is a human face image. Is it real or fake? Why? ASSISTANT:"
    )


def test_multi_turn_chat_snapshot():
    ps = load_prompt_set()
    text = ps.chat([("q1", "a1"), ("q2", None)])
    assert text == SYSTEM + " USER: <image>\nq1 ASSISTANT: a1</s>USER: q2 ASSISTANT:"


def test_chat_matches_golden_prompts(shared_fixtures):
    import json

    golden = json.loads((shared_fixtures / "llava" / "golden.json").read_text())
    ps = load_prompt_set()
    assert golden["system_prompt"] == ps.system
    for case in golden["cases"]:
        assert ps.chat([(case["question"], None)]) == case["prompt"]


def test_question_choice_is_seeded_and_spreads():
    ps = load_prompt_set()
    assert ps.question_index(0, "abc") == ps.question_index(0, "abc")
    picks = {ps.question_index(0, f"image-{i}") for i in range(200)}
    assert picks == set(range(10))
    assert [ps.question_index(s, "x") for s in range(20)] != [ps.question_index(0, "x")] * 20


def test_answer_format_labels_are_one_source():
    fmt = load_answer_format()
    assert [f.label for f in fmt.fields] == [
        "Image description", "Forgery reasoning", "Analysis result", "Probability", "Forgery type"]
    assert fmt.mids_fields == ("description", "reasoning")


def test_data_generation_prompt_lists_the_format_and_rules():
    dg = load_data_generation_prompts()
    for label in ("Image description:", "Forgery reasoning:", "Analysis result:", "Probability:", "Forgery type:"):
        assert label in dg.system
    assert "50-100 words" in dg.system and "100-150 words" in dg.system
    assert "Strictly follow the format" in dg.system and "Do not bold" in dg.system
    assert set(dg.sources) == {"real", "identity_exchange", "attribute_manipulation", "entire_face_synthesis"}
    assert "cannot mention" in dg.reference("mask")
    with pytest.raises(PromptError, match="unknown reference kind"):
        dg.reference("depth")


def test_strict_rendering_refuses_missing_variables():
    with pytest.raises(PromptError, match="missing"):
        render("This is a {{ label }} face.")
    rubric = load_judge_rubric()
    assert set(rubric["criteria"]) == {"completeness", "correctness", "plausibility"}


def test_conversation_must_end_with_the_open_turn():
    ps = load_prompt_set()
    with pytest.raises(PromptError):
        ps.chat([("q1", None), ("q2", None)])
    with pytest.raises(PromptError):
        ps.chat([])
