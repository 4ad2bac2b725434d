"""The `ffaa` command line. Each subcommand lives in `ffaa/commands/<name>.py` and exposes
`add_parser(subparsers)`, which registers its arguments and sets `func` to its entry point.
Errors meant for users (FfaaError) print one line and exit 2; nothing heavy is imported until a
subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"ffaa.commands.{name}").add_parser(sub)
    return parser


def _version() -> str:
    from . import __version__

    return f"ffaa {__version__}"


def quiet_third_party_logs() -> None:
    """Silence import-time noise that says nothing to a user: torchao's optional CUDA kernels
    failing to load on a CPU machine, and torch's notes about enums torchao registers."""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    quiet_third_party_logs()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FfaaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
