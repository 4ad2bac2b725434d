"""Serving the page: safe defaults, authentication, the request queue, example images.

Defaults are for a forensic tool holding users' photos: bound to 127.0.0.1, no public share
link, no extra readable paths, uploads capped, cached files deleted on a schedule, and one
model request at a time (the others wait in a bounded queue).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FfaaError

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger(__name__)

AUTH_ENV = "FFAA_APP_AUTH"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServerOptions:
    """Where and how the page is served."""

    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: tuple[tuple[str, str], ...] = ()
    max_file_size: str = "10mb"
    queue_size: int = 32
    quiet: bool = False


def parse_auth(specs: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """"user:password" strings -> pairs; the password may itself contain ':'."""
    pairs = []
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        user, sep, password = spec.partition(":")
        if not sep or not user or not password:
            raise FfaaError(f"auth must be USER:PASSWORD with both parts non-empty, got {spec.split(':')[0]!r}:…")
        pairs.append((user, password))
    return tuple(pairs)


def auth_from(cli: Sequence[str], auth_file: str | None,
              environ: dict[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """Credentials from --auth, then --auth-file (one USER:PASSWORD per line), then $FFAA_APP_AUTH.

    A file or the environment keeps passwords out of the process list, where --auth shows them.
    """
    specs = list(cli)
    if auth_file:
        path = Path(auth_file).expanduser()
        if not path.is_file():
            raise FfaaError(f"auth file not found: {path}")
        specs += [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    env = (os.environ if environ is None else environ).get(AUTH_ENV, "")
    specs += env.split(",")
    return parse_auth(specs)


def exposure_warnings(options: ServerOptions) -> list[str]:
    """What a user should hear before the page is reachable by others."""
    notes = []
    if options.host not in LOOPBACK and not options.auth:
        notes.append(f"serving on {options.host} without --auth: anyone who can reach this port can upload images")
    if options.share:
        notes.append("--share publishes the page through a public gradio.live link")
        if not options.auth:
            notes.append("the public link has no password: add --auth")
    return notes


def theme():
    """gradio's default theme on the system's own fonts: nothing to download, from anywhere."""
    import gradio as gr

    return gr.themes.Default(
        font=("system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif"),
        font_mono=("ui-monospace", "Menlo", "Consolas", "monospace"),
    )


def launch(demo: gr.Blocks, options: ServerOptions = ServerOptions(), block: bool = True) -> str:
    """Queue and serve `demo`; returns the local URL (after the server stops, when `block`).

    `block=False` returns at once with the server running in a thread (tests, notebooks);
    `demo.close()` stops it.
    """
    from .ui import CSS

    for note in exposure_warnings(options):
        log.warning("warning: %s", note)
    demo.queue(default_concurrency_limit=8, max_size=options.queue_size)
    _, url, share_url = demo.launch(
        server_name=options.host,
        server_port=options.port,
        share=options.share,
        auth=list(options.auth) or None,
        max_file_size=options.max_file_size,
        allowed_paths=[],
        show_error=False,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        quiet=True,  # gradio's banner suggests share=True; say only what is true here
        prevent_thread_lock=True,
        footer_links=["api"],
        theme=theme(),
        css=CSS,
    )
    if not options.quiet:
        auth = "login required" if options.auth else "no login"
        log.info("ffaa app on %s (%s; uploads up to %s); Ctrl+C stops it", url, auth, options.max_file_size,
                 extra={"progress": True})
    if share_url:
        log.info("public link: %s", share_url, extra={"progress": True})
    if block:
        demo.block_thread()
    return url


def make_examples(folder: Path | None = None) -> tuple[str, ...]:
    """Example images written at start: scikit-image's public-domain astronaut portrait, alone
    and as a mirrored pair of its upper part (two faces; the lower part holds a mission patch
    that the face detector can mistake for a face). Empty when scikit-image is not installed.
    """
    try:
        from skimage import data
    except ImportError:
        return ()
    from PIL import Image, ImageOps

    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="ffaa-examples-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    face = Image.fromarray(data.astronaut())
    head = face.crop((60, 0, 452, 300))
    pair = Image.new("RGB", (head.width * 2, head.height))
    pair.paste(head, (0, 0))
    pair.paste(ImageOps.mirror(head), (head.width, 0))
    single, double = folder / "astronaut.png", folder / "astronaut_pair.jpg"
    face.save(single)
    pair.save(double, quality=92)
    return (str(single), str(double))
