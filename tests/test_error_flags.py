"""Every `--flag` a user-facing message names is an option of the command line.

A message that tells the user to "give --mids-clip DIR" is only help if the command they ran
takes --mids-clip. The messages are found in the source with `ast`: the strings (f-string parts
too) inside `raise SomethingError(...)` calls, logging calls (`log.warning(...)`), warnings,
lines a command prints and notes it collects (`notes.append(...)`), and in what the module's own
helpers called there return (`raise FfaaError(_no_match_message(...))`); in ffaa/, mids/
(installed as ffaa.mids) and eval/ (ffaa.eval). A message
in a command module, ffaa/commands/<name>.py, must name an option of that command or of one of
its subcommands; elsewhere (library code that several commands share) an option of any command.
A flag inside a quoted command line, `ffaa batch FILE --out DIR`, must be one of that command's.
"""

from __future__ import annotations

import argparse
import ast
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ffaa.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("ffaa", "mids", "eval")

# Tokens in messages that look like flags but are no ffaa option. Each needs its reason.
NOT_FFAA_FLAGS: dict[str, str] = {
    "--local-dir": "huggingface_hub's `hf download REPO --local-dir DIR` (ffaa/backends/hub.py)",
    "--head": "ray's `ray start --head`, to start a cluster for --ray (ffaa/batch/distributed.py)",
}

LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
SAID = {"print", "say"}  # a command's lines on stderr
NOTE_LISTS = {"notes", "problems", "warnings", "failures"}  # lists of lines shown to the user
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*(?![\w\x00-])")
FIELD = "\x00"  # stands for an f-string's {field} in the joined message text
QUOTED_COMMAND = re.compile(r"`ffaa ([a-z][a-z0-9-]*)[^`]*`")  # a command line quoted in a message


@dataclass(frozen=True)
class Mention:
    path: Path
    line: int
    flag: str
    message: str
    command: str | None = None  # the command of the quoted command line the flag is in

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}: {self.flag} in {self.message!r}"


def message_texts(node: ast.AST) -> Iterator[str]:
    """The string literals under `node`; an f-string as one text with FIELD for each field (the
    expressions inside the fields are searched too)."""
    if isinstance(node, ast.JoinedStr):
        yield "".join(v.value if isinstance(v, ast.Constant) else FIELD for v in node.values)
        for v in node.values:
            if isinstance(v, ast.FormattedValue):
                yield from message_texts(v.value)
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    else:
        for child in ast.iter_child_nodes(node):
            yield from message_texts(child)


def _owner(func: ast.Attribute) -> str:
    return func.value.id if isinstance(func.value, ast.Name) else ""


def _is_message_call(call: ast.Call) -> bool:
    """A log record, a warning, a line on stderr or one added to a list of notes."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id in SAID
    if not isinstance(func, ast.Attribute):
        return False
    owner = _owner(func)
    return ((func.attr in LOG_METHODS and "log" in owner.lower()) or (owner == "warnings" and func.attr == "warn")
            or (func.attr == "append" and owner in NOTE_LISTS))


def message_calls(tree: ast.AST) -> Iterator[ast.Call]:
    """The calls whose arguments are messages a user reads: raised exceptions and the above."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            yield node.exc
        elif isinstance(node, ast.Call) and _is_message_call(node):
            yield node


def _helper_returns(call: ast.Call, helpers: dict[str, ast.FunctionDef]) -> Iterator[ast.AST]:
    """What the module's own functions called in the message return: the text of
    `raise FfaaError(_no_match_message(...))` is written in `_no_match_message`."""
    for node in ast.walk(call):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in helpers:
            yield from (r.value for r in ast.walk(helpers[node.func.id])
                        if isinstance(r, ast.Return) and r.value is not None)


def mentions_in(path: Path) -> Iterator[Mention]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    helpers = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
    for call in message_calls(tree):
        parts = [*call.args, *(k.value for k in call.keywords), *_helper_returns(call, helpers)]
        for text in (t for part in parts for t in message_texts(part)):
            yield from _mentions_in_text(path, call.lineno, text)


def _mentions_in_text(path: Path, line: int, text: str) -> Iterator[Mention]:
    quoted = [(m.span(), m.group(1)) for m in QUOTED_COMMAND.finditer(text)]
    for found in FLAG.finditer(text):
        command = next((name for (start, end), name in quoted if start <= found.start() < end), None)
        yield Mention(path, line, found.group(), text.replace(FIELD, "{…}"), command)


@functools.cache
def all_mentions() -> list[Mention]:
    return [m for top in SOURCES for path in sorted((REPO / top).rglob("*.py")) for m in mentions_in(path)]


# -- the command line's options ------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {name: child for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, child in action.choices.items()}


