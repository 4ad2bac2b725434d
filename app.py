"""Start the FFAA web app: `python app.py [--demo | --model DIR] [--host 127.0.0.1] [--port 7860]`.

The same as `ffaa app` (same options, messages and exit codes: it is that command). `mids/`
and `eval/` beside this file load only as `ffaa.mids` and `ffaa.eval` (as plain `mids` or `eval`
they refuse to import), so no module is loaded twice.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from ffaa.cli import main as ffaa_main

    return ffaa_main(["app", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
