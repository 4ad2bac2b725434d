"""Shared test fixtures. Golden data lives in ../shared/fixtures beside the checkout."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = Path(os.environ.get("FFAA_SHARED_FIXTURES", REPO.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """The golden fixtures folder; tests that need it skip with a reason when it is absent."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"golden fixtures not found at {SHARED_FIXTURES} (set FFAA_SHARED_FIXTURES)")
    return SHARED_FIXTURES


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Keep every cache the tests build (converted models, the tiny model) out of ~/.cache.

    The folder is shared by the whole session so the tiny model is built once.
    """
    if "FFAA_CACHE" in os.environ:
        yield Path(os.environ["FFAA_CACHE"])
        return
    folder = tmp_path_factory.mktemp("ffaa_cache")
    os.environ["FFAA_CACHE"] = str(folder)
    yield folder
    del os.environ["FFAA_CACHE"]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks run faster on one thread, and do not fight other processes for the CPUs.

    Not autouse: the MIDS modules opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`.
    torch is imported here rather than at the top because many tests run without it.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass(frozen=True)
class MidsGolden:
    """FFAA's tiny MIDS golden files: its metadata, its weights and its intermediate tensors."""

    meta: dict[str, Any]
    raw: dict[str, Any]  # the weights under FFAA's transformers-4 names
    tensors: dict[str, Any]


@pytest.fixture(scope="module")
def mids_golden(shared_fixtures) -> MidsGolden:
    """Loaded once per module, like each module's own `golden` built on it: whatever one module
    does with the tensors cannot reach another. Skips when the golden files are absent."""
    folder = shared_fixtures / "mids"
    if not (folder / "golden_tiny.safetensors").is_file():
        pytest.skip(f"MIDS golden fixtures missing in {folder}")
    from safetensors.torch import load_file

    return MidsGolden(meta=json.loads((folder / "golden_tiny.json").read_text()),
                      raw=load_file(str(folder / "golden_tiny.safetensors")),
                      tensors=load_file(str(folder / "golden_tiny_intermediates.safetensors")))
