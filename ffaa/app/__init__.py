"""The web app: chat with a face image (`ffaa app`, or `python app.py`).

`build_ui(assistant, UiOptions(...))` makes the page around an already-loaded `Assistant`;
`launch(demo, ServerOptions(...))` serves it. Importing this package imports neither gradio
nor torch: `build_ui` and `launch` load gradio on first use.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .server import ServerOptions, launch, make_examples

if TYPE_CHECKING:
    from .ui import UiOptions, build_ui

__all__ = ["ServerOptions", "UiOptions", "build_ui", "launch", "make_examples"]


def __getattr__(name: str) -> Any:
    if name in ("UiOptions", "build_ui"):
        from ..lazy import require

        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry, no update check
        require("gradio", "app", "the web app")
        from . import ui

        return getattr(ui, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
