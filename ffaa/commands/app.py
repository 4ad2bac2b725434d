"""`ffaa app`: the web app. The model loads once, before the page is served."""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import replace

from ..errors import FfaaError
from .common import add_analysis_args, add_model_args, assistant_spec, say
from .detector_args import add_detector_args

SCRIPTED_BANNER = "SCRIPTED MODE: fixed rules answer instead of a model; the output is not an analysis."
DESCRIPTION = (
    "Serve a web page where users upload a face image, read the forensic analysis and ask "
    "follow-up questions. Bound to 127.0.0.1 unless --host says otherwise."
)


def add_parser(sub) -> None:
    p = sub.add_parser("app", help="serve the web app (chat with a face image)", description=DESCRIPTION)
    add_app_args(p)
    p.set_defaults(func=run)


def add_app_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--scripted", action="store_true",
                   help="answer with fixed rules instead of a model, to try the page without torch (not an analysis)")
    add_analysis_args(p)
    add_detector_args(p)
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 exposes the page)")
    s.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    s.add_argument("--share", action="store_true", help="also publish a public gradio.live link (off by default)")
    s.add_argument("--auth", action="append", default=[], metavar="USER:PASSWORD",
                   help="require a login (repeatable); also read from --auth-file and $FFAA_APP_AUTH (comma-separated)")
    s.add_argument("--auth-file", default=None, metavar="PATH", help="file with one USER:PASSWORD per line")
    s.add_argument("--max-file-size", default="10mb", help="largest upload, e.g. 5mb, 500kb (default 10mb)")
    s.add_argument("--queue-size", type=int, default=32, help="requests that may wait for the model (default 32)")
    s.add_argument("--cache-max-age", type=int, default=3600, metavar="SECONDS",
                   help="delete uploads and generated reports older than this (default 3600; 0 keeps them)")
    c = p.add_argument_group("chat")
    c.add_argument("--chat-max-new-tokens", type=int, default=512,
                   help="length limit of a follow-up answer (default 512)")
    c.add_argument("--history-turns", type=int, default=6,
                   help="follow-ups kept in the prompt besides the analysis (default 6; older ones are dropped)")


def server_options(args: argparse.Namespace):
    """Checked server settings; called before the model loads so a typo fails fast."""
    from ..app.server import ServerOptions, auth_from

    if not re.fullmatch(r"\d+\s*(b|kb|mb|gb)", args.max_file_size.strip().lower()):
        raise FfaaError(f"--max-file-size must look like 10mb or 500kb, got {args.max_file_size!r}")
    if not 0 < args.port < 65536:
        raise FfaaError(f"--port must be between 1 and 65535, got {args.port}")
    if args.queue_size < 1:
        raise FfaaError("--queue-size must be at least 1")
    return ServerOptions(
        host=args.host,
        port=args.port,
        share=args.share,
        auth=auth_from(args.auth, args.auth_file),
        max_file_size=args.max_file_size.strip().lower().replace(" ", ""),
        queue_size=args.queue_size,
    )


def ui_options(args: argparse.Namespace, examples: tuple[str, ...] | None = None):
    from ..app.server import make_examples
    from ..app.ui import UiOptions

    if args.chat_max_new_tokens < 1 or args.history_turns < 0:
        raise FfaaError("--chat-max-new-tokens must be at least 1 and --history-turns at least 0")
    if args.cache_max_age < 0:
        raise FfaaError(f"--cache-max-age must be 0 (keep files) or more seconds, got {args.cache_max_age}")
    mode = "whole" if args.whole_image else ("auto" if args.fallback_whole else "faces")
    return UiOptions(
        examples=make_examples() if examples is None else examples,
        face_mode=mode,
        chat_max_new_tokens=args.chat_max_new_tokens,
        history_turns=args.history_turns,
        max_file_size=args.max_file_size.strip().lower().replace(" ", ""),
        cache_max_age_s=args.cache_max_age,
        demo=args.demo or args.scripted,
    )


def engine(args: argparse.Namespace):
    """The assistant the page talks to: the model (loaded now, once) or the scripted rules."""
    # OpenMP threads that spin while waiting for work take the CPU from the web server's own
    # threads and, on a busy machine, from each other: on 2 shared cores the tiny model's
    # analysis measured 13-19 s spinning and 1.5 s passive. Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    spec = assistant_spec(args)
    if args.scripted:
        print(SCRIPTED_BANNER, file=sys.stderr)
        spec = replace(spec, backend="scripted", scripted_delay=0.02)
    return spec.build(log_line=say)


def run(args: argparse.Namespace) -> int:
    from ..app import build_ui, launch

    server = server_options(args)
    assistant = engine(args)
    demo = build_ui(assistant, ui_options(args))
    launch(demo, server)
    return 0
