"""`run_batch` end to end on the scripted backend: every kind of input, every output file."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import makers
import pytest
from test_batch_support import build_corpus, by_record, noise_images, read_jsonl

from ffaa.backends.scripted import ScriptedBackend
from ffaa.batch import (
    BatchConfig,
    BatchInterrupted,
    EngineSettings,
    GenerationFailed,
    OutputError,
    ScriptedAssistantFactory,
    VideoOptions,
    bench_batch,
    load_summary,
    run_batch,
)
from ffaa.batch.journal import LOG_NAME
from ffaa.cli import main
from ffaa.decision import MajorityDecider
from ffaa.pipeline import AnalysisOptions, Assistant
from ffaa.report import report_from_dict, report_to_dict

VIDEO = VideoOptions(every_seconds=0.5)
WHOLE = AnalysisOptions(face_mode="whole")


class Recording:
    """A factory that keeps the assistants it builds, to look at their backends afterwards."""

    def __init__(self, backend_cls=ScriptedBackend, options=None, **kwargs):
        self.backend_cls, self.options, self.kwargs = backend_cls, options, kwargs
        self.built: list[Assistant] = []

    def __call__(self) -> Assistant:
        assistant = Assistant(self.backend_cls(**self.kwargs), MajorityDecider(), options=self.options)
        self.built.append(assistant)
        return assistant


def config(out: Path, *inputs, **kw) -> BatchConfig:
    kw.setdefault("engine", EngineSettings(video=VIDEO))
    return BatchConfig(out=out, inputs=tuple(str(i) for i in inputs), progress=False, **kw)


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, shared_fixtures):
    root = tmp_path_factory.mktemp("corpus")
    files = build_corpus(root / "in", shared_fixtures)
    factory = Recording()
    result = run_batch(config(root / "out", root / "in"), factory)
    return root / "out", files, result, factory


def test_every_input_gets_one_committed_item_and_all_outputs_exist(corpus_run):
    out, files, result, _ = corpus_run
    assert {p.name for p in out.iterdir()} == {LOG_NAME, "report.html", "summary.md", "summary.csv", "thumbs"}
    records = read_jsonl(out / LOG_NAME)
    items = by_record(records, "item")
    # 4 images (the copy merged), 3 videos, 5 junk files; hidden file and symlink loop skipped
    assert result.found == len(items) == 12 and result.written == 12 and result.errors == 6
    assert len({r["batch"]["key"] for r in items}) == 12
    hashed = [r for r in records[1:] if r["batch"]["path"] != str(files["empty_video"])]
    assert all(r["batch"]["sha256"] and r["batch"]["key"] == "sha256:" + r["batch"]["sha256"] for r in hashed)
    empty = {r["batch"]["key"] for r in records[1:]} - {r["batch"]["key"] for r in hashed}
    assert empty == {f"path:{files['empty_video']}"}  # empty files are not copies of one another
    celeba = next(r for r in items if r["batch"]["item_id"] == "real_celeba3.jpg")
    assert celeba["batch"]["paths"] == [str(files["real_celeba3.jpg"]), str(files["dup"])]
    assert sum(1 for r in by_record(records, "face") if r["batch"]["key"] == celeba["batch"]["key"]) == 1


def test_face_records_are_reports_plus_batch_fields(corpus_run):
    out, files, _, _ = corpus_run
    faces = by_record(read_jsonl(out / LOG_NAME), "face")
    for record in faces:
        plain = {k: v for k, v in record.items() if k not in ("record", "batch")}
        assert report_to_dict(report_from_dict(record)) == plain
        assert (out / "thumbs" / record["batch"]["crop"]).is_file()
    dark = next(r for r in faces if r["batch"]["path"] == str(files["dark"]))
    assert dark["summary"]["verdict"] == "fake" and dark["face"] is not None


def test_errors_are_records_with_reasons(corpus_run):
    out, files, _, _ = corpus_run
    errors = {Path(r["batch"]["path"]).name: r for r in by_record(read_jsonl(out / LOG_NAME), "error")}
    assert "not an image (text)" in errors["notes.jpg"]["reason"]
    assert "not an image (an HTML page)" in errors["page.jpg"]["reason"]
    assert "not an image (a ZIP archive)" in errors["archive.jpg"]["reason"]
    assert "empty file (0 bytes)" in errors["empty.mp4"]["reason"]
    assert errors["noface.mkv"]["stage"] == "faces"
    assert errors["noface.mkv"]["reason"] == "no face found in any of the 4 sampled frames"
    assert files["evil"].name in errors


def test_video_timeline_aggregate_and_partial_decode(corpus_run):
    out, files, _, _ = corpus_run
    records = read_jsonl(out / LOG_NAME)
    videos = {Path(r["batch"]["path"]).name: r for r in by_record(records, "video")}
    clip = videos["clip.mp4"]
    assert [p["verdict"] for p in clip["timeline"]] == ["real"] * 3 + ["fake"] * 3
    assert [p["timestamp"] for p in clip["timeline"]] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    agg = clip["aggregate"]
    assert (agg["rule"], agg["mean"], agg["fake_share"], agg["max"]) == ("mean", 0.5, 0.5, 0.633333)
    assert agg["verdict"] == "fake" and not clip["partial"]
    frames = [r["batch"]["frame_index"] for r in by_record(records, "face") if r["batch"]["path"] == str(files["clip"])]
    assert frames == [0, 5, 10, 15, 20, 25]
    cut = videos["cut.mp4"]
    assert cut["partial"] and "truncated" in cut["decode"]["error"] and cut["aggregate"]["frames_scored"] >= 1
    (cut_item,) = [r for r in by_record(records, "item") if r["batch"]["path"] == str(files["cut"])]
    assert cut_item["status"] == "partial" and cut_item["reason"].startswith("video partly decoded")


def test_faces_of_several_items_share_generate_calls(corpus_run):
    _, _, _, factory = corpus_run
    (assistant,) = factory.built
    batches = assistant.backend.batches
    faces = sum(batches) // 3
    assert max(batches) == 12  # 4 faces x 3 candidates: one full call
    assert len(batches) < faces / 2  # far fewer calls than one per item


def test_summaries_count_and_escape(corpus_run):
    out, _, _, _ = corpus_run
    md = (out / "summary.md").read_text()
    assert "| errors | 6 |" in md and "| partial videos | 1 |" in md and "| duplicates | 1 item(s)" in md
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    assert sum(r["level"] == "item" for r in rows) == 12
    clip_faces = [r for r in rows if r["level"] == "face" and r["item_id"] == "clip.mp4"]
    assert [r["timestamp"] for r in clip_faces][:2] == ["0.0", "0.5"]
    page = (out / "report.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt; &amp; &#x27;q&#x27;.txt" in page
    assert page.count("<script>") == 1 and "http://" not in page and "https://" not in page
    assert page.count("data:image/jpeg;base64,") >= 15 and page.count("<svg") == 3
    assert "<b>real_celeba3.jpg · sub/copy of celeba.jpg</b>" in page  # a copy keeps its own id


def test_rerun_refuses_a_used_folder_and_resume_skips_what_is_done(corpus_run, tmp_path):
    out, files, _, _ = corpus_run
    root = files["clip"].parent
    with pytest.raises(OutputError, match="is not empty: add --resume"):
        run_batch(config(out, root), Recording())
    before = by_record(read_jsonl(out / LOG_NAME), "item")
    again = run_batch(config(out, root, resume=True), Recording())
    assert (again.found, again.skipped, again.written) == (12, 12, 0)
    assert by_record(read_jsonl(out / LOG_NAME), "item") == before
    assert len(by_record(read_jsonl(out / LOG_NAME), "run")) == 1  # a resume with nothing to do adds no run


def test_triage_then_explain_flagged(tmp_path, shared_fixtures):
    files = build_corpus(tmp_path / "in", shared_fixtures, big=False)
    inputs = [files[k] for k in ("real_celeba3.jpg", "fake_pggan4.png", "dark", "clip")]
    triage = EngineSettings(mode="triage", video=VIDEO)
    factory = Recording()
    run_batch(config(tmp_path / "out", *inputs, engine=triage), factory)
    records = read_jsonl(tmp_path / "out" / LOG_NAME)
    faces = by_record(records, "face")
    assert all(r["decision"]["method"] == "triage" and r["candidates"] == [] and r["batch"]["mode"] == "triage"
               for r in faces)
    assert all(0.0 <= r["decision"]["forgery_score"] <= 1.0 for r in faces)
    flagged = {r["batch"]["key"] for r in by_record(records, "item") if r["flagged"]}
    assert next(r for r in faces if r["batch"]["path"] == str(files["dark"]))["batch"]["key"] in flagged
    assert factory.built[0].backend.batches == []  # triage never generated text

    assert main(["batch", "--explain-flagged", "--out", str(tmp_path / "out"), "--backend", "scripted",
                 "--no-progress", "--every-seconds", "0.5"]) == 0
    records = read_jsonl(tmp_path / "out" / LOG_NAME)
    full = {r["batch"]["key"] for r in by_record(records, "item") if r["batch"]["mode"] == "full"}
    assert full == flagged
    summary = load_summary(tmp_path / "out")
    modes = {v.batch["key"]: v.batch["mode"] for v in summary.items if v.batch["key"] in flagged}
    assert modes == dict.fromkeys(flagged, "full")  # the full analysis replaces the triage verdict


def test_unparseable_answers_make_undecided_items(tmp_path):
    images = noise_images(tmp_path / "in", 3)
    factory = ScriptedAssistantFactory(AnalysisOptions(face_mode="whole"), broken_every=1)
    run_batch(config(tmp_path / "out", *images), factory)
    items = by_record(read_jsonl(tmp_path / "out" / LOG_NAME), "item")
    assert [(r["status"], r["undecided"], r["reason"]) for r in items] == [
        ("undecided", 1, "no candidate answer could be parsed")] * 3
    assert "3 undecided: no answer parsed" in (tmp_path / "out" / "summary.md").read_text()


class FailsOnSmall(ScriptedBackend):
    """Raises for 40-px images only: an item-specific failure."""

    def generate(self, requests, settings):
        if any(r.image.width == 40 for r in requests):
            raise RuntimeError("cannot handle 40 px")
        return super().generate(requests, settings)


class AlwaysFails(ScriptedBackend):
    def generate(self, requests, settings):
        raise RuntimeError("CUDA error: device lost")


def test_a_failing_item_is_isolated_from_its_group(tmp_path):
    images = noise_images(tmp_path / "in", 3) + noise_images(tmp_path / "small", 1, size=40)
    factory = Recording(FailsOnSmall, AnalysisOptions(face_mode="whole"))
    result = run_batch(config(tmp_path / "out", *images, group_faces=4), factory)
    items = by_record(read_jsonl(tmp_path / "out" / LOG_NAME), "item")
    assert result.errors == 1 and [r["status"] for r in items].count("ok") == 3
    (bad,) = [r for r in items if r["status"] == "error"]
    assert bad["stage"] == "generate" and bad["reason"] == "RuntimeError: cannot handle 40 px"


def test_a_broken_model_stops_the_run_without_recording_its_victims(tmp_path):
    images = noise_images(tmp_path / "in", 5)
    with pytest.raises(GenerationFailed, match="failed on 3 items in a row .*device lost.*--resume"):
        run_batch(config(tmp_path / "out", *images, group_faces=1), Recording(AlwaysFails, WHOLE))
    assert not (tmp_path / "out").exists()  # no item was recorded, so the run took its folder back
    result = run_batch(config(tmp_path / "out", *images, resume=True), Recording(options=WHOLE))
    assert (result.written, result.errors) == (5, 0)


def test_bench_batch_measures_the_gain_of_batching(tmp_path):
    images = noise_images(tmp_path, 8)
    bench = bench_batch(ScriptedAssistantFactory(AnalysisOptions(face_mode="whole"), delay=0.004), images)
    assert (bench.images, bench.faces, bench.group_faces) == (8, 8, 4)
    assert bench.speedup > 1.5 and bench.triage_ips > bench.batched_ips
    assert "batched / one at a time" in bench.table()


def test_bombs_are_refused_per_item(tmp_path, shared_fixtures):
    from test_batch_support import face_array, face_video

    from ffaa.media import LoadLimits

    (tmp_path / "in").mkdir()
    makers.png_header_only(tmp_path / "in" / "bomb.png", 30_000, 30_000)
    face_video(tmp_path / "in" / "big.mp4", face_array(shared_fixtures), count=5)
    factory = ScriptedAssistantFactory(AnalysisOptions(limits=LoadLimits(max_pixels=100_000)))
    run_batch(config(tmp_path / "out", tmp_path / "in"), factory)
    errors = by_record(read_jsonl(tmp_path / "out" / LOG_NAME), "error")
    reasons = {Path(r["batch"]["path"]).name: r["reason"] for r in errors}
    assert "900.0 Mpx, over the limit of 0.1 Mpx" in reasons["bomb.png"]
    assert "video frames are 320x320, over the limit of 0.1 Mpx" in reasons["big.mp4"]


def test_resume_refuses_a_folder_that_is_not_a_batch_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "holiday.jpg").write_bytes(b"x")
    images = noise_images(tmp_path / "in", 1)
    with pytest.raises(OutputError, match="cannot resume in .*: it holds files but no reports.jsonl"):
        run_batch(config(tmp_path / "out", *images, resume=True), ScriptedAssistantFactory())


def test_file_names_that_are_not_utf8_are_kept_exactly(tmp_path):
    import os

    (tmp_path / "in").mkdir()
    name = os.fsdecode(b"caf\xe9 \xff.png")  # Latin-1 bytes: not UTF-8
    noise_images(tmp_path / "tmp", 1)[0].rename(tmp_path / "in" / name)
    run_batch(config(tmp_path / "out", tmp_path / "in"), ScriptedAssistantFactory(WHOLE))
    (item,) = by_record(read_jsonl(tmp_path / "out" / LOG_NAME), "item")
    assert item["status"] == "ok" and Path(item["batch"]["path"]).name == name
    assert "caf\ufffd \ufffd.png" in (tmp_path / "out" / "report.html").read_text()


def test_resume_with_the_output_folder_inside_the_input_folder_skips_its_own_outputs(tmp_path):
    noise_images(tmp_path / "in", 2)
    out = tmp_path / "in" / "report"
    run_batch(config(out, tmp_path / "in"), ScriptedAssistantFactory(WHOLE))
    again = run_batch(config(out, tmp_path / "in", resume=True), ScriptedAssistantFactory(WHOLE))
    assert (again.found, again.skipped, again.written) == (2, 2, 0)
    assert any("inside the output folder" in w for w in again.warnings)
    assert len(by_record(read_jsonl(out / LOG_NAME), "item")) == 2


class InterruptedOnThirdCall(ScriptedBackend):
    """Ctrl-C arriving while the model works on the third item."""

    def generate(self, requests, settings):
        if len(self.batches) == 2:
            raise KeyboardInterrupt
        return super().generate(requests, settings)


def test_ctrl_c_keeps_what_was_committed_writes_summaries_and_says_how_to_resume(tmp_path):
    images = noise_images(tmp_path / "in", 5)
    out = tmp_path / "out"
    try:  # a bare KeyboardInterrupt must fail this test, not stop the whole pytest session
        run_batch(config(out, *images, group_faces=1), Recording(InterruptedOnThirdCall, WHOLE))
    except KeyboardInterrupt as exc:
        stop = exc
    assert isinstance(stop, BatchInterrupted)
    assert re.match(r"interrupted: 2 item\(s\) saved .*the summaries show them.*--resume", str(stop))
    assert "| items | 2 (image 2) |" in (out / "summary.md").read_text()
    result = run_batch(config(out, *images, group_faces=1, resume=True), Recording(options=WHOLE))
    assert (result.skipped, result.written) == (2, 3)


def test_cli_reports_an_interrupted_batch_with_exit_status_130(tmp_path, monkeypatch, capsys):
    import ffaa.batch

    def interrupted(config, factory):
        raise BatchInterrupted("interrupted: 3 item(s) saved; rerun the same command with --resume to finish")

    monkeypatch.setattr(ffaa.batch, "run_batch", interrupted)
    noise_images(tmp_path / "in", 1)
    assert main(["batch", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--backend", "scripted"]) == 130
    assert "rerun the same command with --resume" in capsys.readouterr().err


def test_a_video_cut_inside_its_first_frame_says_so_once(tmp_path, shared_fixtures):
    from test_batch_support import face_array, face_video

    whole = face_video(tmp_path / "whole.mp4", face_array(shared_fixtures), count=40, faststart=True)
    (tmp_path / "in").mkdir()
    makers.truncated(tmp_path / "in" / "cut.mp4", whole, keep=0.6)
    run_batch(config(tmp_path / "out", tmp_path / "in"), ScriptedAssistantFactory())
    (error,) = by_record(read_jsonl(tmp_path / "out" / LOG_NAME), "error")
    assert error["stage"] == "video" and error["reason"].count("no frame could be decoded") == 1


def test_a_file_fixed_before_resume_replaces_its_old_error_in_the_summaries(tmp_path):
    images = noise_images(tmp_path / "in", 2)
    broken = tmp_path / "in" / "img001.png"
    good = broken.read_bytes()
    broken.write_bytes(b"")  # empty in the first run: an error keyed by its path
    run_batch(config(tmp_path / "out", tmp_path / "in"), ScriptedAssistantFactory(WHOLE))
    broken.write_bytes(good)
    run_batch(config(tmp_path / "out", tmp_path / "in", resume=True), ScriptedAssistantFactory(WHOLE))
    assert len(by_record(read_jsonl(tmp_path / "out" / LOG_NAME), "item")) == 3  # the log keeps the history
    summary = load_summary(tmp_path / "out")
    assert sorted((v.batch["path"], v.item["status"]) for v in summary.items) == [
        (str(images[0]), "ok"), (str(broken), "ok")]


def test_output_errors_say_how_to_go_on(tmp_path, monkeypatch):
    """A thumbnail that cannot be written stops the run with the --resume hint; summaries that
    cannot be written name --summarize-only (every item is in the log)."""
    from ffaa.batch import outputs, work
    from ffaa.batch.journal import OutputError

    images = noise_images(tmp_path / "in", 3)

    def full(*args, **kwargs):
        raise OutputError("cannot write summary.md: disk full")

    monkeypatch.setattr(outputs, "write_summaries", full)
    with pytest.raises(OutputError, match=r"disk full\. Every item is in .*reports\.jsonl.*--summarize-only"):
        run_batch(config(tmp_path / "out", *images), ScriptedAssistantFactory(WHOLE))
    monkeypatch.undo()

    def thumbs_full(*args, **kwargs):
        raise OutputError("cannot write thumbs/x.jpg: disk full")

    monkeypatch.setattr(work, "analyze_group", thumbs_full)  # the loop runner and Ray workers share
    with pytest.raises(OutputError,
                       match=r"thumbs/x\.jpg: disk full\. The 0 item\(s\) written before are safe.*--resume"):
        run_batch(config(tmp_path / "out2", *images), ScriptedAssistantFactory(WHOLE))


def test_large_inputs_announce_hashing(tmp_path, monkeypatch, capsys):
    from ffaa.batch import inputs

    images = noise_images(tmp_path / "in", 2)
    monkeypatch.setattr(inputs, "HASH_NOTICE_BYTES", 0)
    run_batch(BatchConfig(out=tmp_path / "out", inputs=(str(tmp_path / "in"),), progress=True),
              ScriptedAssistantFactory(WHOLE))
    assert f"ffaa batch: hashing {len(images)} input files" in capsys.readouterr().err


def test_retry_errors_redoes_only_failed_items_and_the_summary_shows_the_new_result(tmp_path, capsys):
    images = noise_images(tmp_path / "in", 3) + noise_images(tmp_path / "small", 1, size=40)
    out = tmp_path / "out"
    first = run_batch(config(out, *images, group_faces=4), Recording(FailsOnSmall, WHOLE))
    assert first.errors == 1
    again = run_batch(config(out, *images, resume=True), ScriptedAssistantFactory(WHOLE))
    assert (again.written, again.skipped) == (0, 4)  # plain --resume keeps the error
    retried = run_batch(config(out, *images, resume=True, retry_errors=True), ScriptedAssistantFactory(WHOLE))
    assert (retried.written, retried.errors, retried.skipped) == (1, 0, 3)
    items = by_record(read_jsonl(out / LOG_NAME), "item")
    assert [r["status"] for r in items] == ["ok", "ok", "ok", "error", "ok"]  # the log keeps both
    assert "| errors | 0 |" in (out / "summary.md").read_text()
    assert main(["batch", str(tmp_path / "in"), "--out", str(out), "--retry-errors"]) == 2
    assert "use it with --resume" in capsys.readouterr().err


def test_retrying_items_that_fail_again_does_not_blame_the_model(tmp_path):
    """Three items that failed before fail again in a row when retried: they are recorded again,
    not taken for a broken model (which would stop every retry before it recorded anything)."""
    small = noise_images(tmp_path / "small", 3, size=40)
    normal = noise_images(tmp_path / "in", 3)
    inputs = [p for pair in zip(small, normal) for p in pair]  # failures between successes
    out = tmp_path / "out"
    first = run_batch(config(out, *inputs, group_faces=1), Recording(FailsOnSmall, WHOLE))
    assert first.errors == 3
    again = run_batch(config(out, *inputs, group_faces=1, resume=True, retry_errors=True),
                      Recording(FailsOnSmall, WHOLE))
    assert (again.written, again.errors) == (3, 3)
    fixed = run_batch(config(out, *inputs, resume=True, retry_errors=True), ScriptedAssistantFactory(WHOLE))
    assert (fixed.written, fixed.errors) == (3, 0)


def test_retry_errors_redoes_failed_explanations_of_flagged_items(tmp_path):
    images = noise_images(tmp_path / "small", 2, size=40)
    out = tmp_path / "out"
    triage = EngineSettings(mode="triage", video=VIDEO, triage_threshold=0.0)  # flag everything
    run_batch(config(out, *images, engine=triage), ScriptedAssistantFactory(WHOLE))
    failed = run_batch(config(out, explain_flagged=True, engine=triage), Recording(FailsOnSmall, WHOLE))
    assert (failed.written, failed.errors) == (2, 2)
    redone = run_batch(config(out, explain_flagged=True, engine=triage, retry_errors=True),
                       ScriptedAssistantFactory(WHOLE))
    assert (redone.written, redone.errors) == (2, 0)
    assert main(["batch", "--explain-flagged", "--retry-errors", "--out", str(out), "--backend", "scripted",
                 "--no-progress"]) == 0  # explain-flagged alone resumes: --retry-errors is allowed
