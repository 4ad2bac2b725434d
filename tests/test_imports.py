"""`import ffaa` and the CLI's help stay light: no torch, transformers, gradio or ray. And from the
repository's root, where `mids/` and `eval/` sit beside `ffaa/`, every module loads once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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


def test_the_parser_imports_no_backend():
    """Option choices come from `ffaa.options`, so the modules behind them may import torch at
    their top without making `ffaa --help` heavy."""
    code = ("import sys\nfrom ffaa.cli import build_parser\nbuild_parser()\n"
            "print(' '.join(m for m in sys.modules if m.startswith('ffaa.backends')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []


def test_option_choices_are_the_backends_own():
    from ffaa import options
    from ffaa.backends import fast, quant

    assert quant.QUANT_CHOICES is options.QUANT_CHOICES == ("auto", *quant.FORMATS)
    assert fast.COMPILE_CHOICES is options.COMPILE_CHOICES


# -- one copy of each module, from the repository's root ---------------------------------------

# What `python app.py` loads (app.py's own imports, then the page, the model's pipeline and MIDS),
# plus every module of ffaa.mids and ffaa.eval; run with the root first on sys.path, as there.
APP_GRAPH = """
import contextlib, importlib, io, json, pkgutil, sys
import app
with contextlib.redirect_stdout(io.StringIO()):
    try:
        app.main(["--help"])
    except SystemExit:
        pass
import ffaa.app.ui, ffaa.pipeline, ffaa.mids.decider, ffaa.eval.run
import ffaa.mids, ffaa.eval
for package in (ffaa.mids, ffaa.eval):
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
print(json.dumps({name: getattr(m, "__file__", None) for name, m in list(sys.modules.items())}))
"""


@pytest.mark.slow
def test_app_module_graph_loads_each_module_once_from_the_repo_root():
    out = subprocess.run([sys.executable, "-c", APP_GRAPH], cwd=REPO, capture_output=True, text=True, check=True)
    ours = [REPO / "app.py", *(REPO / folder for folder in ("ffaa", "mids", "eval"))]  # not .venv/
    files = {name: file for name, file in json.loads(out.stdout.splitlines()[-1]).items()
             if file and any(Path(file).resolve().is_relative_to(root) for root in ours)}
    assert "ffaa.mids.selector" in files and "ffaa.eval.detection" in files and "app" in files
    stray = [name for name in files if name.split(".")[0] in ("mids", "eval")]
    assert stray == [], f"loaded under their folder's name, beside ffaa.mids/ffaa.eval: {stray}"
    by_file: dict[str, list[str]] = {}
    for name, file in files.items():
        by_file.setdefault(str(Path(file).resolve()), []).append(name)
    assert [names for names in by_file.values() if len(names) > 1] == []


@pytest.mark.parametrize("module, package", [("mids.selector", "ffaa.mids"), ("eval.detection", "ffaa.eval")])
def test_the_top_level_folders_refuse_their_own_names(module, package):
    """What keeps a stray `import mids.selector` from loading a second copy of ffaa.mids.selector."""
    code = (f"import sys\ntry:\n    import {module}\nexcept ImportError as exc:\n    print(exc)\n"
            f"print(sorted(m for m in sys.modules if m.startswith(('mids', 'eval'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [f"import {package}, not {module.split('.')[0]}: {module.split('.')[0]}/ "
                                       f"is installed as the package {package}", "[]"]


def test_app_py_takes_the_cli_options(tmp_path):
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=REPO, capture_output=True, text=True, check=True)
    assert "--verbose" in out.stdout and "--quiet" in out.stdout and "--model" in out.stdout
