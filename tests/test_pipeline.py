"""The assistant end to end with the rule-based backend: faces, batching, ordering, failures."""

from __future__ import annotations

import pytest
from PIL import Image

from ffaa.backends.scripted import ScriptedBackend
from ffaa.errors import InputError
from ffaa.parsing import parse_answer
from ffaa.pipeline import AnalysisOptions, Assistant, order_like_ffaa
from ffaa.types import Candidate, Verdict


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    from skimage import data

    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def test_one_face_three_candidates_in_one_batch(astronaut):
    backend = ScriptedBackend()
    reports = Assistant(backend).analyze(astronaut)
    assert len(reports) == 1 and backend.batches == [3]
    report = reports[0]
    assert report.face is not None and report.face.crop is not None
    kinds = [c.prompt_kind for c in report.candidates]
    assert kinds[0] == "question" and set(kinds[1:]) == {"hypothesis_real", "hypothesis_fake"}
    assert [c.index for c in report.candidates] == [0, 1, 2]
    assert report.decision.verdict is not None
    assert report.provenance.prompt_set == "ffaa-v1" and report.provenance.decoder == "majority"
    assert dict(report.provenance.timings)["generate"] >= 0


def test_free_question_is_reproducible_and_overridable(astronaut):
    q1 = Assistant(ScriptedBackend()).analyze(astronaut)[0].candidates[0].question
    q2 = Assistant(ScriptedBackend()).analyze(astronaut)[0].candidates[0].question
    assert q1 == q2
    custom = Assistant(ScriptedBackend(), options=AnalysisOptions(question="Is this face real?"))
    first = custom.analyze(astronaut)[0].candidates[0]
    assert first.question == "Is this face real?" and first.prompt_kind == "custom"


def test_faces_of_several_images_share_one_generate_call(astronaut):
    backend = ScriptedBackend()
    assistant = Assistant(backend)
    jobs = assistant.face_jobs(assistant.load(astronaut)) * 3
    reports = assistant.analyze_jobs(jobs)
    assert len(reports) == 3 and backend.batches == [9]
    small = Assistant(ScriptedBackend(), options=AnalysisOptions(batch_size=4))
    small.analyze_jobs(jobs)
    assert small.backend.batches == [4, 4, 1]


def test_image_without_face(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (250, 250, 250)).save(blank)
    with pytest.raises(InputError, match="no face found"):
        Assistant(ScriptedBackend()).analyze(blank)
    auto = Assistant(ScriptedBackend(), options=AnalysisOptions(face_mode="auto")).analyze(blank)
    assert auto[0].face is None and auto[0].warnings
    whole = Assistant(ScriptedBackend(), options=AnalysisOptions(face_mode="whole")).analyze(blank)
    assert whole[0].face is None and whole[0].face_index is None
    assert whole[0].decision.verdict is Verdict.REAL  # the scripted rule: bright image, real


def test_unparseable_candidates_never_break_a_report(astronaut):
    reports = Assistant(ScriptedBackend(broken_every=1)).analyze(astronaut)
    report = reports[0]
    assert all(not c.parse.ok for c in report.candidates)
    assert report.decision.verdict is None and report.final is None


def test_bad_input_is_one_clear_error(tmp_path):
    junk = tmp_path / "fake.jpg"
    junk.write_text("<html>not an image</html>")
    with pytest.raises(InputError, match="fake.jpg"):
        Assistant(ScriptedBackend()).analyze(junk)


def _cand(kind, verdict):
    text = "unparseable" if verdict is None else f"Analysis result: {verdict}"
    return Candidate(0, kind, "q", text, parse_answer(text))


@pytest.mark.parametrize(
    "first, expected",
    [("real", ["hypothesis_fake", "hypothesis_real"]),
     ("fake", ["hypothesis_real", "hypothesis_fake"]),
     (None, ["hypothesis_real", "hypothesis_fake"])],
)
def test_ffaa_order_puts_the_opposite_hypothesis_first(first, expected):
    cands = [_cand("question", first), _cand("hypothesis_real", "real"), _cand("hypothesis_fake", "fake")]
    ordered = order_like_ffaa(cands)
    assert [c.prompt_kind for c in ordered[1:]] == expected
    assert [c.index for c in ordered] == [0, 1, 2]
