"""The demo model: the tiny random LLaVA, briefly trained to write FFAA's answer format.

The tiny model of `tiny.py` has random weights, so its text never has the five fields the
parser needs, every candidate fails and `ffaa analyze --demo` could never show a verdict, a
match score or a difficulty. This module trains that model for a few seconds on CPU, with
teacher forcing, on synthetic examples: the real chat prompts (a free question or a
hypothesis prompt) with noise or simple synthetic images, and answers in the exact format
built from a small phrase bank. Afterwards greedy decoding writes well-formed answers and
the hypothesis prompts get their own verdict, so the whole pipeline runs end to end.

What it writes is still meaningless: the images carry no information about the answers it
was trained on, the free-question verdict is a coin flip, and the phrases are generic. It
shows the shape of a report, never an analysis.

Training takes a minute or two on two CPU cores. What keeps it short:
- the vision tower stays frozen (its random features are noise to be ignored);
- lm_head runs only at answer positions, over a sampled softmax (`answer_loss`);
- the first steps use text-only prompts, a fifth of the cost of a row with 576 image
  positions, where the model learns to follow the hypothesis word quickly; rows with an
  image follow, and teach it to do the same past an image;
- the token where an answer commits to its verdict gets extra weight in the loss;
- training stops once greedy answers to held-out probes pass twice in a row.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from ..lazy import require
from .hub import build_atomically, ffaa_cache_root

if TYPE_CHECKING:
    from ..prompts import PromptSet
    from .hf_llava import HFLlavaBackend

# Imported only to build or load the demo model (`AssistantSpec.load_backend`, after the backend):
# torch and transformers at the top, with the "install ffaa[torch]" message if missing.
torch = require("torch", "torch", "the demo model")
transformers = require("transformers", "torch", "the demo model")

# Bump when the training recipe changes; cached builds of another format are rebuilt.
DEMO_FORMAT = 1
MARKER_FILE = "ffaa_demo.json"
# The step budget; training usually stops after 100-130 steps (see `train_to_format`).
DEFAULT_STEPS = 160
# Rows per step. Most are text-only: without the 576 image positions a row costs a fifth, and
# the hypothesis word stands out among ~70 prompt tokens instead of ~650, so the model learns
# to follow it far sooner. The rows with an image teach it to do the same past an image.
TEXT_ROWS = 6
IMAGE_ROWS = 6
# Random vocabulary rows scored against the targets' rows per step (see `answer_loss`).
NEGATIVES = 2048
# Steps with text-only rows (TEXT_ROWS + 2 * IMAGE_ROWS of them) before the image rows start.
TEXT_ONLY_STEPS = 60
LEARNING_RATE = 6e-3
WARMUP_STEPS = 10
# The verdict hangs on one token per answer; unweighted it is a rounding error in the mean loss
# and the model takes hundreds of steps to make it follow the hypothesis in the prompt.
DECISION_WEIGHT = 20.0
# Greedy probes on held-out images run every CHECK_EVERY steps of the image phase once the
# (sampled-softmax) loss is below CHECK_BELOW_LOSS.
CHECK_EVERY = 10
CHECK_BELOW_LOSS = 0.3
PROBE_IMAGES = 4
PASSES_TO_STOP = 2
PROBE_MAX_TOKENS = 160
_HELD_OUT = 1_000_003  # offsets the probes' image seed away from the training images'

# -- phrase bank ---------------------------------------------------------------------------
# Generic wording with a fixed skeleton per field: a 2-layer model learns it in seconds, and
# greedy decoding follows one path through it instead of drifting between sentences.
_OPENINGS = ("The crop shows", "This close-up shows")
_PEOPLE = ("a young woman", "a young man", "a middle-aged woman", "a middle-aged man", "an older woman", "an older man")
_POSES = ("facing the camera", "turned slightly left", "turned slightly right")
_LIGHT = ("in soft even light", "lit from one side", "in dim light")
# The reasoning opens with a fixed, verdict-specific phrase: its first token is where the
# answer commits to a verdict, so that is the one token that must follow the prompt.
_REASONING_OPENINGS = {"real": "Nothing looks edited:", "fake": "Signs of editing appear:"}
_CUES = {
    "real": (
        "the skin keeps fine pores and the shadows agree with the light",
        "both eyes carry matching highlights and the jaw outline is continuous",
        "the hairline meets the background cleanly and the lips show natural texture",
        "the skin tone is even from the forehead to the neck",
    ),
    "fake": (
        "the cheeks look unnaturally smooth and a faint seam circles the face",
        "the eye highlights do not match and the teeth blur together",
        "strands of hair dissolve into the background and the skin tone shifts at the jaw",
        "the face is sharper than the ears and the neck",
    ),
}
_FAKE_TYPES = ("Entire face synthesis", "Identity exchange", "Facial attribute manipulation")
_VERDICTS = ("real", "fake")


def synthetic_answer(rng: random.Random, verdict: str) -> str:
    """One answer in the exact five-line format, whose reasoning, probability and type agree
    with `verdict`. Labels come from `answer_format.yaml`, the parser's own source."""
    from ..prompts import load_answer_format

    real = verdict == "real"
    values = {
        "description": f"{rng.choice(_OPENINGS)} {rng.choice(_PEOPLE)} {rng.choice(_POSES)}, {rng.choice(_LIGHT)}.",
        "reasoning": f"{_REASONING_OPENINGS[verdict]} {rng.choice(_CUES[verdict])}.",
        "verdict": verdict,
        "probability": f"{rng.randint(2, 35) / 100:.2f}" if real else f"{rng.randint(65, 98) / 100:.2f}",
        "forgery_type": "None" if real else rng.choice(_FAKE_TYPES),
    }
    return "\n".join(f"{f.label}: {values[f.key]}" for f in load_answer_format().fields)


