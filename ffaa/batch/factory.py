"""Recipes that build an `Assistant` for a batch run. Any picklable zero-argument callable
works (each Ray actor builds its own model replica from the same recipe as the driver would);
the usual one is an `AssistantSpec` (`ffaa.spec`), which is such a callable.
`ScriptedAssistantFactory` is the spec of the rule-based backend, for tests and dry runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..detectors.config import DetectorsConfig
    from ..pipeline import AnalysisOptions, Assistant


@dataclass(frozen=True)
class ScriptedAssistantFactory:
    """An assistant on the rule-based `ScriptedBackend` and the majority decider (no torch
    unless detectors are asked for). Its reports are marked demo."""

    options: AnalysisOptions | None = None
    delay: float = 0.0
    broken_every: int = 0
    detectors: DetectorsConfig | None = None

    def spec(self):
        from ..spec import AssistantSpec

        fields = {"analysis": self.options} if self.options is not None else {}
        return AssistantSpec(backend="scripted", scripted_delay=self.delay, scripted_broken_every=self.broken_every,
                             detectors=self.detectors, **fields)

    def __call__(self) -> Assistant:
        return self.spec().build()

    def describe(self) -> dict[str, Any]:
        return self.spec().describe()
