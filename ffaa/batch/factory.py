"""Recipes that build an `Assistant`. They are picklable, so each Ray actor builds its own model
replica from the same recipe as the driver would, and `bench_batch` can build fresh ones.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..detectors.config import DetectorsConfig
    from ..pipeline import AnalysisOptions, Assistant


@dataclass(frozen=True)
class CliAssistantFactory:
    """The assistant `ffaa analyze` would build from the same command-line arguments."""

    args: dict[str, Any]

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> CliAssistantFactory:
        return cls({k: v for k, v in vars(ns).items() if k != "func"})

    def __call__(self) -> Assistant:
        from ..commands.common import build_assistant

        return build_assistant(argparse.Namespace(**self.args))

    def describe(self) -> dict[str, Any]:
        model = "demo (tiny random LLaVA)" if self.args.get("demo") else self.args.get("model")
        return {"model": model, "device": self.args.get("device"), "quant": self.args.get("quant")}


@dataclass(frozen=True)
class ScriptedAssistantFactory:
    """An assistant on the rule-based `ScriptedBackend` and the majority decider (no torch).

    For tests and dry runs of the batch machinery; its reports are marked demo.
    """

    options: AnalysisOptions | None = None
    delay: float = 0.0
    broken_every: int = 0
    detectors: DetectorsConfig | None = None

    def __call__(self) -> Assistant:
        from ..backends.scripted import ScriptedBackend
        from ..decision import MajorityDecider
        from ..pipeline import Assistant

        backend = ScriptedBackend(delay=self.delay, broken_every=self.broken_every)
        detectors = None
        if self.detectors is not None:
            from ..detectors.runner import DetectorSet

            detectors = DetectorSet.load(self.detectors)
        return Assistant(backend, MajorityDecider(), options=self.options, detectors=detectors)

    def describe(self) -> dict[str, Any]:
        return {"model": "scripted-rules", "delay": self.delay}