def synthetic_image(rng: random.Random) -> Image.Image:
    """Noise, a gradient or a face-like blob of a random size and shape: no content, only
    enough variety that the model learns to write the same format for any image."""
    gen = np.random.default_rng(rng.getrandbits(32))
    width, height = rng.randint(96, 400), rng.randint(96, 400)
    kind = rng.choice(("noise", "smooth", "gradient", "blob"))
    if kind == "noise":
        return Image.fromarray(gen.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if kind == "smooth":
        small = gen.integers(0, 256, (rng.randint(2, 12), rng.randint(2, 12), 3), dtype=np.uint8)
        return Image.fromarray(small).resize((width, height), Image.BILINEAR)
    if kind == "gradient":
        ramp = np.linspace(0.0, 1.0, width)[None, :, None] * np.ones((height, 1, 1))
        low, high = gen.integers(0, 256, 3), gen.integers(0, 256, 3)
        return Image.fromarray((low + ramp * (high - low)).astype(np.uint8))
    image = Image.new("RGB", (width, height), tuple(int(v) for v in gen.integers(0, 256, 3)))
    box = (width * 0.2, height * 0.15, width * 0.8, height * 0.9)
    ImageDraw.Draw(image).ellipse(box, fill=tuple(int(v) for v in gen.integers(60, 240, 3)))
    return image


@dataclass(frozen=True)
class Example:
    """One training or probe row: an image (None for a text-only row), the full chat prompt
    and the verdict it asks for (the hypothesis' label, or None for a free question, whose
    verdict is a coin flip)."""

    image: Image.Image | None
    prompt: str
    verdict: str | None


def sample_example(rng: random.Random, prompts: PromptSet, with_image: bool = True) -> Example:
    """A free question or one of the two hypotheses, in equal shares.

    Hypotheses get two thirds of the rows because following them (reading "real" or "fake"
    far back in the prompt) is the one thing the model must learn beyond the format."""
    image = synthetic_image(rng) if with_image else None
    slot = rng.randrange(3)
    if slot == 0:
        question, verdict = rng.choice(prompts.questions), None
    else:
        verdict = _VERDICTS[slot - 1]
        question = prompts.hypothesis(verdict)
    return Example(image, prompts.chat([(question, None)], with_image=with_image), verdict)


def probe_examples(seed: int, n_images: int = PROBE_IMAGES) -> list[Example]:
    """Held-out rows (images from another seed), three per image as the pipeline asks them:
    a free question, then the real and the fake hypothesis."""
    from ..prompts import load_prompt_set

    prompts = load_prompt_set()
    rng = random.Random(seed + _HELD_OUT)
    rows = []
    for _ in range(n_images):
        image = synthetic_image(rng)
        rows.append(Example(image, prompts.chat([(rng.choice(prompts.questions), None)]), None))
        rows += [Example(image, prompts.chat([(prompts.hypothesis(v), None)]), v) for v in _VERDICTS]
    return rows


def is_well_formed(text: str, verdict: str | None = None) -> bool:
    """True when `text` parses with all five fields, no parser warning and, if given, the
    expected verdict: the bar the demo model must clear, stricter than the pipeline's."""
    from ..parsing import parse_answer

    parsed = parse_answer(text)
    answer = parsed.answer
    if answer is None or parsed.warnings:
        return False
    complete = bool(answer.description and answer.reasoning) and None not in (answer.probability, answer.forgery_type)
    return complete and (verdict is None or answer.verdict.value == verdict)


# -- training ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSummary:
    """How training ended: steps run, the mean training loss of the last ten steps (sampled
    softmax), the full-vocabulary loss on held-out rows, and whether the probes passed."""

    steps: int
    final_loss: float
    held_out_loss: float
    probes_passed: bool


def _decision_index(tok: Any, answer: str, ids: Sequence[int]) -> int | None:
    """Index in `ids` of the reasoning's first token, where the answer commits to a verdict;
    None if the tokenizer merges it with the label before it (no extra weight then)."""
    from ..prompts import load_answer_format

    label = load_answer_format().label("reasoning") + ":"
    prefix = tok.encode(answer[: answer.index(label) + len(label)], add_special_tokens=False)
    return len(prefix) if list(ids[: len(prefix)]) == prefix and len(prefix) < len(ids) else None


def _encode(processor: Any, rows: Sequence[Example], answers: Sequence[str]) -> dict[str, Any]:
    """Prompts as the backend encodes them (left padded, `<image>` expanded), each followed by
    its answer and EOS (right padded). `labels` is -100 everywhere but on answer tokens;
    `weights` is 1 on answer tokens and DECISION_WEIGHT where a hypothesis row commits to its
    verdict (a free question's verdict is a coin flip: weighting it would only add noise)."""
    images = [r.image for r in rows if r.image is not None] or None
    inputs = processor(images=images, text=[r.prompt for r in rows], return_tensors="pt", padding=True)
    tok = processor.tokenizer
    answer_ids = [tok.encode(a, add_special_tokens=False) + [tok.eos_token_id] for a in answers]
    prompt_len, width = inputs["input_ids"].shape[1], max(len(ids) for ids in answer_ids)
    tail = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    tail_mask = torch.zeros((len(rows), width), dtype=torch.long)
    weights = torch.zeros((len(rows), prompt_len + width))
    for i, (ids, answer) in enumerate(zip(answer_ids, answers)):
        tail[i, : len(ids)] = torch.tensor(ids)
        tail_mask[i, : len(ids)] = 1
        weights[i, prompt_len : prompt_len + len(ids)] = 1.0
        decision = _decision_index(tok, answer, ids) if rows[i].verdict else None
        if decision is not None:
            weights[i, prompt_len + decision] = DECISION_WEIGHT
    input_ids = torch.cat([inputs["input_ids"], tail], dim=1)
    labels = torch.full_like(input_ids, -100)
    labels[:, prompt_len:] = tail.masked_fill(tail_mask == 0, -100)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.cat([inputs["attention_mask"], tail_mask], dim=1),
        "pixel_values": inputs.get("pixel_values"),
        "labels": labels,
        "weights": weights,
    }


