"""The Gradio page: upload a face image, read the analysis, ask follow-up questions.

`build_ui` receives a ready `Assistant` (the model is loaded once, by the caller) and returns a
`gr.Blocks`. Each user action is a short chain of events:

    check the input (fast, never waits for the model)
      -> gate (stops the chain when the check failed, without an error toast)
      -> model step (queued; one at a time for the whole server: concurrency id "model")

so a bad file is reported at once even while another user's answer is being generated, and a
long generation holds up other users for one request at most. Errors that users can fix are
shown twice: as a toast and in an error box that stays until the next action.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gradio as gr

from ..errors import FfaaError
from ..pipeline import Assistant
from .case import (
    FACE_MODE_LABELS,
    Case,
    FaceMode,
    PendingImage,
    Turn,
    analyze_pending,
    chat_settings,
    display_copy,
    open_upload,
    stream_answer,
    thread_choices,
)
from .files import ReportFiles, Workspace, case_record, write_report_files
from .render import (
    annotated_image,
    candidates_html,
    chat_messages,
    esc,
    verdict_cards_html,
)

log = logging.getLogger("ffaa.app")

MODEL = "model"  # concurrency id shared by every event that runs the model
MAX_QUESTION_CHARS = 1000
# A streamed answer is sent to the page at most this often: every update carries the whole
# chat, so one update per token would cost more than generating the token on a fast model.
UPDATE_EVERY_S = 0.05
FACE_MODES = [(label, mode) for mode, label in FACE_MODE_LABELS.items()]


@dataclass(frozen=True)
class UiOptions:
    """How the page behaves; the server side (host, auth, limits) is in `ServerOptions`."""

    title: str = "FFAA — explainable face forgery analysis"
    examples: tuple[str, ...] = ()
    face_mode: FaceMode = "faces"
    chat_max_new_tokens: int = 512
    history_turns: int = 6
    max_file_size: str = "10mb"
    cache_max_age_s: int = 3600
    demo: bool = False


@dataclass(frozen=True)
class SessionState:
    """One browser session: its case, and what is waiting for the model."""

    case: Case | None = None
    pending: PendingImage | None = None
    question: tuple[int, str] | None = None


@dataclass(frozen=True)
class Page:
    """The page's components that events update. Handlers return `{component: value}` dicts
    built from these names; a component a handler leaves out keeps its value, so no handler
    depends on the order of an output list."""

    state: Any
    chat: Any
    cards: Any
    faces: Any
    candidates: Any
    dl_json: Any
    dl_md: Any
    dl_html: Any
    face_sel: Any
    error: Any
    question: Any
    ask: Any
    upload: Any

    def all(self) -> list[Any]:
        return [getattr(self, f) for f in self.__dataclass_fields__]


Update = dict[Any, Any]


class Handlers:
    """The event functions; each returns (or yields) a `{component: value}` dict."""

    def __init__(self, assistant: Assistant, options: UiOptions, workspace: Workspace):
        self.assistant = assistant
        self.options = options
        self.workspace = workspace
        self.page: Page | None = None  # set by build_ui once the components exist

    def downloads(self, files: ReportFiles | None) -> Update:
        p = self.page
        return dict(zip((p.dl_json, p.dl_md, p.dl_html), download_updates(files)))

    def inputs(self, locked: bool, value: Any = None) -> Update:
        p = self.page
        return dict(zip((p.question, p.ask), input_updates(locked, value)))

    # -- outputs --------------------------------------------------------------------------

    def view(
        self,
        state: SessionState,
        chat: list[dict[str, Any]],
        *,
        error: str | None = None,
        preview: Any = None,
        files: ReportFiles | None = None,
    ) -> Update:
        """The whole view of a session (the question box and Ask button unlocked: a new image
        ends any answer still being written)."""
        p, case = self.page, state.case
        image = annotated_image(case) if case is not None else preview
        choices = thread_choices(case)
        return {
            p.state: state,
            p.chat: chat,
            p.cards: verdict_cards_html(case, self.options.demo),
            p.faces: image,
            p.candidates: candidates_html(case),
            **self.downloads(files),
            p.face_sel: gr.update(choices=choices, value=0 if choices else None, visible=len(choices) > 1),
            p.error: error_update(error),
            **self.inputs(locked=False),
        }

    def failed(self, message: str, state: SessionState = SessionState()) -> Update:
        gr.Warning(message)
        return self.view(state, chat_messages(state.case), error=message)

    # -- first turn -----------------------------------------------------------------------

    def receive(self, path: str | None, question: str, face_mode: FaceMode) -> Update:
        """Check an uploaded file; a good one waits for the model, a bad one is explained."""
        if not path:
            return self.view(SessionState(), [])
        name = Path(path).name
        try:
            with open(path, "rb") as handle:
                pending = open_upload(handle, name, self.assistant, question, face_mode)
        except FfaaError as exc:
            return self.failed(str(exc))
        except OSError as exc:
            return self.failed(f"{name}: the upload cannot be read ({exc.strerror or exc}); upload it again")
        except Exception:
            log.exception("checking upload %s failed", name)
            return self.failed(f"{name}: this file could not be checked (internal error, see the server log)")
        state = SessionState(pending=pending)
        preview = display_copy(pending.loaded.image)
        chat = chat_messages(None, upload_name=name, status="Waiting for the model…")
        return self.view(state, chat, preview=preview)

    def analyze(self, state: SessionState) -> Update:
        """Run the full analysis of the waiting image: the chat's first turn."""
        pending = state.pending
        if pending is None:  # the session moved on (new case) while this waited in the queue
            return {}
        try:
            case = analyze_pending(self.assistant, pending)
            files = write_report_files(case, self.workspace, self.options.demo)
        except FfaaError as exc:
            return self.failed(str(exc))
        except Exception:
            log.exception("analysis of %s failed", pending.name)
            return self.failed(f"{pending.name}: the analysis failed with an internal error (see the server log)")
        new = SessionState(case=case)
        return self.view(new, chat_messages(case), files=files)

    # -- follow-ups -----------------------------------------------------------------------

    def accept_question(self, text: str, face: int | None, state: SessionState) -> Update:
        """Check a follow-up question and show it at once; the answer comes from `answer`."""
        question = (text or "").strip()
        case = state.case
        problem = None
        if case is None and state.pending is not None:
            problem = "The analysis is still running; ask again when its answer is shown."
        elif case is None:
            problem = "Upload a face image first: follow-up questions are about the analysed image."
        elif not question:
            problem = "Type a question first."
        elif len(question) > MAX_QUESTION_CHARS:
            problem = f"The question is {len(question)} characters long; the limit is {MAX_QUESTION_CHARS}."
        if problem is not None:
            gr.Warning(problem)
            p = self.page
            return {p.state: replace(state, question=None), p.error: error_update(problem), p.question: text}
        face = face if face is not None and 0 <= face < len(case.threads) else 0
        pending = (face, Turn(question, ""))
        new = SessionState(case=case, question=(face, question))
        # The question box and button stay locked until the answer is complete: one question
        # at a time per session, so a second answer can never overwrite the first one's state.
        p = self.page
        return {p.state: new, p.chat: chat_messages(case, pending_question=pending), p.error: error_update(None),
                **self.inputs(locked=True, value="")}

    def answer(self, state: SessionState) -> Iterator[Update]:
        """Stream the model's answer to the waiting question into the chat, token by token."""
        p = self.page
        if state.case is None or state.question is None:  # the session moved on meanwhile
            yield self.inputs(locked=False)
            return
        case, (face, question) = state.case, state.question
        settings = chat_settings(self.assistant, self.options.chat_max_new_tokens)
        turn, sent = Turn(question, ""), 0.0
        try:
            for turn in stream_answer(self.assistant, case, face, question, settings, self.options.history_turns):
                now = time.perf_counter()
                if sent and now - sent < UPDATE_EVERY_S:
                    continue  # the first piece goes out at once; later ones at most every 50 ms
                sent = now
                yield {p.state: state, p.chat: chat_messages(case, pending_question=(face, turn))}
        except Exception as exc:
            log.exception("follow-up answer failed")
            message = (str(exc) if isinstance(exc, FfaaError)
                       else "the answer failed with an internal error (see the server log)")
            gr.Warning(message)
            yield {p.state: SessionState(case=case), p.chat: chat_messages(case), p.error: error_update(message),
                   **self.inputs(locked=False, value=question)}
            return
        done = case.with_turn(face, turn)
        files = write_report_files(done, self.workspace, self.options.demo)
        yield {p.state: SessionState(case=done), p.chat: chat_messages(done), **self.downloads(files),
               p.error: error_update(None), **self.inputs(locked=False)}

    # -- other actions --------------------------------------------------------------------

    def reset(self) -> Update:
        """"New case": forget the image, the analysis and the conversation."""
        return {**self.view(SessionState(), []), **self.inputs(locked=False, value=""), self.page.upload: None}

    def api_analyze(self, path: str | None) -> str:
        """API endpoint: analyse one image and return the case record (the JSON download) as text.

        Text rather than a JSON value: gradio_client takes every dict with a "path" key for a
        file to fetch, and a report's image record has one.
        """
        if not path:
            raise gr.Error("no image was sent", print_exception=False)
        name = Path(path).name
        try:
            with open(path, "rb") as handle:
                pending = open_upload(handle, name, self.assistant, None, self.options.face_mode)
            return json.dumps(case_record(analyze_pending(self.assistant, pending)), ensure_ascii=False)
        except FfaaError as exc:
            raise gr.Error(str(exc), print_exception=False) from None


