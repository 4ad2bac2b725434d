"""The web app's logic without a server: cases, multi-turn prompts, streaming, escaping, files.

Everything runs on the rule-based ScriptedBackend and real face detection (dlib) on
scikit-image's public-domain astronaut portrait.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ffaa.app.case import (
    Turn,
    analyze_pending,
    conversation,
    cut_at_role_marker,
    open_upload,
    stream_answer,
)
from ffaa.app.files import (
    Workspace,
    case_html,
    case_markdown,
    case_record,
    write_report_files,
)
from ffaa.app.render import (
    annotated_image,
    chat_messages,
    escape_markdown,
    verdict_cards_html,
)
from ffaa.app.server import ServerOptions, auth_from, exposure_warnings, parse_auth
from ffaa.backends.scripted import ScriptedBackend
from ffaa.decision import MajorityDecider
from ffaa.errors import FfaaError, InputError
from ffaa.pipeline import Assistant
from ffaa.report import report_from_dict
from ffaa.types import DecodingSettings

pytest.importorskip("dlib")
skdata = pytest.importorskip("skimage.data")

HOSTILE = '<img src=x onerror="alert(1)"> ![t](http://198.51.100.7/t.png) **b** $x^2$ & <script>1</script>'


class HostileBackend(ScriptedBackend):
    """Scripted answers whose description is markup a browser would act on if not escaped."""

    def answer(self, request):
        return super().answer(request).replace("A 336x336 face image", HOSTILE)


class ChattyBackend(ScriptedBackend):
    """Streams an answer, then starts inventing the user's next turn (as weak models do)."""

    def stream(self, request, settings):
        yield from ("The eyes ", "look even. ", "USER: and the ", "nose? ASSISTANT: fine")


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(path)
    return path


def make_case(path: Path, backend=None, mode="faces", question=None):
    assistant = Assistant(backend or ScriptedBackend(), MajorityDecider())
    with open(path, "rb") as fh:
        pending = open_upload(fh, path.name, assistant, question, mode)
    return assistant, analyze_pending(assistant, pending)


def test_first_turn_is_the_full_analysis_of_each_face(astronaut):
    assistant, case = make_case(astronaut)
    assert len(case.threads) == 1 and case.threads[0].label == "Face 1"
    report = case.threads[0].report
    assert report.face is not None and 150 < report.face.left < report.face.right < 300
    assert len(report.candidates) == 3
    assert case.info.path == "astronaut.png"  # the user's name, never a server path
    # the chat starts from the chosen candidate's question and its raw text
    chosen = next(c for c in report.candidates if c.index == report.decision.chosen_index)
    assert case.threads[0].opening == Turn(chosen.question, chosen.raw_text)
    assert case.question in assistant.prompts.questions


def test_custom_question_replaces_the_free_question(astronaut):
    _, case = make_case(astronaut, question="  Is the smile natural?  ")
    assert case.question == "Is the smile natural?"
    assert case.threads[0].report.candidates[0].prompt_kind == "custom"


def test_face_modes_for_an_image_without_a_face(tmp_path):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 160), (180, 170, 160)).save(blank)
    with pytest.raises(InputError, match=r"wall\.png: no face found.*whole image"):
        make_case(blank, mode="faces")
    _, case = make_case(blank, mode="auto")
    assert case.threads[0].label == "Whole image"
    assert any("no face found" in w for w in case.threads[0].report.warnings)


def test_no_face_message_names_an_option_the_page_has(tmp_path):
    gr_ui = pytest.importorskip("ffaa.app.ui", reason="gradio is not installed")
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 160), (180, 170, 160)).save(blank)
    with pytest.raises(InputError) as info:
        make_case(blank, mode="faces")
    quoted = re.search(r"“(.+?)”", str(info.value))
    assert quoted and quoted.group(1) in [label for label, mode in gr_ui.FACE_MODES if mode == "auto"]


def test_bad_uploads_are_refused_with_the_users_file_name(tmp_path):
    assistant = Assistant(ScriptedBackend(), MajorityDecider())
    with pytest.raises(InputError, match=r"^notes\.txt: not an image \(text\)"):
        open_upload(io.BytesIO(b"hello there"), "notes.txt", assistant, None, "faces")
    with pytest.raises(InputError, match=r"^empty\.png: empty file"):
        open_upload(io.BytesIO(b""), "empty.png", assistant, None, "faces")


