"""A resumed run takes its model and settings from the run's record, not from the defaults.

`ffaa batch ... --out DIR` (and `ffaa eval run`) write the command's arguments into the first
`run` record of DIR's log. `--resume` (and `--explain-flagged` alone) read them back: every
option the user did not type takes the recorded value, so `ffaa batch many/ --out runs/x
--resume` goes on with the `--demo` model the run started with instead of switching to the
default hub model. Options typed on the resume win (and the log's warning about a changed
assistant then stands). Records written before arguments were recorded restore nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# What says where and how this invocation runs, not how items are analysed: never restored.
NOT_RECORDED = frozenset({
    "func", "command", "eval_command", "given", "verbose", "quiet",
    "inputs", "out", "bench", "resume", "retry_errors", "summarize_only", "explain_flagged",
    "no_progress", "ray", "ray_actors", "ray_cpus_per_actor",
})

# Options that choose one thing together although argparse does not group them: typing one
# decides the others (--model on a resumed --demo run means that model, not the demo).
CHOSEN_TOGETHER = (
    frozenset({"model", "demo", "revision", "backend"}),
)


def arguments_to_record(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments a run record keeps, as JSON values."""
    return {name: _jsonable(value) for name, value in sorted(vars(args).items())
            if name not in NOT_RECORDED and not callable(value)}


def recorded_arguments(log_path: Path) -> Mapping[str, Any] | None:
    """The arguments of the first run record of a batch log that has them (None: none)."""
    from ..batch.journal import scan_log

    if not log_path.is_file():
        return None
    for block in scan_log(log_path).blocks:
        record = block[-1]
        if record.get("record") == "run" and isinstance(record.get("settings", {}).get("arguments"), dict):
            return record["settings"]["arguments"]
    return None


def recorded_inputs(log_path: Path) -> tuple[str, ...]:
    """The inputs of the log's first run that named any (a resume without INPUT goes on with them)."""
    from ..batch.journal import scan_log

    if not log_path.is_file():
        return ()
    for block in scan_log(log_path).blocks:
        record = block[-1]
        inputs = record.get("settings", {}).get("inputs") if record.get("record") == "run" else None
        if inputs:
            return tuple(str(i) for i in inputs)
    return ()


def restore_arguments(args: argparse.Namespace, recorded: Mapping[str, Any]) -> list[str]:
    """Set every option the user did not choose to its recorded value; the flags that changed,
    as a user would type them."""
    chosen = _chosen(getattr(args, "given", frozenset()))
    changed = []
    for name, value in recorded.items():
        if name in NOT_RECORDED or name in chosen or not hasattr(args, name):
            continue  # typed now, or an option this version no longer has
        if _jsonable(getattr(args, name)) != value:
            setattr(args, name, value)
            changed.append(_as_flag(name, value))
    return changed


def _chosen(given: Iterable[str]) -> set[str]:
    chosen = set(given)
    for together in CHOSEN_TOGETHER:
        if together & chosen:
            chosen |= together
    return chosen


def _as_flag(name: str, value: Any) -> str:
    flag = "--" + name.replace("_", "-")
    if value is True:
        return flag
    if value is False or value is None:
        return f"without {flag}"
    return f"{flag} {value}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value
