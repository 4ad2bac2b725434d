"""`import ffaa` and the CLI's help stay light: no torch, transformers, gradio or ray."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "gradio", "ray", "cv2", "dlib", "av", "sklearn", "matplotlib")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_imports_are_light():
    code = ("import ffaa, ffaa.parsing, ffaa.prompts, ffaa.report, ffaa.pipeline, ffaa.decision, "
            "ffaa.bench, ffaa.mids, ffaa.eval")
    assert _loaded_after(code) == set()


def test_cli_help_is_light():
    code = ("import contextlib, io\nfrom ffaa.cli import build_parser\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        build_parser().parse_args(['--help'])\n"
            "    except SystemExit:\n        pass")
    assert _loaded_after(code) == set()