def test_follow_up_prompt_is_the_multi_turn_template(astronaut):
    assistant, case = make_case(astronaut)
    opening = case.threads[0].opening
    for i in range(4):
        case = case.with_turn(0, Turn(f"question {i}?", f"answer {i}."))
    turns = conversation(case, 0, "And the ears?", keep=2)
    assert turns[0] == (opening.question, opening.answer)
    assert turns[1:] == [("question 2?", "answer 2."), ("question 3?", "answer 3."), ("And the ears?", None)]
    prompt = assistant.prompts.chat(turns)
    assert prompt.count("<image>") == 1
    assert f"USER: <image>\n{opening.question} ASSISTANT: {opening.answer}</s>" in prompt
    assert prompt.endswith("USER: question 3? ASSISTANT: answer 3.</s>USER: And the ears? ASSISTANT:")
    assert "question 1?" not in prompt


def test_follow_up_streams_growing_text_and_times_it(astronaut):
    assistant, case = make_case(astronaut)
    settings = DecodingSettings(max_new_tokens=64)
    turns = list(stream_answer(assistant, case, 0, "Why?", settings))
    texts = [t.answer for t in turns]
    assert len(turns) > 10 and texts == sorted(texts, key=len)
    assert texts[0] and texts[0] != texts[-1]  # the first piece arrives before the answer is done
    assert turns[-1].answer.startswith("Image description:") and turns[-1].answer.endswith("Forgery type: None")
    assert turns[-1].first_token_s is not None and turns[-1].total_s >= turns[-1].first_token_s
    assert all(t.total_s is None for t in turns[:-1])


def test_follow_up_stops_where_the_model_invents_the_next_user_turn(astronaut):
    assistant, case = make_case(astronaut, backend=ChattyBackend())
    final = list(stream_answer(assistant, case, 0, "Eyes?", DecodingSettings()))[-1]
    assert final.answer == "The eyes look even."
    assert cut_at_role_marker("a ASSISTANT: b USER: c") == ("a ", True)


def test_model_text_is_inert_in_chat_and_panels(astronaut):
    _, case = make_case(astronaut, backend=HostileBackend())
    assert case.threads[0].report.final.description.startswith("<img")
    description = chat_messages(case)[1]["content"].split("\n\n")[-1]
    assert re.findall(r"(?<!\\)[<>!\[\]()*$]", description) == []  # every control character escaped
    assert description.startswith(r'\<img src=x onerror="alert\(1\)"')
    assert r"\!\[t\]\(http\:" in description and "&amp;" in description
    cards = verdict_cards_html(case)
    assert "<img" not in cards and "<script" not in cards
    assert escape_markdown("a_b [c](d)") == r"a\_b \[c\]\(d\)"


def test_chat_shows_every_face_then_follow_ups_in_order(tmp_path):
    pair = tmp_path / "pair.png"
    head = Image.fromarray(skdata.astronaut()).crop((60, 0, 452, 300))
    canvas = Image.new("RGB", (head.width * 2, head.height))
    canvas.paste(head, (0, 0))
    canvas.paste(head.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (head.width, 0))
    canvas.save(pair)
    _, case = make_case(pair)
    assert [t.label for t in case.threads] == ["Face 1", "Face 2"]
    case = case.with_turn(1, Turn("second face?", "ok")).with_turn(0, Turn("first face?", "fine"))
    messages = chat_messages(case)
    reasoning = [m for m in messages if m.get("metadata", {}).get("title", "").startswith("Reasoning")]
    assert [m["metadata"]["title"] for m in reasoning] == ["Reasoning — Face 1", "Reasoning — Face 2"]
    assert [m["content"] for m in messages[-4:]] == ["*Face 2:* second face?", "ok", "*Face 1:* first face?", "fine"]
    assert case.followups(1) == (Turn("second face?", "ok"),)


