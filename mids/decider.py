"""`MidsDecider`: FFAA's decision step as an `ffaa.decision.Decider`.

For every face, each parsed candidate is masked (`ffaa.parsing.mask_for_mids`: description and
reasoning only, the verdict hidden), MIDS scores how well it matches the face, and FFAA's
selector (`ffaa.mids.selector`) picks the final answer. Candidates that failed to parse are not
scored; they are listed with the reason. All candidates of all faces go through the network in
one forward pass, and the models are loaded once per decider.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ffaa.decision import candidate_verdicts, difficulty, excluded_scores
from ffaa.parsing import mask_for_mids
from ffaa.types import Candidate, CandidateScore, Decision, ForensicAnswer, Verdict

from .net import TINY_T5, MidsConfig, MidsNet, build_random
from .preprocess import (
    T5_MAX_LENGTH,
    clip_image_processor,
    pixel_values,
    tiny_tokenizer,
    tokenize,
)
from .selector import ZERO_DENOMINATOR_SCORE, select

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class _Face:
    """One face's scorable candidates (in order) and where their rows start in the batch."""

    candidates: Sequence[Candidate]
    parsed: list[tuple[Candidate, ForensicAnswer]]
    image_slot: int | None
    first_row: int


class MidsDecider:
    """Chooses among candidates with MIDS.

    `strict_ffaa=False` (default): the selector's branch follows our normalised verdict, so an
    answer saying "Real." counts as claiming real. `strict_ffaa=True` reproduces FFAA: the branch
    follows the raw verdict text lower-cased, and anything but exactly "real" ("real.",
    "uncertain") counts as a fake claim; difficulty then compares those raw strings too.

    All faces of a `decide_many` call share one forward pass; `max_faces_per_forward` caps that
    to bound memory. The forward runs in float32 with TF32 off (see `full_float32`).
    `Decision.note` records answers cut at `max_length` T5 tokens, FFAA-mode verdict quirks and
    zero-denominator match scores.
    """

    name = "mids"
    explains = True  # Grad-CAM over its image encoder (`ffaa.mids.heatmap`)

    def __init__(self, net: MidsNet, tokenizer: Any, image_processor: Any, *, device: str | torch.device = "cpu",
                 strict_ffaa: bool = False, max_length: int = T5_MAX_LENGTH,
                 max_faces_per_forward: int | None = None):
        self.device = resolve_device(device)
        self.net = net.to(self.device, torch.float32).eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.strict_ffaa = strict_ffaa
        self.max_length = max_length
        self.max_faces_per_forward = max_faces_per_forward

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | Path, *, clip: str | Path | None = None, t5: str | Path | None = None,
                        device: str | torch.device = "cpu", strict_ffaa: bool = False,
                        local_files_only: bool = False, **kwargs: Any) -> MidsDecider:
        """Load FFAA's `mids.pth` (or our safetensors, or a folder holding either) over the
        pretrained CLIP vision tower `clip` and T5 encoder `t5` (model ids or local folders;
        default: the sources recorded in the file, else FFAA's `openai/clip-vit-large-patch14-336`
        and `t5-base`). The T5 tokenizer and CLIP's preprocessing come from the same sources.
        """
        from ffaa.errors import CheckpointError

        from .checkpoint import load_mids
        from .preprocess import load_t5_tokenizer

        net = load_mids(path, clip=clip, t5=t5, local_files_only=local_files_only)
        t5 = t5 or (net.config.t5 if isinstance(net.config.t5, str) else None)
        clip = clip or (net.config.clip if isinstance(net.config.clip, str) else None)
        processor = clip_image_processor(net.image_encoder.config.image_size, source=clip)
        if t5 is None and _is_tiny_t5(net.config.t5):  # `train-mids --tiny` weights
            tokenizer = tiny_tokenizer(TINY_T5["vocab_size"])
        elif t5 is None:
            raise CheckpointError(f"{path} records no T5 source for the tokenizer: give --mids-t5 ID|DIR")
        else:
            tokenizer = load_t5_tokenizer(t5, local_files_only=local_files_only)
        return cls(net, tokenizer, processor, device=device, strict_ffaa=strict_ffaa, **kwargs)

    @classmethod
    def tiny(cls, seed: int = 0, **kwargs: Any) -> MidsDecider:
        """A tiny random MIDS with an offline toy tokenizer: for tests and demos, meaningless scores."""
        config = MidsConfig.tiny()
        net = build_random(config, seed=seed)
        tokenizer = tiny_tokenizer(config.t5["vocab_size"])
        processor = clip_image_processor(config.clip["image_size"])
        return cls(net, tokenizer, processor, **kwargs)

    # --- deciding ---------------------------------------------------------------------------

    def decide_many(self, faces: Sequence[Image.Image],
                    candidates: Sequence[Sequence[Candidate]]) -> list[Decision]:
        """One Decision per face; `candidates[i]` are face i's candidates."""
        if len(faces) != len(candidates):
            raise ValueError(f"{len(faces)} faces but {len(candidates)} candidate lists")
        step = self.max_faces_per_forward or max(len(faces), 1)
        decisions: list[Decision] = []
        for start in range(0, len(faces), step):
            decisions += self._decide_chunk(faces[start:start + step], candidates[start:start + step])
        return decisions

    def _decide_chunk(self, faces: Sequence[Image.Image],
                      candidates: Sequence[Sequence[Candidate]]) -> list[Decision]:
        plan, images, texts = self._plan(faces, candidates)
        probs, truncated = self.probabilities(images, texts, [f.image_slot for f in plan for _ in f.parsed])
        return [self._decision(face, probs, truncated) for face in plan]

    def _plan(self, faces, candidates) -> tuple[list[_Face], list[Image.Image], list[str]]:
        plan, images, texts = [], [], []
        for face, cands in zip(faces, candidates):
            parsed = [(c, c.answer) for c in cands if c.answer is not None]
            slot = None
            if parsed:
                slot = len(images)
                images.append(face)
            plan.append(_Face(cands, parsed, slot, len(texts)))
            texts += [mask_for_mids(a) for _, a in parsed]
        return plan, images, texts

    @torch.no_grad()
    def probabilities(self, images: Sequence[Image.Image], texts: Sequence[str],
                      image_index: Sequence[int]) -> tuple[torch.Tensor, tuple[bool, ...]]:
        """Class probabilities [T, 4] (float32, CPU) for text rows paired with images by index,
        and which rows were truncated. One forward pass."""
        if not texts:
            return torch.empty(0, 4), ()
        pixels = pixel_values(self.image_processor, images).to(self.device)
        tokens = tokenize(self.tokenizer, texts, self.max_length)
        index = torch.tensor(list(image_index), dtype=torch.long, device=self.device)
        with full_float32():
            logits = self.net.logits_per_row(pixels, tokens.input_ids.to(self.device),
                                             tokens.attention_mask.to(self.device), index)
        return logits.float().softmax(dim=-1).cpu(), tokens.truncated

    def _decision(self, face: _Face, probs: torch.Tensor, truncated: tuple[bool, ...]) -> Decision:
        verdicts = candidate_verdicts(face.candidates)
        excluded = excluded_scores(face.candidates)
        if not face.parsed:
            return Decision(self.name, None, None, None, None, difficulty(verdicts), verdicts,
                            tuple(excluded), note="no candidate could be parsed; MIDS had nothing to score")
        rows = range(face.first_row, face.first_row + len(face.parsed))
        table = [tuple(float(p) for p in probs[r]) for r in rows]
        claims = [self._claim(a) for _, a in face.parsed]
        notes = self._notes(face, [truncated[r] for r in rows], table)
        try:
            sel = select(claims, table)
        except ValueError as exc:
            return Decision(self.name, None, None, None, None, difficulty(verdicts), verdicts,
                            tuple(excluded), note=f"MIDS gave unusable scores ({exc})")
        scores = [CandidateScore(c.index, match_score=m, probabilities=p)
                  for (c, _), m, p in zip(face.parsed, sel.match_scores, table)]
        return Decision(
            method=self.name,
            verdict=Verdict.FAKE if sel.claims_fake else Verdict.REAL,
            chosen_index=face.parsed[sel.best][0].index,
            match_score=sel.match_score,
            forgery_score=sel.forgery_score,
            difficulty=difficulty(claims if self.strict_ffaa else verdicts),
            verdicts=verdicts,
            scores=tuple(sorted(scores + excluded, key=lambda s: s.index)),
            note="; ".join(notes),
        )

    def _claim(self, answer: ForensicAnswer) -> str:
        """The verdict string the selector compares with "real"."""
        return answer.verdict_text.strip().lower() if self.strict_ffaa else answer.verdict.value

    def _notes(self, face: _Face, truncated: list[bool], table: list[tuple[float, ...]]) -> list[str]:
        notes = []
        cut = [c.index for (c, _), t in zip(face.parsed, truncated) if t]
        if cut:
            notes.append(f"answer(s) {cut} exceeded {self.max_length} T5 tokens; MIDS read only the start")
        if self.strict_ffaa:
            odd = [(c.index, a.verdict_text) for c, a in face.parsed if self._claim(a) not in ("real", "fake")]
            if odd:
                notes.append("FFAA rule: verdict text other than 'real' counts as a fake claim: "
                             + ", ".join(f"answer {i} {t!r}" for i, t in odd))
        zero = [c.index for (c, a), p in zip(face.parsed, table) if _zero_denominator(self._claim(a), p)]
        if zero:
            notes.append(f"answer(s) {zero}: MIDS put no probability on the claim's classes; "
                         f"match score set to {ZERO_DENOMINATOR_SCORE}")
        return notes


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> the first CUDA device when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def full_float32() -> Iterator[None]:
    """Run with TF32 off for matmuls and convolutions (restored afterwards).

    On Ampere and newer GPUs TF32 moves MIDS's logits by about 1e-3, enough to flip close
    choices between answers; FFAA's numbers are float32.
    """
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _zero_denominator(claim: str, p: tuple[float, ...]) -> bool:
    return (p[0] + p[2] if claim == "real" else p[3] + p[1]) == 0.0


def _is_tiny_t5(config: Any) -> bool:
    """The weights record the tiny test T5 (a config, no source): its toy tokenizer fits it."""
    return isinstance(config, Mapping) and all(config.get(k) == v for k, v in TINY_T5.items())
