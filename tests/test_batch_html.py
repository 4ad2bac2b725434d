"""The batch report in a real browser (Debian's chromium): it renders, sorts and filters."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_batch_support import build_corpus

from ffaa.batch import BatchConfig, EngineSettings, ScriptedAssistantFactory, VideoOptions, run_batch

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]


@pytest.fixture(scope="module")
def report(tmp_path_factory, shared_fixtures) -> Path:
    root = tmp_path_factory.mktemp("html")
    build_corpus(root / "in", shared_fixtures, big=False)
    engine = EngineSettings(video=VideoOptions(every_seconds=0.5))
    run_batch(BatchConfig(out=root / "out", inputs=(str(root / "in"),), engine=engine, progress=False),
              ScriptedAssistantFactory())
    return root / "out" / "report.html"


@pytest.mark.browser
def test_report_sorts_and_filters_in_chromium(report):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(report.as_uri())
        shown = page.locator("#shown")
        assert shown.inner_text() == "11"
        page.fill("#q", "clip")
        assert shown.inner_text() == "1" and page.locator("#items tbody tr:visible").count() == 1
        page.fill("#q", "")
        page.select_option("#fs", "error")
        assert shown.inner_text() == "6"
        page.select_option("#fs", "")
        page.click("th[data-key=score]")
        page.click("th[data-key=score]")  # descending: the fakest first
        scores = page.eval_on_selector_all("#items tbody tr", "rs => rs.map(r => r.dataset.score)")
        numbers = [float(s) for s in scores if s]
        assert numbers == sorted(numbers, reverse=True) and len(numbers) == 5
        assert page.locator("svg[aria-label='forgery score per sampled frame']").count() == 3
        assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        browser.close()
    assert problems == []
