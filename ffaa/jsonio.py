"""Reading one whole JSON file whose top-level type is known.

Several readers (checkpoint configs, benchmark label sets, MIDS training data) fail the same way
- the file cannot be read or parsed, or holds the wrong kind of value - but each reports it with
its own exception class and wording, which users see as is. This keeps the reading in one place
and leaves the words to the caller.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import FfaaError


def read_json(path: Path, *, expect: type, error: type[FfaaError], unreadable: str, wrong_type: str) -> Any:
    """The parsed content of `path`, which must be an instance of `expect`.

    `unreadable` and `wrong_type` are message templates: `{path}` is the file and, in
    `unreadable`, `{exc}` the OS or JSON error. The original error is not chained: the message
    already names it, and `error` is meant to be printed without a traceback.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise error(unreadable.format(path=path, exc=exc)) from None
    if not isinstance(data, expect):
        raise error(wrong_type.format(path=path))
    return data
