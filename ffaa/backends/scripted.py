"""A backend that writes answers by rule instead of by model: for tests and UI development.

It is a real `Backend` (same protocol, same batching contract) whose answers depend only on the
prompt and the image, so pipeline, batch, app and eval can be tested without torch. Reports made
with it are marked `demo` and name the backend, so they can never pass for model output.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from ..prompts import load_answer_format
from ..types import DecodingSettings
from .base import BackendInfo, Generation, GenerationRequest


class ScriptedBackend:
    """Answers with a fixed template; the verdict follows the prompt's hypothesis if it has one,
    else the image's mean brightness (bright = "real"). `delay` simulates generation time per
    token, `broken` makes every n-th answer unparseable, to exercise failure paths.
    """

    def __init__(self, delay: float = 0.0, broken_every: int = 0):
        self.delay = delay
        self.broken_every = broken_every
        self.calls = 0
        self.batches: list[int] = []
        self.info = BackendInfo("scripted", "scripted-rules", None, "none", "cpu", "none", demo=True)

    def _verdict(self, request: GenerationRequest) -> str:
        prompt = request.prompt.lower()
        for label in ("real", "fake"):
            if f"this is a {label} human face" in prompt:
                return label
        gray = request.image.convert("L").resize((16, 16))
        mean = sum(gray.tobytes()) / 256
        return "real" if mean >= 128 else "fake"

    def answer(self, request: GenerationRequest) -> str:
        self.calls += 1
        if self.broken_every and self.calls % self.broken_every == 0:
            return "I cannot tell"
        verdict = self._verdict(request)
        fmt = load_answer_format()
        kind = "None" if verdict == "real" else "Identity exchange"
        prob = "0.1" if verdict == "real" else "0.9"
        values = {
            "description": f"A {request.image.width}x{request.image.height} face image under even lighting.",
            "reasoning": f"Scripted reasoning: the skin texture and boundaries look {verdict}.",
            "verdict": verdict,
            "probability": prob,
            "forgery_type": kind,
        }
        return "\n".join(f"{f.label}: {values[f.key]}" for f in fmt.fields)

    def generate(
        self, requests: Sequence[GenerationRequest], settings: DecodingSettings
    ) -> list[Generation]:
        self.batches.append(len(requests))
        out = []
        for r in requests:
            text = self.answer(r)
            words = text.split(" ")[: settings.max_new_tokens]
            stopped = "eos" if len(words) < settings.max_new_tokens else "max_new_tokens"
            out.append(Generation(" ".join(words), len(words), stopped))
        time.sleep(self.delay * max((g.new_tokens for g in out), default=0))
        return out

    def score_verdict(self, requests: Sequence[GenerationRequest]) -> list[float]:
        """P(fake) by the same brightness rule as `_verdict`: 1 - mean grey / 255 (dark = fake).

        One `delay` per call stands for the single forward pass a real model makes.
        """
        from PIL import ImageStat

        time.sleep(self.delay)
        grays = (r.image.convert("L").resize((16, 16)) for r in requests)
        return [round(1.0 - ImageStat.Stat(g).mean[0] / 255, 6) for g in grays]

    def stream(self, request: GenerationRequest, settings: DecodingSettings) -> Iterator[str]:
        words = self.answer(request).split(" ")[: settings.max_new_tokens]
        for i, word in enumerate(words):
            time.sleep(self.delay)
            yield word if i == 0 else " " + word