def answer_loss(model: Any, batches: Sequence[dict[str, Any]], negatives: Any = None) -> Any:
    """Weighted cross-entropy over the answer tokens of all `batches` (encoded apart so that
    short text-only rows are not padded to the length of rows with an image).

    lm_head runs only at answer positions, and, when `negatives` (token ids) are given, only
    over the rows of this step's target tokens plus those: a sampled softmax. The full 32k-word
    softmax would be ~85% of a step's cost, and the words the answers never use need only be
    pushed down now and then, not at every position of every step.
    """
    hidden, targets, weights = [], [], []
    for batch in batches:
        states = model.model(
            input_ids=batch["input_ids"], pixel_values=batch["pixel_values"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        labels = batch["labels"][:, 1:]
        keep = labels != -100
        hidden.append(states[:, :-1][keep])
        targets.append(labels[keep])
        weights.append(batch["weights"][:, 1:][keep])
    hidden, targets, weights = torch.cat(hidden), torch.cat(targets), torch.cat(weights)
    head = model.lm_head.weight
    if negatives is None:
        logits = hidden @ head.T
    else:
        words = torch.unique(torch.cat([targets, negatives]))  # sorted
        logits = hidden @ head[words].T
        targets = torch.searchsorted(words, targets)
    losses = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    return (losses * weights).sum() / weights.sum()


def training_batches(
    processor: Any, rng: random.Random, prompts: PromptSet, text_only: bool = False
) -> list[dict[str, Any]]:
    """One step's rows, text-only and with an image, each group encoded on its own."""
    batches = []
    groups = ((TEXT_ROWS + 2 * IMAGE_ROWS, False),) if text_only else ((TEXT_ROWS, False), (IMAGE_ROWS, True))
    for count, with_image in groups:
        if count:
            rows = [sample_example(rng, prompts, with_image) for _ in range(count)]
            answers = [synthetic_answer(rng, r.verdict or rng.choice(_VERDICTS)) for r in rows]
            batches.append(_encode(processor, rows, answers))
    return batches


def probe_backend(model: Any, processor: Any) -> HFLlavaBackend:
    """The real backend around an in-memory model, so probes decode exactly as `analyze` does
    (left padding, suppressed non-text ids, stop at the end of the answer)."""
    from .base import BackendInfo
    from .hf_llava import HFLlavaBackend

    info = BackendInfo("transformers/demo-training", "demo", None, "none", "cpu", "float32", demo=True)
    return HFLlavaBackend(model, processor, info)


def well_formed_rate(backend: Any, rows: Sequence[Example], max_new_tokens: int = PROBE_MAX_TOKENS) -> float:
    """Share of `rows` whose greedy answer is well formed (see `is_well_formed`)."""
    from ..prompts import load_answer_format
    from ..types import DecodingSettings
    from .base import GenerationRequest

    end = load_answer_format().end_labels  # probes stop where `analyze` stops
    requests = [GenerationRequest(r.image, r.prompt, end) for r in rows]
    gens = backend.generate(requests, DecodingSettings(max_new_tokens=max_new_tokens))
    return sum(is_well_formed(g.text, r.verdict) for g, r in zip(gens, rows)) / max(len(rows), 1)


def lr_factor(step: int, steps: int) -> float:
    """Linear warm-up, then a cosine decay to a tenth: the verdict decision, learnt last,
    wobbles at the full rate and settles only as the rate falls."""
    import math

    if step < WARMUP_STEPS:
        return (step + 1) / WARMUP_STEPS
    progress = min(1.0, (step - WARMUP_STEPS) / max(1, steps - WARMUP_STEPS))
    return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))