def download_updates(files: ReportFiles | None) -> list[Any]:
    paths = (files.json, files.markdown, files.html) if files else (None, None, None)
    return [gr.update(value=str(p) if p else None, interactive=p is not None) for p in paths]


def input_updates(locked: bool, value: Any = None) -> list[Any]:
    """The question box and the Ask button, locked while an answer is being written."""
    box = gr.update(interactive=not locked) if value is None else gr.update(value=value, interactive=not locked)
    return [box, gr.update(interactive=not locked)]


def error_update(message: str | None) -> Any:
    if not message:
        return gr.update(value="", visible=False)
    return gr.update(value=f'<div class="ffaa-error" role="alert">{esc(message)}</div>', visible=True)


def _stop_unless(ready: bool) -> None:
    """Ends an event chain quietly: `.success()` steps after it do not run.

    The gates that call it are queued: an unqueued event that raises answers with HTTP 500,
    which the browser logs as a failed request on every bad upload and every "New case"."""
    if not ready:
        raise gr.Error("nothing to do", visible=False, print_exception=False)


def build_ui(assistant: Assistant, options: UiOptions = UiOptions(), workspace: Workspace | None = None) -> gr.Blocks:
    """The page, wired to `assistant`. Nothing is loaded here: the assistant is ready."""
    workspace = workspace or Workspace(options.cache_max_age_s)
    h = Handlers(assistant, options, workspace)
    every = min(options.cache_max_age_s, 1800)
    delete_cache = (every, options.cache_max_age_s) if options.cache_max_age_s > 0 else None
    with gr.Blocks(title="FFAA", analytics_enabled=False, delete_cache=delete_cache) as demo:
        _header(options, assistant)
        # Dropped when the tab closes or after the cache age, so idle sessions do not hold images.
        state = gr.State(SessionState(), time_to_live=options.cache_max_age_s or None)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                upload = gr.File(label=f"Face image (JPEG, PNG, WebP…; max {options.max_file_size})",
                                 type="filepath", elem_id="ffaa-upload", height=120)
                if options.examples:
                    gr.Examples([[p] for p in options.examples], inputs=[upload],
                                label="Examples (public-domain photo)")
                error_box = gr.HTML("", visible=False, elem_id="ffaa-error")
                faces_img = gr.Image(label="Faces found", type="pil", interactive=False, elem_id="ffaa-faces",
                                     buttons=["fullscreen"], height=360)
                with gr.Row():
                    dl_json = gr.DownloadButton("JSON report", interactive=False, size="sm", min_width=90,
                                                elem_id="ffaa-dl-json")
                    dl_md = gr.DownloadButton("Markdown report", interactive=False, size="sm", min_width=90,
                                              elem_id="ffaa-dl-md")
                    dl_html = gr.DownloadButton("HTML report", interactive=False, size="sm", min_width=90,
                                                elem_id="ffaa-dl-html")
                new_btn = gr.Button("New case", variant="secondary", elem_id="ffaa-new")
                with gr.Accordion("Options", open=False):
                    first_question = gr.Textbox(label="Question for the first answer (optional)",
                                                max_length=MAX_QUESTION_CHARS,
                                                placeholder="Default: one of FFAA's ten questions")
                    face_mode = gr.Radio(FACE_MODES, value=options.face_mode, label="Analyse")
            with gr.Column(scale=3, min_width=400):
                cards = gr.HTML(verdict_cards_html(None), elem_id="ffaa-verdict")
                chatbot = gr.Chatbot(label="Conversation", elem_id="ffaa-chat", height=520, buttons=["copy"],
                                     feedback_options=None, allow_tags=False, latex_delimiters=[],
                                     sanitize_html=True, placeholder="The analysis appears here.")
                face_sel = gr.Radio([], label="Ask about", visible=False, elem_id="ffaa-face")
                with gr.Row():
                    question = gr.Textbox(show_label=False, placeholder="Ask a follow-up question about this face…",
                                          max_length=MAX_QUESTION_CHARS, scale=5, elem_id="ffaa-question")
                    ask_btn = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="ffaa-ask")
                with gr.Accordion("Other candidates and their scores", open=False, elem_id="ffaa-cands"):
                    candidates = gr.HTML(candidates_html(None))
        # A hidden trigger gives the analysis a clean API endpoint: file in, case record out.
        api_file = gr.File(visible=False)
        api_out = gr.Textbox(visible=False)
        api_btn = gr.Button(visible=False)

        h.page = Page(state, chatbot, cards, faces_img, candidates, dl_json, dl_md, dl_html, face_sel, error_box,
                      question, ask_btn, upload)
        view = [c for c in h.page.all() if c is not upload]
        ask_view = [state, chatbot, dl_json, dl_md, dl_html, error_box, question, ask_btn]
        private = {"api_visibility": "private"}
        analyzing = (
            upload.change(h.receive, [upload, first_question, face_mode], view, api_name="ui_receive",
                          show_progress="hidden", **private)
            .then(lambda s: _stop_unless(s.pending is not None), state, None, show_progress="hidden", **private)
            .success(h.analyze, state, view, api_name="ui_analyze", concurrency_limit=1, concurrency_id=MODEL,
                     show_progress="minimal", show_progress_on=[chatbot], **private)
        )
        answering = (
            gr.on([ask_btn.click, question.submit], h.accept_question, [question, face_sel, state], ask_view,
                  api_name="ui_question",
                  show_progress="hidden", **private)
            .then(lambda s: _stop_unless(s.question is not None), state, None, show_progress="hidden", **private)
            .success(h.answer, state, ask_view, api_name="ui_answer", concurrency_limit=1, concurrency_id=MODEL,
                     show_progress="hidden", **private)
        )
        for trigger, name in ((new_btn.click, "ui_reset"), (chatbot.clear, "ui_clear")):
            trigger(h.reset, None, h.page.all(), api_name=name, cancels=[analyzing, answering], **private)
        # A new image stops whatever the model was still doing for this session's old one.
        upload.change(None, None, None, cancels=[analyzing, answering], **private)
        api_btn.click(h.api_analyze, api_file, api_out, api_name="analyze", concurrency_limit=1, concurrency_id=MODEL)
    return demo


