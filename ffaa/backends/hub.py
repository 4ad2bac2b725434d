"""Where models come from and where ffaa keeps what it builds from them.

The Hugging Face hub and its local cache on one side, ffaa's own cache folder (`$FFAA_CACHE`,
default `~/.cache/ffaa`: converted checkpoints, the tiny and the demo model) on the other. One
rule for what names a hub repository, one check for a snapshot already downloaded, one message
for a model that cannot be fetched, and one way to build into the cache atomically, shared by
the converter (`convert.py`), the backend's model lookup (`hf_llava.locate_model`) and the tiny
and demo models. It knows nothing of LLaVA: callers say what makes a snapshot complete.

huggingface_hub is imported only when the hub is used.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import WeightsNotFoundError, one_line
from ..lazy import require
from ..models import FFAA

# `owner/name` as the hub spells repositories (also excludes "./x", "/x" and "~/x").
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_OFFLINE_VALUES = ("1", "true", "yes", "on")


def ffaa_cache_root() -> Path:
    """ffaa's cache folder: `$FFAA_CACHE`, else `~/.cache/ffaa`."""
    env = os.environ.get("FFAA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ffaa"


# -- hub ids and the hub cache ----------------------------------------------------------------


def is_hub_id(value: str) -> bool:
    """True for `owner/name`; anything else was meant as a local folder."""
    return _HUB_ID.fullmatch(value) is not None


def check_hub_id(value: str, what: str = "checkpoint") -> str:
    """`value` when it is a hub id; else a local `what` folder that is not there, so say that
    instead of sending a typo'd path to the hub."""
    if is_hub_id(value):
        return value
    raise WeightsNotFoundError(f"{what} folder not found: {value}")


def hub_client(purpose: str) -> Any:
    """The `huggingface_hub` module, or the "install ffaa[torch]" error naming `purpose`."""
    return require("huggingface_hub", "torch", purpose)


def cached_snapshot(repo_id: str, revision: str | None, complete: Callable[[Path], bool]) -> Path | None:
    """The repository's snapshot in the hub cache, without any network access, if `complete`
    accepts it (the caller knows which files its use needs); else None, and the caller downloads.
    """
    hub = hub_client("downloading models")
    try:
        folder = Path(hub.snapshot_download(repo_id, revision=revision, local_files_only=True))
        return folder if complete(folder) else None
    except Exception:  # noqa: BLE001 - nothing cached, or an incomplete download: the caller fetches it
        return None


def download_snapshot(
    repo_id: str, revision: str | None, patterns: Callable[[list[str]], list[str]] | None = None
) -> Path:
    """The repository's snapshot, downloaded (only the files `patterns(repository files)`
    selects, when given); a WeightsNotFoundError with `not_found_message` if that fails."""
    client = hub_client("downloading models")
    try:
        allow = patterns(client.HfApi().list_repo_files(repo_id, revision=revision)) if patterns else None
        return Path(client.snapshot_download(repo_id, revision=revision, allow_patterns=allow))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, auth: all end the same way for a user
        raise WeightsNotFoundError(not_found_message(repo_id, one_line(exc, limit=200))) from None


def download_file(repo_id: str, filename: str, revision: str | None) -> Path:
    """One file of the repository, downloaded; a WeightsNotFoundError as `download_snapshot`."""
    client = hub_client("downloading models")
    try:
        return Path(client.hf_hub_download(repo_id, filename, revision=revision))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, auth: all end the same way for a user
        raise WeightsNotFoundError(not_found_message(repo_id, one_line(exc, limit=200))) from None


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick name lookup and connect to the hub's host, so that an offline machine gets one
    clear message at once instead of the client's retries (about half a minute).

    With HF_HUB_OFFLINE set the hub client only reads its cache, so there is nothing to check.
    """
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in _OFFLINE_VALUES:
        return True
    hub = hub_client("downloading models")
    url = urlparse(getattr(hub.constants, "ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def not_found_message(repo_id: str, why: str) -> str:
    """What a person can do when `repo_id` cannot be fetched here: download it elsewhere, copy
    it over and pass the folder. One message for every way of failing (offline, unknown repo,
    authentication), since the remedy is the same."""
    return (
        f"cannot get '{repo_id}' from the Hugging Face hub ({why}). On a machine with access run "
        f"`hf download {repo_id} --local-dir DIR` (FFAA's 7B checkpoint is about {FFAA.model.size} "
        f"in {FFAA.dtype}), copy DIR here and pass --model DIR (or that folder instead of the hub "
        f"id); an original-format checkpoint is converted once into {ffaa_cache_root() / 'converted'} "
        "(set FFAA_CACHE to move it)."
    )


# -- building into the cache ------------------------------------------------------------------


def build_atomically(
    final: Path, build: Callable[[Path], Any], done: Callable[[Path], bool] | None = None
) -> Path:
    """Run `build(tmp)` in a fresh folder beside `final`, then rename it to `final`.

    A build interrupted at any point (error, Ctrl-C) leaves no folder named `final`, so a
    half-written cache can never be mistaken for a finished one. Leftovers of a killed process
    are hidden `.partial-*` folders, removed on the next build of the same name. If another
    process finished `final` meanwhile (`done(final)` is true), its result is kept and ours
    dropped, so a folder someone may already be loading is never swapped out.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(final)
    tmp = final.parent / f".partial-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        build(tmp)
        if done is not None and done(final):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`, moving an existing `dst` out of the way first."""
    old = None
    if dst.exists():
        old = dst.parent / f".old-{dst.name}-{uuid.uuid4().hex[:8]}"
        dst.rename(old)
    src.rename(dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_stale_partials(final: Path) -> None:
    """Delete `.partial-<name>-<pid>-*` folders whose process is gone (killed builds)."""
    pattern = re.compile(rf"^\.partial-{re.escape(final.name)}-(\d+)-[0-9a-f]{{8}}$")
    for entry in final.parent.iterdir():
        match = pattern.match(entry.name)
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