class _Trainer:
    """AdamW on every weight but the frozen vision tower, fed by `training_batches`."""

    def __init__(self, model: Any, processor: Any, seed: int, steps: int):
        from ..prompts import load_prompt_set

        self.model, self.processor, self.prompts = model, processor, load_prompt_set()
        self.rng = random.Random(seed)
        self.draw = torch.Generator().manual_seed(seed)  # the sampled softmax's negatives
        model.model.vision_tower.requires_grad_(False)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=LEARNING_RATE, weight_decay=0.0)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, steps))
        self.recent: list[float] = []

    def step(self, step: int) -> None:
        """One optimiser step; text-only rows until TEXT_ONLY_STEPS, then mixed rows."""
        self.model.train()
        batches = training_batches(self.processor, self.rng, self.prompts, text_only=step <= TEXT_ONLY_STEPS)
        negatives = torch.randint(0, len(self.processor.tokenizer), (NEGATIVES,), generator=self.draw)
        loss = answer_loss(self.model, batches, negatives)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.recent = (self.recent + [loss.item()])[-10:]
        self.model.eval()

    @property
    def loss(self) -> float:
        """Mean loss of the last ten steps: one step's loss swings with its random answers."""
        return round(sum(self.recent) / max(len(self.recent), 1), 4)

    def done(self) -> None:
        """Give the vision tower back its gradients, so the model leaves as it came in."""
        self.model.model.vision_tower.requires_grad_(True)


def train_to_format(
    model: Any, processor: Any, *, seed: int = 0, steps: int = DEFAULT_STEPS,
    log: Callable[[str], None] | None = None,
) -> TrainSummary:
    """Teacher-force `model` on synthetic examples until greedy answers to held-out probes are
    all well formed at PASSES_TO_STOP checks in a row (one lucky check is not enough: the
    model can still be on the edge), or until `steps` ran out.

    The data come from `random.Random(seed)` and a torch generator of the same seed, and
    torch's global RNG is left as it was, so a seed gives the same weights on the same machine
    and thread count.
    """
    trainer = _Trainer(model, processor, seed, steps)
    backend, probes = probe_backend(model, processor), probe_examples(seed)
    passes, step = 0, 0
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for step in range(1, steps + 1):
                trainer.step(step)
                if step % CHECK_EVERY:
                    continue
                note = ""
                if step > TEXT_ONLY_STEPS and trainer.loss < CHECK_BELOW_LOSS:
                    rate = well_formed_rate(backend, probes)
                    passes = passes + 1 if rate == 1.0 else 0
                    note = f", probes well formed {rate:.0%}"
                if log:
                    log(f"step {step}: loss {trainer.loss:.3f}{note}")
                if passes == PASSES_TO_STOP:
                    break
    finally:
        trainer.done()
    return TrainSummary(step, trainer.loss, held_out_loss(model, processor, seed), passes == PASSES_TO_STOP)