def options_below(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of `parser` and of all its subcommands, however deep."""
    found = {s for action in parser._actions for s in action.option_strings}
    for child in _subparsers(parser).values():
        found |= options_below(child)
    return found


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


def allowed_flags(parser: argparse.ArgumentParser, path: Path, command: str | None = None) -> set[str]:
    """The options a message in `path` may name: those of the command its command line quotes,
    else of the command module's command, else of every command (with the global ones)."""
    commands = _subparsers(parser)
    if command is None and path.parent == REPO / "ffaa" / "commands" and path.stem in commands:
        command = path.stem
    if command is None:
        return options_below(parser)
    own = {s for action in parser._actions for s in action.option_strings}
    return (own | options_below(commands[command])) if command in commands else set()


# -- the tests -------------------------------------------------------------------------------------


def test_every_flag_in_a_message_is_an_option(parser):
    wrong = [str(m) for m in all_mentions()
             if m.flag not in NOT_FFAA_FLAGS and m.flag not in allowed_flags(parser, m.path, m.command)]
    assert not wrong, "messages name options that do not exist:\n" + "\n".join(wrong)


def test_the_scan_finds_the_messages():
    """Guards the test above against passing because it reads nothing."""
    found = {(m.path.relative_to(REPO).as_posix(), m.flag) for m in all_mentions()}
    assert ("ffaa/media.py", "--max-pixels") in found  # a raise with an f-string
    assert ("ffaa/faces.py", "--whole-image") in found
    assert ("ffaa/commands/mids.py", "--out") in found
    assert len(found) > 50


def test_flag_tokens_of_f_strings():
    tree = ast.parse('raise FfaaError(f"use --no-such {x} or --ray-{name}; --limit={n}; not a--b nor --")\n'
                     'log.warning("%s: try --other", path)\n'
                     'warnings.warn(f"{\'--inside\'} field")\n'
                     'found.add("--not-a-message")\n')
    flags = [flag for call in message_calls(tree) for arg in call.args
             for text in message_texts(arg) for flag in FLAG.findall(text)]
    assert flags == ["--no-such", "--limit", "--other", "--inside"]


def test_a_command_module_is_held_to_its_own_command(parser):
    mids = REPO / "ffaa" / "commands" / "mids.py"
    assert "--clip" in allowed_flags(parser, mids) and "--mids-clip" in allowed_flags(parser, mids)  # mids-data
    assert "--reports" not in allowed_flags(parser, mids)  # eval's
    assert "--reports" in allowed_flags(parser, REPO / "ffaa" / "commands" / "common.py")
    assert "--verbose" in allowed_flags(parser, REPO / "ffaa" / "commands" / "detect.py")
    assert "--out" in allowed_flags(parser, mids, "batch") and "--clip" not in allowed_flags(parser, mids, "batch")
    assert not allowed_flags(parser, mids, "no-such-command")


def test_a_quoted_command_line_is_held_to_its_command():
    text = "run `ffaa batch a.mp4 --out DIR` (or `hf download x --local-dir D`), then --resume"
    assert [(m.flag, m.command) for m in _mentions_in_text(REPO, 1, text)] == [
        ("--out", "batch"), ("--local-dir", None), ("--resume", None)]


def test_the_allow_list_holds_no_ffaa_option(parser):
    assert not set(NOT_FFAA_FLAGS) & options_below(parser)


# -- the messages fixed with this test -------------------------------------------------------------


def test_the_pixel_limit_names_the_flag_and_the_python_field(tmp_path):
    from PIL import Image

    from ffaa.errors import InputError
    from ffaa.media import LoadLimits, load_image

    path = tmp_path / "x.png"
    Image.new("RGB", (20, 20)).save(path)
    with pytest.raises(InputError) as caught:
        load_image(path, LoadLimits(max_pixels=100))
    assert "raise it with --max-pixels (LoadLimits.max_pixels in Python)" in str(caught.value)


def test_no_face_names_both_ways_to_analyse_the_whole_image(tmp_path):
    """`--whole-image` always analyses the whole image, `--fallback-whole` only when no face is
    found (what most users want for a face-less file in a folder of portraits)."""
    pytest.importorskip("dlib")
    from PIL import Image

    from ffaa.detectors.items import detect_image
    from ffaa.errors import InputError
    from ffaa.faces import crop_faces

    blank = Image.new("RGB", (320, 240), (200, 200, 200))
    blank.save(tmp_path / "wall.png")
    with pytest.raises(InputError) as analysed:
        crop_faces(blank, "faces", name="wall.png")
    with pytest.raises(InputError) as scored:
        detect_image(None, str(tmp_path / "wall.png"))  # refused before any detector is needed
    for message in (str(analysed.value), str(scored.value)):
        assert "no face found" in message and "--fallback-whole" in message and "--whole-image" in message


def test_detect_takes_the_max_pixels_its_limit_message_names(tmp_path, capsys):
    """`ffaa detect` loads images with the same limit, so its message names --max-pixels too."""
    pytest.importorskip("torch")
    import json

    from PIL import Image

    from ffaa.cli import main

    path = tmp_path / "x.png"
    Image.new("RGB", (20, 20)).save(path)
    base = ["detect", str(path), "--detectors", "meso4=demo", "--whole-image", "--json"]
    assert main([*base, "--max-pixels", "100"]) == 2
    [record] = json.loads(capsys.readouterr().out)
    assert "--max-pixels" in record["error"]
    assert main([*base, "--max-pixels", "400"]) == 0
    [record] = json.loads(capsys.readouterr().out)
    assert record["error"] is None and record["verdict"] in ("real", "fake")
    assert main([*base, "--max-pixels", "0"]) == 2
    assert "--max-pixels must be at least 1, got 0" in capsys.readouterr().err