def _header(options: UiOptions, assistant: Assistant) -> None:
    info = assistant.backend.info
    intro = ("Upload a face image: the model writes three candidate analyses per face and a decider picks one. "
             "Then ask follow-up questions about the face. Answers come from a model and can be wrong.")
    lines = [f"# {options.title}", intro]
    local = Path(info.model_id).expanduser()
    model = local.name if local.is_absolute() or local.exists() else info.model_id  # no server paths
    if options.demo or info.demo:
        lines.append(f"**Demo mode:** `{model}` is not a trained model (random weights or fixed rules); "
                     "its answers are not an analysis.")
    else:
        lines.append(f"Model `{model}` · decider {assistant.decider.name}")
    gr.Markdown("\n\n".join(lines), elem_id="ffaa-header")


CSS = """
#ffaa-header p { margin: .2rem 0; }
.ffaa-empty { color: var(--body-text-color-subdued); padding: .5rem 0; }
.ffaa-cards { display: flex; flex-wrap: wrap; gap: .75rem; }
.ffaa-card { flex: 1 1 15rem; border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .6rem .8rem; }
.ffaa-card-head { display: flex; justify-content: space-between; align-items: center; margin-bottom: .4rem; }
.ffaa-face { font-weight: 600; }
.ffaa-badge { font-weight: 700; letter-spacing: .04em; padding: .1rem .7rem; border-radius: 999px; color: #fff; }
.ffaa-fake { background: #dc2626; } .ffaa-real { background: #16a34a; } .ffaa-undecided { background: #64748b; }
.ffaa-facts { display: grid; grid-template-columns: auto 1fr; gap: .15rem .8rem; margin: 0; }
.ffaa-facts dt { color: var(--body-text-color-subdued); } .ffaa-facts dd { margin: 0; font-weight: 600; }
.ffaa-detectors { margin-top: .6rem; font-size: .9em; }
.ffaa-det-badge { font-weight: 700; padding: 0 .5rem; border-radius: 999px; color: #fff; } \
.ffaa-no-verdict { background: #64748b; } \
.ffaa-detectors table { border-collapse: collapse; width: 100%; }
.ffaa-detectors th, .ffaa-detectors td { text-align: left; padding: .15rem .4rem; \
border-bottom: 1px solid var(--border-color-primary); }
.ffaa-detectors tr[data-vote="fake"] td { color: rgb(220, 38, 38); } \
.ffaa-det-rule { color: var(--body-text-color-subdued); margin: .2rem 0; }
.ffaa-notes { margin: .5rem 0 0 1rem; color: #92400e; font-size: .9em; }
.ffaa-demo { margin-top: .5rem; background: #fef3c7; color: #92400e; padding: .4rem .6rem; border-radius: 6px; }
.ffaa-error { background: #fef2f2; border: 1px solid #fecaca; color: #991b1b; \
padding: .6rem .8rem; border-radius: 6px; }
.ffaa-cands table { width: 100%; border-collapse: collapse; font-size: .9em; margin-bottom: .8rem; }
.ffaa-cands th, .ffaa-cands td { text-align: left; padding: .25rem .4rem; \
border-bottom: 1px solid var(--border-color-primary); vertical-align: top; }
.ffaa-cands tr.ffaa-chosen { background: var(--background-fill-secondary); }
.ffaa-cands pre { white-space: pre-wrap; font-size: .85em; }
"""