def held_out_loss(model: Any, processor: Any, seed: int) -> float:
    """Full-vocabulary loss on one step's worth of rows the model never trained on: unlike the
    training loss, it compares across recipes."""
    from ..prompts import load_prompt_set

    rng = random.Random(seed + _HELD_OUT + 1)
    with torch.no_grad():
        loss = answer_loss(model, training_batches(processor, rng, load_prompt_set()))
    return round(float(loss), 4)


# -- building and caching -----------------------------------------------------------------------


def build_demo_llava(
    dst: str | Path, *, seed: int = 0, steps: int = DEFAULT_STEPS, log: Callable[[str], None] | None = None
) -> Path:
    """Build the tiny random model into `dst`, train it to write the answer format, save it.

    The folder loads through the Auto classes like any LLaVA checkpoint; `ffaa_demo.json`
    records the seed, the step budget, how training ended and that only the format was learnt.
    """
    from . import tiny

    dst = Path(dst)
    with _no_progress_bars():
        tiny.build_tiny_llava(dst, seed=seed)
        model = transformers.AutoModelForImageTextToText.from_pretrained(str(dst))
        processor = transformers.AutoProcessor.from_pretrained(str(dst), backend="pil")
        summary = train_to_format(model, processor, seed=seed, steps=steps, log=log)
        model.save_pretrained(str(dst))
    (dst / tiny.MARKER_FILE).unlink(missing_ok=True)  # its "random_weights" no longer holds
    marker = {**_identity(seed, steps), "steps_run": summary.steps, "final_loss": summary.final_loss,
              "held_out_loss": summary.held_out_loss, "probes_passed": summary.probes_passed}
    (dst / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return dst


def _no_progress_bars():
    """transformers' "Writing model shards" and "Loading weights" bars off while building: the
    demo's few megabytes take a blink, and the bars would bury the one line saying a build runs."""
    from .hf_llava import transformers_progress_bars

    return transformers_progress_bars(False)


def _identity(seed: int, steps: int) -> dict[str, Any]:
    """The marker fields a cached build must match to be reused."""
    import importlib.metadata

    return {
        "demo_format": DEMO_FORMAT,
        "seed": seed,
        "steps": steps,
        "transformers": importlib.metadata.version("transformers"),
        "trained_to_format_only": True,
    }


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The build record of a demo model folder, or None when there is none."""
    try:
        data = json.loads((Path(folder) / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _is_built(folder: Path, seed: int, steps: int) -> bool:
    """A finished build of this recipe, seed and budget, by this transformers version."""
    marker = read_marker(folder)
    return marker is not None and all(marker.get(k) == v for k, v in _identity(seed, steps).items())


def demo_model_dir(
    cache: bool = True, seed: int = 0, *, steps: int = DEFAULT_STEPS, log: Callable[[str], None] | None = None
) -> Path:
    """A folder with the demo model: built once under `$FFAA_CACHE/demo/` and then reused.

    With `cache=False` a fresh copy is built in a new temporary folder (the caller owns it).
    `log` hears one line before a build and one after it, since a build takes a while.
    """
    final = ffaa_cache_root() / "demo" / f"llava-seed{seed}"
    if cache and _is_built(final, seed, steps):
        return final
    if log:
        log("training the demo model to write the answer format (once; a minute or two on CPU) ...")
    if cache:
        folder = build_atomically(
            final, lambda tmp: build_demo_llava(tmp, seed=seed, steps=steps), done=lambda f: _is_built(f, seed, steps)
        )
    else:
        folder = build_demo_llava(tempfile.mkdtemp(prefix="ffaa-demo-"), seed=seed, steps=steps)
    if log:
        log(_built_line(folder))
    return folder


def _built_line(folder: Path) -> str:
    """One line on how a build went, from its marker."""
    marker = read_marker(folder) or {}
    line = f"demo model ready after {marker.get('steps_run')} steps (held-out loss {marker.get('held_out_loss')})"
    if not marker.get("probes_passed"):
        line += "; WARNING: its answers did not always follow the format, some candidates may not parse"
    return line
