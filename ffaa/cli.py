"""The `ffaa` command line. Each subcommand lives in `ffaa/commands/<name>.py` and exposes
`add_parser(subparsers)`, which registers its arguments and sets `func` to its entry point.
Errors meant for users (FfaaError) print one line and exit 2; nothing heavy is imported until a
subcommand runs.

Library modules log through `logging.getLogger(__name__)` and never configure logging; while a
command runs, `cli_logging` shows ffaa's messages on stderr as plain lines (see there).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .errors import FfaaError

# Module names under ffaa.commands, in the order `ffaa --help` lists them.
COMMANDS = (
    "analyze",
    "detect",
    "detectors",
    "batch",
    "app",
    "eval",
    "mids",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ffaa", description="Explainable face-forgery forensic assistant (FFAA on a current stack)."
    )
    parser.add_argument("--version", action="version", version=_version())
    add_logging_args(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"ffaa.commands.{name}").add_parser(sub)
    _logging_args_everywhere(parser)
    return parser


def _logging_args_everywhere(parser: argparse.ArgumentParser) -> None:
    """-v/-q after a subcommand too (`ffaa batch ... -v`): every subparser takes them, with no
    default of its own so that `ffaa -v batch ...` keeps the value given before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                add_logging_args(child, default=argparse.SUPPRESS)
                _logging_args_everywhere(child)


def _version() -> str:
    from . import __version__

    return f"ffaa {__version__}"


def quiet_third_party_logs() -> None:
    """Silence import-time noise that says nothing to a user: torchao's optional CUDA kernels
    failing to load on a CPU machine, and torch's notes about enums torchao registers."""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


# -- messages on stderr ---------------------------------------------------------------------
#
# What a user saw before ffaa logged (plain `print`s to stderr) stays what they see: by default
# WARNING and above, plus the INFO records a module marks as progress a user needs,
#     log.info("converting %s ...", path, extra={"progress": True})
# each as its bare message (a plain dict, so library modules need not import the CLI). -v adds
# every INFO record and the logger's name, -vv DEBUG, -q keeps errors only.

_FORMATS = ("%(message)s", "%(name)s: %(message)s")


def add_logging_args(parser: argparse.ArgumentParser, default: object = None) -> None:
    """-v/-vv/-q on `parser` (every ffaa command has them). `default` replaces the defaults
    (0 and False) when given, e.g. argparse.SUPPRESS on subcommands."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", action="count", default=0 if default is None else default,
                   help="more messages on stderr: -v all of ffaa's INFO (with the logger's name), -vv DEBUG")
    g.add_argument("-q", "--quiet", action="store_true", default=False if default is None else default,
                   help="only errors on stderr")


def verbosity(args: argparse.Namespace) -> int:
    """-1 with -q, else the number of -v (0 by default)."""
    return -1 if getattr(args, "quiet", False) else int(getattr(args, "verbose", 0) or 0)


class _Stderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record arrives, as `print(file=sys.stderr)` did
    (pytest's capsys and `contextlib.redirect_stderr` swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _shown_by_default(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or bool(getattr(record, "progress", False))


def stderr_handler(level: int = 0) -> logging.Handler:
    """The handler `cli_logging` installs, for verbosity `level` (-1 quiet, 0, 1 = -v, 2 = -vv)."""
    handler = _Stderr()
    handler.setFormatter(logging.Formatter(_FORMATS[level > 0]))
    if level < 0:
        handler.setLevel(logging.ERROR)
    elif level == 0:
        handler.addFilter(_shown_by_default)
    return handler


@contextmanager
def cli_logging(level: int = 0) -> Iterator[None]:
    """Show ffaa's log records on stderr while a command runs, then put the `ffaa` logger back as
    it was: nothing is configured at import, and a command called in-process (tests) leaves no
    handler behind. The records do not propagate meanwhile, so a root handler some library set
    up cannot print them a second time."""
    logger = logging.getLogger("ffaa")
    saved = logger.level, logger.propagate
    handler = stderr_handler(level)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if level > 1 else logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> frozenset[str]:
    """The dests the user chose on the command line: those typed, and the other members of a
    mutually exclusive group one of them belongs to (typing --whole-image decides
    --fallback-whole too). A resumed run takes the rest from its record (`ffaa.commands.recorded`).

    Found by parsing again with every default suppressed, so only typed options land.
    """
    parsers = list(_parsers(parser))
    saved = [(a, a.default) for p in parsers for a in p._actions]
    saved_defaults = [(p, dict(p._defaults)) for p in parsers]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        for p, _ in saved_defaults:
            p._defaults.clear()
        typed = set(vars(parser.parse_known_args(argv)[0]))
    finally:
        for action, default in saved:
            action.default = default
        for p, defaults in saved_defaults:
            p._defaults.update(defaults)
    for p in parsers:
        for group in p._mutually_exclusive_groups:
            dests = {a.dest for a in group._group_actions}
            if dests & typed:
                typed |= dests
    return frozenset(typed)


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def main(argv: Sequence[str] | None = None) -> int:
    quiet_third_party_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.given = given_options(parser, argv)
    try:
        with cli_logging(verbosity(args)):
            return int(args.func(args) or 0)
    except FfaaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
