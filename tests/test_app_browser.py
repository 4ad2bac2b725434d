"""The app in a real browser (Debian's chromium driven by Playwright).

One scripted session: load the page, upload a face, read the verdict and the reasoning, ask a
follow-up and watch the answer stream in, download the reports, then upload a non-image and
see the error while the app keeps serving. Set FFAA_APP_SCREENSHOT=docs/app_screenshot.png to
also save the screenshot used in the README.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = os.environ.get("FFAA_CHROMIUM", "/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword is deprecated"),
    pytest.mark.skipif(not Path(CHROMIUM).exists() and shutil.which("chromium") is None,
                       reason=f"chromium not found at {CHROMIUM} (apt-get install chromium)"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
pytest.importorskip("dlib")
pytest.importorskip("gradio")
skdata = pytest.importorskip("skimage.data")

from makers import free_port

from ffaa.app import ServerOptions, build_ui, launch
from ffaa.app.ui import UiOptions
from ffaa.backends.scripted import ScriptedBackend
from ffaa.decision import MajorityDecider
from ffaa.pipeline import Assistant

BROWSER_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking"]
HOSTILE_QUESTION = "Is <img src=x onerror=window.__pwned=1> ![p](http://198.51.100.7/p.png) real?"
BOT = "#ffaa-chat [data-testid='bot']"


class EchoBackend(ScriptedBackend):
    """Streams "You asked: <question>" and then the scripted answer, word by word."""

    def stream(self, request, settings):
        question = request.prompt.rsplit("USER: ", 1)[-1].removesuffix(" ASSISTANT:")
        words = f"You asked: {question}".split(" ") + self.answer(request).split(" ")
        for i, word in enumerate(words):
            time.sleep(self.delay)
            yield word if i == 0 else " " + word


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("upload")
    face = folder / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(face)
    notes = folder / "notes.txt"
    notes.write_text("meeting notes, not a picture", encoding="utf-8")
    return {"face": face, "notes": notes}


@pytest.fixture(scope="module")
def app_url(files):
    pytest.importorskip("torch")
    from ffaa.detectors.config import DetectorsConfig, parse_detectors
    from ffaa.detectors.runner import DetectorSet

    examples = (str(files["face"]),)
    detectors = DetectorSet.load(DetectorsConfig(parse_detectors("meso4=demo,xception=demo")))
    assistant = Assistant(EchoBackend(delay=0.04), MajorityDecider(), detectors=detectors)
    demo = build_ui(assistant, UiOptions(examples=examples, demo=True))
    url = launch(demo, ServerOptions(port=free_port(), quiet=True), block=False)
    yield url
    demo.close()


@pytest.fixture()
def page(app_url):
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.outside = []  # every request that left the app's own server
        page.errors = []  # console errors and failed requests (a stopped event chain must not be a 500)
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: page.errors.append(f"{r.status} {r.url}") if r.status >= 500 else None)
        page.on("request", lambda r: page.outside.append(r.url)
                if not r.url.startswith((app_url, "data:", "blob:")) else None)
        page.goto(app_url)
        page.wait_for_selector("#ffaa-upload input[type=file]", state="attached")
        yield page
        browser.close()


def upload(page, path: Path) -> None:
    page.locator("#ffaa-upload input[type=file]").set_input_files(str(path))


def test_analysis_follow_up_downloads_and_errors(page, files, tmp_path):
    # -- first turn: the analysis --------------------------------------------------------
    upload(page, files["face"])
    badge = page.locator("#ffaa-verdict .ffaa-badge")
    badge.wait_for()
    verdict = badge.inner_text().strip().lower()
    assert verdict in ("real", "fake")
    facts = page.locator("#ffaa-verdict .ffaa-facts").inner_text()
    for label in ("Probability of forgery", "Forgery type", "Match score", "Difficulty"):
        assert label in facts
    assert page.locator("#ffaa-faces img").get_attribute("src")
    detectors = page.locator("#ffaa-verdict .ffaa-detectors")  # the classic detectors beside FFAA's answer
    assert "Classic detectors" in detectors.inner_text()
    assert re.search(r"Meso4\s+0\.\d{3}\s+(real|fake)\s+\d+\.\d\d s", detectors.inner_text())
    reasoning = page.locator("#ffaa-chat").get_by_text(
        f"Scripted reasoning: the skin texture and boundaries look {verdict}")
    assert not reasoning.is_visible()  # collapsed until asked for
    page.locator("#ffaa-chat .thought", has_text="Reasoning — Face 1").locator(".title").click()
    reasoning.wait_for()

    if os.environ.get("FFAA_APP_SCREENSHOT"):
        ask(page, "Which parts of the face did you look at?")
        page.locator(BOT).last.filter(has_text="Forgery type: ").wait_for()
        save_screenshot(page, Path(os.environ["FFAA_APP_SCREENSHOT"]))

    # -- a follow-up, streamed ---------------------------------------------------------------
    bots_before = page.locator(BOT).count()
    ask(page, HOSTILE_QUESTION)
    partial = page.wait_for_function(
        """([sel, n]) => { const m = document.querySelectorAll(sel);
               if (m.length <= n) return null;
               const t = m[m.length - 1].innerText;
               return t.includes('You asked') && !t.includes('Forgery type:') ? t : null; }""",
        arg=[BOT, bots_before], polling=20)
    assert "Forgery type:" not in partial.json_value()  # seen before the answer was complete
    assert page.locator("#ffaa-ask").is_disabled()  # one question at a time
    page.locator(BOT).last.filter(has_text="Forgery type: ").wait_for()
    page.locator("#ffaa-ask:enabled").wait_for()
    answer = page.locator(BOT).last.inner_text()
    assert "You asked: Is <img src=x onerror=window.__pwned=1> ![p](http://198.51.100.7/p.png) real?" in answer
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#ffaa-chat img[src='x'], #ffaa-chat img[src*='198.51.100.7']").count() == 0
    assert page.outside == []  # no font CDN, no analytics, no injected image fetch

    # -- downloads hold the analysis and the conversation -----------------------------------
    report = json.loads(download(page, "#ffaa-dl-json", tmp_path).read_text(encoding="utf-8"))
    assert report["reports"][0]["summary"]["verdict"] == verdict
    assert report["conversation"][-1]["question"] == HOSTILE_QUESTION
    assert report["conversation"][-1]["first_token_s"] <= report["conversation"][-1]["total_s"]
    html_page = download(page, "#ffaa-dl-html", tmp_path).read_text(encoding="utf-8")
    assert 'src="data:image/jpeg;base64,' in html_page and "&lt;img src=x" in html_page
    assert "## Explanation" in download(page, "#ffaa-dl-md", tmp_path).read_text(encoding="utf-8")

    # -- a non-image: a clear message, and the app goes on serving ---------------------------
    page.locator("#ffaa-new").click()
    page.locator("#ffaa-verdict .ffaa-empty").wait_for()
    assert page.locator(BOT).count() == 0
    upload(page, files["notes"])
    error = page.locator("#ffaa-error .ffaa-error")
    error.wait_for()
    assert re.match(r"notes\.txt: not an image \(text\); supported formats: JPEG, PNG", error.inner_text())
    assert page.locator(".toast-body", has_text="notes.txt: not an image").count() >= 1
    page.locator("#ffaa-new").click()
    error.wait_for(state="hidden")
    page.get_by_text("astronaut.png").first.click()  # the example
    page.locator("#ffaa-verdict .ffaa-badge").wait_for()
    assert page.errors == []


def ask(page, question: str) -> None:
    page.locator("#ffaa-question textarea").fill(question)
    page.locator("#ffaa-ask").click()


def download(page, button: str, folder: Path) -> Path:
    with page.expect_download() as info:
        page.locator(button).click()
    target = folder / info.value.suggested_filename
    info.value.save_as(target)
    return target


def save_screenshot(page, path: Path) -> None:
    """A palette PNG of the viewport: small enough to keep in the repository."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".raw.png")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(raw))
    image = Image.open(raw).convert("RGB")
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    raw.unlink()
