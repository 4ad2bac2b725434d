"""Start the FFAA web app: `python app.py [--demo | --model DIR] [--host 127.0.0.1] [--port 7860]`.

It takes the same options as `ffaa app` plus `ffaa`'s -v/-q (`python app.py --help`) and prints
the same messages. `mids/` and `eval/` beside this file load only as `ffaa.mids` and `ffaa.eval`
(as plain `mids` or `eval` they refuse to import), so no module is loaded twice.
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """`ffaa app`'s options plus -v/-q, which `ffaa` takes before the subcommand."""
    from ffaa.cli import add_logging_args
    from ffaa.commands.app import DESCRIPTION, add_app_args

    parser = argparse.ArgumentParser(prog="app.py", description=DESCRIPTION)
    add_app_args(parser)
    add_logging_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from ffaa.app import build_ui, launch
    from ffaa.cli import cli_logging, quiet_third_party_logs, verbosity
    from ffaa.commands.app import engine, server_options, ui_options
    from ffaa.errors import FfaaError

    quiet_third_party_logs()
    args = parse_args(argv)
    try:
        with cli_logging(verbosity(args)):
            server = server_options(args)
            assistant = engine(args)  # the model loads once, here
            demo = build_ui(assistant, ui_options(args))
            launch(demo, server)
    except FfaaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