def test_boxes_are_drawn_in_the_verdicts_colour(astronaut):
    _, case = make_case(astronaut)
    box = case.threads[0].report.face
    image = annotated_image(case)
    colour = (22, 163, 74) if case.threads[0].report.decision.verdict.value == "real" else (220, 38, 38)
    assert image.getpixel((box.left + 1, (box.top + box.bottom) // 2)) == colour
    assert image.getpixel((box.left - 30, box.bottom + 30)) == case.image.getpixel((box.left - 30, box.bottom + 30))


def test_report_files_hold_reports_conversation_and_embedded_image(astronaut, tmp_path):
    _, case = make_case(astronaut, backend=HostileBackend())
    case = case.with_turn(0, Turn("<b>why</b>?", "because", 0.1, 0.5))
    files = write_report_files(case, Workspace(root=tmp_path / "ws"))
    record = json.loads(files.json.read_text(encoding="utf-8"))
    assert record["schema"] == "ffaa.case/1" and record == json.loads(json.dumps(case_record(case)))
    assert report_from_dict(record["reports"][0]) == case.threads[0].report
    assert record["conversation"] == [{"face_index": 0, "question": "<b>why</b>?", "answer": "because",
                                       "first_token_s": 0.1, "total_s": 0.5}]
    page = files.html.read_text(encoding="utf-8")
    assert 'src="data:image/jpeg;base64,' in page and "Content-Security-Policy" in page
    assert "<img src=x" not in page and "<b>why</b>" not in page and "&lt;b&gt;why&lt;/b&gt;?" in page
    assert case_markdown(case).endswith("because\n") and "# Conversation" in case_markdown(case)
    assert case_html(case).count("<section>") == 1


def test_workspace_prunes_old_cases(tmp_path):
    import os
    import time

    ws = Workspace(max_age_s=60, root=tmp_path)
    old = ws.case_dir("old")
    past = time.time() - 120
    os.utime(old, (past, past))
    ws.case_dir("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]


def test_auth_sources_and_exposure_warnings(tmp_path):
    assert parse_auth(["ann:pa:ss", " "]) == (("ann", "pa:ss"),)
    with pytest.raises(FfaaError, match="USER:PASSWORD"):
        parse_auth(["nopassword"])
    file = tmp_path / "users"
    file.write_text("# team\nbob:secret\n", encoding="utf-8")
    pairs = auth_from(["ann:x"], str(file), environ={"FFAA_APP_AUTH": "cy:1,dee:2"})
    assert pairs == (("ann", "x"), ("bob", "secret"), ("cy", "1"), ("dee", "2"))
    assert exposure_warnings(ServerOptions()) == []
    assert any("without --auth" in w for w in exposure_warnings(ServerOptions(host="0.0.0.0")))
    assert any("gradio.live" in w for w in exposure_warnings(ServerOptions(share=True, auth=(("a", "b"),))))


def test_cli_defaults_are_safe_and_checked():
    from ffaa.cli import build_parser
    from ffaa.commands.app import server_options

    args = build_parser().parse_args(["app", "--scripted"])
    server = server_options(args)
    assert (server.host, server.share, server.auth, server.max_file_size) == ("127.0.0.1", False, (), "10mb")
    with pytest.raises(FfaaError, match="max-file-size"):
        server_options(build_parser().parse_args(["app", "--max-file-size", "lots"]))


def test_negative_cache_age_is_refused_not_read_as_keep_forever():
    from ffaa.cli import build_parser
    from ffaa.commands.app import ui_options

    parse = build_parser().parse_args
    assert ui_options(parse(["app", "--scripted", "--cache-max-age", "0"]), examples=()).cache_max_age_s == 0
    with pytest.raises(FfaaError, match="--cache-max-age must be 0 .* got -5"):
        ui_options(parse(["app", "--scripted", "--cache-max-age", "-5"]), examples=())


def test_importing_the_app_package_stays_light():
    code = ("import ffaa.app, ffaa.app.case, ffaa.app.render, ffaa.app.files, ffaa.commands.app, sys\n"
            "print(sorted(m for m in ('gradio', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_history_is_capped_by_length_too(astronaut):
    _, case = make_case(astronaut)
    for i in range(3):
        case = case.with_turn(0, Turn(f"q{i}", "x" * 2500))
    turns = conversation(case, 0, "next?", keep=6, max_chars=6000)
    assert [q for q, _ in turns[1:]] == ["q1", "q2", "next?"]  # q0 would exceed 6000 characters
    assert conversation(case, 0, "next?", keep=0)[1:] == [("next?", None)]


def test_detectors_are_shown_beside_ffaas_answer_and_in_the_downloads(astronaut, tmp_path):
    pytest.importorskip("torch")
    from ffaa.detectors.config import DetectorsConfig, parse_detectors
    from ffaa.detectors.runner import DetectorSet

    detectors = DetectorSet.load(DetectorsConfig(parse_detectors("meso4=demo,i3d=demo")))
    assistant = Assistant(HostileBackend(), MajorityDecider(), detectors=detectors)
    with open(astronaut, "rb") as fh:
        case = analyze_pending(assistant, open_upload(fh, astronaut.name, assistant, None, "faces"))
    panel = case.threads[0].report.detectors
    assert panel is not None and [m.detector for m in panel.members] == ["meso4", "i3d"]
    cards = verdict_cards_html(case)
    assert "Classic detectors" in cards and "Meso4" in cards and "DF40 - i3d" in cards
    assert re.search(r"<td>Meso4</td><td>0\.\d{3}</td><td>(real|fake)</td><td>\d+\.\d\d s</td>", cards)
    assert "n/a: a clip detector needs a video" in cards
    assert "DEMO detectors" in cards
    html_file = case_html(case)
    assert "Classic detectors" in html_file and "<img src=x" not in html_file
    assert "## Classic detectors" in case_markdown(case)
    assert case_record(case)["reports"][0]["detectors"]["members"][0]["detector"] == "meso4"
