"""The one protocol every model backend implements.

A backend turns (image, rendered prompt) pairs into text. It knows nothing of forensics: the
pipeline renders prompts and names the line that ends an answer (from the answer format), the
parser reads answers. Two verbs, as in lmms-eval: `generate` a batch of answers, and `stream`
one answer token by token (for the chat UI); and `score_verdict` reads the next-token
probability of "fake" against "real" (verdict-only triage).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..types import DecodingSettings

if TYPE_CHECKING:
    from PIL import Image

from ..types import StopReason


def round_up(n: int, multiple: int) -> int:
    """`n` rounded up to a multiple of `multiple` (vocabulary padding, compiled length buckets)."""
    return -(-n // multiple) * multiple


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to answer. `prompt` is the full chat-template text, with one `<image>`.

    `end_labels`: names of the line that closes the answer (the caller's answer format says
    which). With `DecodingSettings.stop_at_answer_end` the backend stops once the answer has a
    complete `<label>: <value>` line of one of them; without labels it never stops early.
    """

    image: Image.Image
    prompt: str
    end_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    """One answer: its text (special tokens removed), its length and why it stopped."""

    text: str
    new_tokens: int
    stopped_by: StopReason


@dataclass(frozen=True)
class BackendInfo:
    """What a report's provenance records about the backend."""

    name: str
    model_id: str
    revision: str | None
    quantization: str
    device: str
    dtype: str
    demo: bool = False


@runtime_checkable
class Backend(Protocol):
    """A vision-language model that answers prompts about images."""

    info: BackendInfo

    def generate(
        self, requests: Sequence[GenerationRequest], settings: DecodingSettings
    ) -> list[Generation]:
        """Answer all requests, batched as the backend sees fit; results keep request order."""
        ...

    def stream(self, request: GenerationRequest, settings: DecodingSettings) -> Iterator[str]:
        """Yield the answer to one request as text pieces while it is generated."""
        ...

    def score_verdict(self, requests: Sequence[GenerationRequest]) -> list[float]:
        """P(fake) / (P(real) + P(fake)) of the token that follows each prompt, without generating.

        The prompt ends where the verdict word comes (e.g. "... Analysis result:"), so this is a
        verdict-only reading of the model, for triage; results keep request order.
        """
        ...
