"""`AssistantSpec`: the one typed, picklable recipe every entry point builds an assistant from.

The CLI maps its arguments to a spec in one place (`ffaa.commands.common.spec_from_args`); the
app, `ffaa batch`, its Ray workers, `ffaa bench` and `ffaa eval run` all call `spec.build()`
(a spec is also a zero-argument factory: `spec()` builds). Python users do the same:

    from ffaa.spec import AssistantSpec
    from ffaa.pipeline import AnalysisOptions
    assistant = AssistantSpec(model="/models/ffaa-mistral-7b", quant="4bit").build()
    reports = assistant.analyze("face.jpg")

Building loads, in this order, what can fail fastest: the classic detectors (their checkpoints
are checked key by key), then the language model (and its compile warm-up, so that it never
lands in a user's request), then MIDS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import FfaaError
from .models import FFAA

if TYPE_CHECKING:
    from .detectors.config import DetectorsConfig
    from .pipeline import AnalysisOptions, Assistant

log = logging.getLogger(__name__)

DEMO_BANNER = (
    "DEMO MODE: a tiny model with RANDOM weights, trained only to WRITE THE ANSWER FORMAT, answers.\n"
    "Its descriptions, reasoning, verdicts, probabilities and match scores are NOISE: they say\n"
    f"nothing about the image. Use --model {FFAA.model_id} (or a local folder) for real analysis."
)


def _default_options() -> AnalysisOptions:
    from .pipeline import AnalysisOptions

    return AnalysisOptions()


@dataclass(frozen=True)
class AssistantSpec:
    """What to build: the model and how to run it, the decider, the analysis options and the
    classic detectors.

    model: hub id or local folder (transformers or original LLaVA layout); `demo` uses the
      built-in tiny demo model instead. backend "scripted": fixed rules, no torch (tests, dry runs).
    compile_rows: prompts per compiled generate call (3 = one face's candidates).
    mids: MIDS weights (None: `mids.pth` beside a local model or in its hub repository, else a
      majority vote); mids_clip/mids_t5: its encoders; no_mids: always the majority vote.
    """

    model: str = FFAA.model_id
    revision: str | None = None
    demo: bool = False
    backend: Literal["hf", "scripted"] = "hf"
    device: str = "auto"
    quant: str = "auto"
    dtype: str = "auto"
    compile: str = "auto"
    compile_rows: int = 3
    mids: str | None = None
    mids_clip: str | None = None
    mids_t5: str | None = None
    no_mids: bool = False
    analysis: AnalysisOptions = field(default_factory=_default_options)
    detectors: DetectorsConfig | None = None
    scripted_delay: float = 0.0
    scripted_broken_every: int = 0

    def __post_init__(self) -> None:
        if self.compile_rows < 1:
            raise FfaaError(f"--compile-rows must be at least 1, got {self.compile_rows}")

    def __call__(self) -> Assistant:
        return self.build()

    def build(self, log_line: Callable[[str], None] | None = None) -> Assistant:
        """Load everything and return the ready assistant; FfaaError in one line if a piece
        cannot be loaded."""
        from .pipeline import Assistant

        say = log_line or log.warning
        detectors = self.load_detectors(say)  # first: a bad checkpoint must fail before a 15 GB load
        backend = self.load_backend(say)
        warmup = getattr(backend, "warmup", None)
        if warmup is not None:
            warmup(sampling=self.analysis.decoding.do_sample)
        return Assistant(backend, self.load_decider(), options=self.analysis, detectors=detectors)

    # -- the pieces ---------------------------------------------------------------------------

    def load_backend(self, say: Callable[[str], None] | None = None):
        """The generation backend: the scripted rules, the demo model, or the model."""
        say = say or log.warning
        if self.backend == "scripted":
            from .backends.scripted import ScriptedBackend

            return ScriptedBackend(delay=self.scripted_delay, broken_every=self.scripted_broken_every)
        from .backends.hf_llava import HFLlavaBackend, LoadOptions

        options = LoadOptions(device=self.device, quant=self.quant, dtype=self.dtype, revision=self.revision,
                              compile=self.compile, compile_rows=self.compile_rows)
        if self.demo:
            from .backends.demo import demo_model_dir

            say(DEMO_BANNER)
            return HFLlavaBackend.load(str(demo_model_dir(log=say)), options, demo=True)
        return HFLlavaBackend.load(self.model, options)

    def find_mids(self) -> Path | None:
        """MIDS weights: `mids`, else `mids.pth` beside a local model, else in the model's hub
        repository (FFAA ships it there). None when there are none: the majority vote decides."""
        if self.no_mids or self.backend == "scripted":
            return None
        if self.mids:
            path = Path(self.mids).expanduser()
            if not path.is_file():
                raise FfaaError(f"MIDS weights not found: {path}")
            return path
        local = Path(self.model).expanduser()
        if local.exists():
            beside = local / FFAA.mids_file
            return beside if beside.is_file() else None
        return _mids_from_hub(self.model, self.revision)

    def load_decider(self):
        """MIDS when its weights are there (the tiny one for the demo), else the majority vote."""
        from .decision import MajorityDecider

        if self.no_mids or self.backend == "scripted":
            return MajorityDecider()
        try:
            from .mids.decider import MidsDecider
        except ImportError:
            return MajorityDecider()
        if self.demo and not self.mids:
            return MidsDecider.tiny(seed=self.analysis.seed)
        path = self.find_mids()
        if path is None:
            return MajorityDecider()
        return MidsDecider.from_pretrained(path, clip=self.mids_clip, t5=self.mids_t5, device=self.device)

    def load_detectors(self, say: Callable[[str], None] | None = None):
        """The classic detectors, loaded (None when the spec names none)."""
        if self.detectors is None:
            return None
        from .detectors.runner import DetectorSet

        return DetectorSet.load(self.detectors, log_line=say or log.warning)

    def describe(self) -> dict[str, Any]:
        """What a run record says about the assistant (a resume compares it)."""
        if self.backend == "scripted":
            return {"model": "scripted-rules", "delay": self.scripted_delay}
        model = "demo (tiny random LLaVA)" if self.demo else self.model
        out: dict[str, Any] = {"model": model, "device": self.device, "quant": self.quant}
        if self.detectors is not None:
            out["detectors"] = {c.name: c.weights for c in self.detectors.choices}
        return out


def _mids_from_hub(repo_id: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, FFAA.mids_file, revision=revision))
    except Exception as exc:  # noqa: BLE001 - not in the repo, offline, no access: decide without MIDS
        log.warning("note: no MIDS weights from %s (%s); deciding by majority vote of the parsed verdicts "
                    "(give --mids PATH to use MIDS)", repo_id, type(exc).__name__)
        return None
