"""Start the FFAA web app: `python app.py [--demo | --model DIR] [--host 127.0.0.1] [--port 7860]`.

It takes the same options as `ffaa app` (`python app.py --help`).
"""

import sys


def main(argv=None) -> int:
    from ffaa.app import build_ui, launch
    from ffaa.cli import quiet_third_party_logs
    from ffaa.commands.app import engine, parse_args, server_options, ui_options
    from ffaa.errors import FfaaError

    quiet_third_party_logs()
    args = parse_args(argv)
    try:
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
