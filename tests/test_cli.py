"""The command line: help, one-line errors, where MIDS weights are looked for."""

from __future__ import annotations

import pytest

from ffaa.cli import build_parser, main
from ffaa.errors import FfaaError
from ffaa.spec import AssistantSpec


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("analyze", "batch", "app", "eval", "bench", "convert-mids"):
        assert command in out


def find_mids(**kw):
    return AssistantSpec(**kw).find_mids()


def test_mids_lookup(tmp_path, monkeypatch, caplog):
    assert find_mids(no_mids=True) is None
    with pytest.raises(FfaaError, match="MIDS weights not found"):
        find_mids(mids=str(tmp_path / "nope.pth"))
    assert find_mids(model=str(tmp_path)) is None
    (tmp_path / "mids.pth").write_bytes(b"x")
    assert find_mids(model=str(tmp_path)) == tmp_path / "mids.pth"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert find_mids(model="nobody/no-such-model") is None
    assert "majority vote" in caplog.text


def test_options_are_checked_before_any_model_is_loaded(capsys):
    code = main(["analyze", "x.png", "--model", "/nowhere/model", "--device", "cpu", "--max-new-tokens", "0"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "error: --max-new-tokens must be at least 1"


def test_parser_builds_without_heavy_imports():
    parser = build_parser()
    args = parser.parse_args(["analyze", "a.png", "--json"])
    assert args.json and args.images == ["a.png"]


def test_bad_max_pixels_is_refused_not_ignored(capsys):
    for value in ("0", "-5"):
        code = main(["analyze", "x.png", "--model", "/nowhere/model", "--device", "cpu", "--max-pixels", value])
        assert code == 2
        assert capsys.readouterr().err.strip() == f"error: --max-pixels must be at least 1, got {value}"


def test_unwritable_heatmap_folder_fails_before_the_model_loads(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    code = main(["analyze", "x.png", "--model", "/nowhere/model", "--device", "cpu",
                 "--heatmap", str(blocker / "maps")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --heatmap {blocker / 'maps'}: cannot create the folder") and "\n" not in err


def test_heatmap_path_that_is_a_file_is_named_as_such(tmp_path, capsys):
    blocker = tmp_path / "maps"
    blocker.write_text("not a folder", encoding="utf-8")
    assert main(["analyze", "x.png", "--model", "/nowhere/model", "--device", "cpu", "--heatmap", str(blocker)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --heatmap {blocker} is a file, not a folder"


def test_a_video_given_to_analyze_points_to_batch(tmp_path):
    import sys
    from pathlib import Path

    pytest.importorskip("av")
    sys.path.insert(0, str(Path(__file__).parent))
    from makers import counter_frames, write_video

    from ffaa.commands.analyze import _video_hint

    video = write_video(tmp_path / "clip.jpg", counter_frames(3), container="mp4")  # named like an image
    assert _video_hint(str(video)) == (f"; analyse videos with `ffaa batch {video} --out DIR` "
                                       "(sampled frames, a video verdict)")
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert _video_hint(str(tmp_path / "x.png")) == "" and _video_hint(str(tmp_path / "missing.png")) == ""


def test_mids_commands_under_the_mids_group(capsys):
    with pytest.raises(SystemExit):
        main(["mids", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in ("convert-mids", "train-mids", "mids-data"))


# -- messages on stderr: the handler the CLI (and app.py) installs ----------------------------


def _log_everything() -> None:
    import logging

    log = logging.getLogger("ffaa.some.module")
    log.debug("a detail")
    log.info("a note")
    log.info("converting x ...", extra={"progress": True})
    log.warning("warning: something to know")
    log.error("a failure")


@pytest.mark.parametrize("level, expected", [
    (0, ["converting x ...", "warning: something to know", "a failure"]),  # as the prints were
    (-1, ["a failure"]),
    (1, [f"ffaa.some.module: {m}" for m in ("a note", "converting x ...", "warning: something to know", "a failure")]),
    (2, [f"ffaa.some.module: {m}" for m in ("a detail", "a note", "converting x ...",
                                           "warning: something to know", "a failure")]),
])
def test_cli_logging_shows_ffaa_messages_on_stderr_by_verbosity(level, expected, capsys):
    from ffaa.cli import cli_logging

    with cli_logging(level):
        _log_everything()
    captured = capsys.readouterr()
    assert captured.err.splitlines() == expected and captured.out == ""


def test_cli_logging_leaves_the_ffaa_logger_as_it_found_it(capsys):
    import logging

    from ffaa.cli import cli_logging

    logger = logging.getLogger("ffaa")
    before = (logger.level, logger.propagate, list(logger.handlers))
    with pytest.raises(KeyboardInterrupt):
        with cli_logging(2):
            raise KeyboardInterrupt
    assert (logger.level, logger.propagate, list(logger.handlers)) == before
    _log_everything()  # no handler of ours left: nothing reaches capsys's stderr
    assert "converting" not in capsys.readouterr().err


def test_verbose_and_quiet_are_global_options():
    from ffaa.cli import verbosity

    parser = build_parser()
    assert verbosity(parser.parse_args(["detectors", "list"])) == 0
    assert verbosity(parser.parse_args(["-v", "detectors", "list"])) == 1
    assert verbosity(parser.parse_args(["-vv", "detectors", "list"])) == 2
    assert verbosity(parser.parse_args(["--quiet", "detectors", "list"])) == -1
    with pytest.raises(SystemExit):
        parser.parse_args(["-q", "-v", "detectors", "list"])
