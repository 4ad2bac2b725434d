"""Shared test fixtures. Golden data lives in ../shared/fixtures beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

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
