"""The served app through its HTTP API: gradio_client against a real server in a thread.

The assistant runs the rule-based ScriptedBackend, so the analysis is real code end to end
(upload, checks, face detection, three candidates, decision, report) without a model.
"""

from __future__ import annotations

import json
import time

import pytest
from PIL import Image

pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword is deprecated")
pytest.importorskip("dlib")
pytest.importorskip("gradio")
skdata = pytest.importorskip("skimage.data")
client_mod = pytest.importorskip("gradio_client")

from makers import free_port

from ffaa.app import ServerOptions, build_ui, launch
from ffaa.app.ui import UiOptions
from ffaa.backends.scripted import ScriptedBackend
from ffaa.decision import MajorityDecider
from ffaa.pipeline import Assistant
from ffaa.report import report_from_dict


class TimedBackend(ScriptedBackend):
    """Scripted answers that take 0.3 s and record when each batch ran."""

    def __init__(self):
        super().__init__()
        self.spans: list[tuple[float, float]] = []

    def generate(self, requests, settings):
        start = time.perf_counter()
        time.sleep(0.3)
        out = super().generate(requests, settings)
        self.spans.append((start, time.perf_counter()))
        return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    face = folder / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(face)
    text = folder / "notes.png"
    text.write_text("this is not an image", encoding="utf-8")
    big = folder / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 1_500_000)
    return {"face": face, "text": text, "big": big}


@pytest.fixture(scope="module")
def served():
    backend = TimedBackend()
    demo = build_ui(Assistant(backend, MajorityDecider()), UiOptions(max_file_size="1mb"))
    url = launch(demo, ServerOptions(port=free_port(), max_file_size="1mb", quiet=True), block=False)
    yield demo, url, backend
    demo.close()


def test_analyze_endpoint_returns_the_case_record(served, images):
    _, url, _ = served
    client = client_mod.Client(url, verbose=False)
    record = json.loads(client.predict(client_mod.handle_file(str(images["face"])), api_name="/analyze"))
    assert record["schema"] == "ffaa.case/1" and record["image"] == "astronaut.png"
    assert len(record["reports"]) == 1
    report = report_from_dict(record["reports"][0])
    assert report.face_index == 0 and len(report.candidates) == 3
    assert report.provenance.backend == "scripted" and report.provenance.demo
    assert record["reports"][0]["summary"]["verdict"] == report.decision.verdict.value
    # ScriptedBackend follows each hypothesis, so the vote is 2:1 and "hard"
    assert report.decision.difficulty == "hard"
    assert record["reports"][0]["summary"]["agreement"] == f"2/3 say {report.decision.verdict.value}"


def test_a_non_image_gets_a_clear_error_and_the_server_keeps_serving(served, images):
    _, url, _ = served
    client = client_mod.Client(url, verbose=False)
    with pytest.raises(client_mod.exceptions.AppError, match=r"notes\.png: not an image \(text\)"):
        client.predict(client_mod.handle_file(str(images["text"])), api_name="/analyze")
    again = json.loads(client.predict(client_mod.handle_file(str(images["face"])), api_name="/analyze"))
    assert len(again["reports"]) == 1


def test_model_requests_run_one_at_a_time(served, images):
    _, url, backend = served
    clients = [client_mod.Client(url, verbose=False) for _ in range(2)]
    backend.spans.clear()
    jobs = [c.submit(client_mod.handle_file(str(images["face"])), api_name="/analyze") for c in clients]
    assert all(json.loads(job.result(timeout=60))["reports"] for job in jobs)
    (_, first_end), (second_start, _) = sorted(backend.spans)
    assert first_end <= second_start, "two model requests overlapped"


def test_safe_server_settings(served):
    demo, url, _ = served
    assert url.startswith("http://127.0.0.1:")
    assert demo.share is False and demo.allowed_paths == [] and demo.max_file_size == 1024 * 1024
    assert demo.delete_cache == (1800, 3600)
    model_fns = {fn.name: fn.concurrency_limit for fn in demo.fns.values() if fn.concurrency_id == "model"}
    assert model_fns == {"analyze": 1, "answer": 1, "api_analyze": 1}
    public = sorted(fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public")
    assert public == ["analyze"]


def test_oversized_upload_is_refused_by_the_server(served, images):
    import httpx

    _, url, _ = served
    with open(images["big"], "rb") as fh:
        response = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.png", fh, "image/png")}, timeout=30)
    assert response.status_code == 413
    assert "maximum allowed size" in response.text


def test_auth_protects_the_page_and_the_api(images):
    import httpx

    demo = build_ui(Assistant(ScriptedBackend(), MajorityDecider()), UiOptions())
    url = launch(demo, ServerOptions(port=free_port(), auth=(("ann", "s3cret"),), quiet=True), block=False)
    try:
        assert httpx.get(f"{url}config", timeout=10).status_code in (401, 403)
        with pytest.raises(client_mod.exceptions.AuthenticationError, match="credentials were not provided"):
            client_mod.Client(url, verbose=False)
        client = client_mod.Client(url, auth=("ann", "s3cret"), verbose=False)
        record = json.loads(client.predict(client_mod.handle_file(str(images["face"])), api_name="/analyze"))
        assert record["reports"]
    finally:
        demo.close()


def test_pages_load_while_the_model_works(served, images):
    """The queue holds model requests only: the page's config answers during generation."""
    import httpx

    _, url, _ = served
    client = client_mod.Client(url, verbose=False)
    job = client.submit(client_mod.handle_file(str(images["face"])), api_name="/analyze")
    deadline = time.time() + 10
    while job.status().code.name != "PROCESSING" and time.time() < deadline:
        time.sleep(0.01)
    start = time.perf_counter()
    assert httpx.get(f"{url}config", timeout=10).status_code == 200
    assert time.perf_counter() - start < 0.25  # a model request takes over 0.3 s here
    assert not job.done()
    assert json.loads(job.result(timeout=60))["reports"]
