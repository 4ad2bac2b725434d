"""Exceptions users see. Each carries a message meant to be printed as is, without a traceback."""

from __future__ import annotations


class FfaaError(Exception):
    """Base class: the CLI prints `error: <message>` and exits with status 2."""


class InputError(FfaaError):
    """An input file cannot be analysed (missing, not an image, corrupt, too large...)."""


class WeightsNotFoundError(FfaaError):
    """Model weights are not available locally and cannot be downloaded."""


class CheckpointError(FfaaError):
    """A checkpoint exists but its config or tensors are not what we understand."""


class MissingDependencyError(FfaaError):
    """An optional dependency is needed for this feature; the message names the extra."""

    def __init__(self, package: str, extra: str, feature: str):
        super().__init__(
            f"{feature} needs the '{package}' package: pip install 'ffaa[{extra}]'"
        )
        self.package = package
        self.extra = extra


def one_line(exc: BaseException, limit: int = 300, with_type: bool = True) -> str:
    """An exception as one short line: `Type: first line of its message` (the type alone when
    there is no message), for messages that quote a library's error."""
    lines = str(exc).strip().splitlines()
    text = " ".join(lines[0].split()) if lines else ""
    if with_type or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:limit]
