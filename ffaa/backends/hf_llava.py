"""The real backend: transformers' own LLaVA classes (LLaVA-1.5 style and LLaVA-NeXT).

Loads a transformers-layout folder or hub id through the Auto classes; an original-format LLaVA
checkpoint (FFAA's release) is converted once into a cache first (see `convert.py`). Weight
formats (`--quant`) and the default per device and GPU memory are described in `quant.py`; the
vision tower, the projector and lm_head always stay unquantised. On CPU the default is fp32.
Compiled decoding (static cache + torch.compile, `fast.py`) is on by default on CUDA for the
formats that compile; call `warmup()` at start-up so the compile does not land in a request.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, FfaaError, WeightsNotFoundError
from ..lazy import require
from ..options import DTYPE_CHOICES
from ..types import DecodingSettings
from . import hub
from .base import BackendInfo, Generation, GenerationRequest
from .generation import answer_end_pattern, answer_end_stop, cut_after_answer, ended
from .quant import QUANT_CHOICES  # formats and their defaults are described in quant.py

# Imported only once a command has decided to load a model (`AssistantSpec.load_backend`), so
# the heavy libraries load here, once, with the "install ffaa[torch]" message if missing.
torch = require("torch", "torch", "running the model")
transformers = require("transformers", "torch", "running the model")

# Module paths kept in full precision under bitsandbytes (transformers 5 uses full paths).
KEEP_UNQUANTIZED = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]


@dataclass(frozen=True)
class LoadOptions:
    """How to place and quantise the model. "auto" picks per device (see module docstring)."""

    device: str = "auto"
    quant: str = "auto"
    dtype: str = "auto"
    revision: str | None = None
    attn_implementation: str | None = None
    # Compiled decoding (fast.py): "auto" = static cache + torch.compile on CUDA when the weights
    # compile; "on", "static" (static cache, no compile) or "off". `compile_rows` fixes the batch.
    compile: str = "auto"
    compile_rows: int = 3


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FfaaError(f"--device {device} was asked for but CUDA is not available here")
    return device


def resolve_quant(quant: str, device: str) -> str:
    if quant not in QUANT_CHOICES:
        raise FfaaError(f"unknown quantisation {quant!r}; choose one of {', '.join(QUANT_CHOICES)}")
    from .quant import check_available, default_quant

    quant = default_quant(device) if quant == "auto" else quant
    check_available(quant, device)
    return quant


def resolve_dtype(dtype: str, device: str, quant: str):
    names = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if dtype in names:
        return names[dtype]
    if dtype != "auto":
        raise FfaaError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_CHOICES)}")
    if device.startswith("cuda"):
        return torch.bfloat16
    return torch.float32


def quantization_config(quant: str, compute_dtype):
    """bitsandbytes settings for "4bit" (nf4, double quant) or "8bit"; None for the others
    (torchao formats are applied after loading, see `quant.apply_torchao`)."""
    if quant not in ("4bit", "8bit"):
        return None
    require("bitsandbytes", "gpu", f"{quant} quantisation")
    if quant == "4bit":
        return transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=KEEP_UNQUANTIZED,
        )
    return transformers.BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=KEEP_UNQUANTIZED)


def locate_model(source: str, revision: str | None = None) -> Path:
    """A local transformers-layout folder for `source` (folder or hub id), converting if needed."""
    from .convert import ensure_converted, is_original_llava_checkpoint

    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path} has no config.json: not a model folder")
        return ensure_converted(path) if is_original_llava_checkpoint(path) else path
    return _from_hub(hub.check_hub_id(source, "model"), revision)


def _from_hub(repo_id: str, revision: str | None) -> Path:
    """Original-format repos (FFAA's) are converted once into the cache; transformers-layout
    repos (llava-hf) are used as downloaded. Only config.json is fetched to tell them apart."""
    from .convert import cached_conversion, ensure_converted, is_original_llava_checkpoint

    cached = cached_conversion(repo_id, revision=revision) or hub.cached_snapshot(repo_id, revision, _has_weights)
    if cached is not None:
        # A snapshot of an original checkpoint is converted (once) without any network.
        return ensure_converted(repo_id, revision=revision) if is_original_llava_checkpoint(cached) else cached
    if not hub.hub_reachable():
        raise WeightsNotFoundError(hub.not_found_message(repo_id, "the hub cannot be reached from here"))
    config = hub.download_file(repo_id, "config.json", revision)
    if is_original_llava_checkpoint(config.parent):
        return ensure_converted(repo_id, revision=revision)
    return hub.download_snapshot(repo_id, revision)


def _has_weights(folder: Path) -> bool:
    """A snapshot with a config and weights, in either layout (an original one is converted)."""
    has_weights = any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
    return has_weights and (folder / "config.json").is_file()


SHOW_LOAD_PROGRESS_BYTES = 512 * 2**20  # below this, loading takes a blink: no progress bar


def _progress_bar_if_large(folder):
    """transformers' "Loading weights" bar only where loading takes a while (the 7B model), not
    for the demo's few megabytes, where it is noise on every command."""
    size = sum(p.stat().st_size for p in Path(folder).glob("*.safetensors")) if Path(folder).is_dir() else 0
    return transformers_progress_bars(size >= SHOW_LOAD_PROGRESS_BYTES)


@contextlib.contextmanager
def transformers_progress_bars(show: bool) -> Iterator[None]:
    """transformers' progress bars off unless `show`, then as they were."""
    was_on = transformers.utils.logging.is_progress_bar_enabled()
    if not show:
        transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            transformers.utils.logging.enable_progress_bar()


class HFLlavaBackend:
    """A transformers LLaVA model plus its processor, answering batches of prompts."""

    def __init__(self, model, processor, info: BackendInfo):
        self.model = model
        self.processor = processor
        self.info = info
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # batched generation continues from the right edge
        self._lock = threading.Lock()  # one generate at a time per model replica
        self.fast = None  # a fast.FastDecoder when compiled/static-cache decoding is on
        self.fast_error: str | None = None  # why compiled decoding was given up, if it was

    @classmethod
    def load(cls, source: str, options: LoadOptions = LoadOptions(), demo: bool = False):
        # Options first: a typo in a flag must not cost a 15 GB download.
        device = resolve_device(options.device)
        quant = resolve_quant(options.quant, device)
        dtype = resolve_dtype(options.dtype, device, quant)
        folder = locate_model(source, options.revision)
        kwargs: dict[str, Any] = {"dtype": dtype}
        qconfig = quantization_config(quant, dtype)
        if qconfig is not None:
            kwargs["quantization_config"] = qconfig
        kwargs["device_map"] = device if device != "cpu" or qconfig is not None else None
        from . import quant as formats

        if formats.loads_on_cpu_first(quant):
            kwargs["device_map"] = None
        if options.attn_implementation:
            kwargs["attn_implementation"] = options.attn_implementation
        try:
            with _progress_bar_if_large(folder):
                model = transformers.AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
            # The PIL image processor reproduces LLaVA's pad-to-square preprocessing exactly; the
            # torchvision one (picked by default when torchvision is installed) does not.
            processor = transformers.AutoProcessor.from_pretrained(folder, backend="pil")
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"cannot load a LLaVA model from {folder}: {exc}") from exc
        if formats.loads_on_cpu_first(quant):
            model = formats.apply_torchao(model, quant, device)
        model.eval()
        info = BackendInfo(
            name=f"transformers/{type(model).__name__}",
            model_id=source,
            revision=options.revision,
            quantization=quant,
            device=device,
            dtype=str(dtype).replace("torch.", ""),
            demo=demo,
        )
        backend = cls(model, processor, info)
        backend.fast = _fast_decoder(backend, options, quant)
        return backend

    def warmup(self, log=None, sampling: bool = False) -> float:
        """Compile the decoding path now (about a minute on a GPU) instead of in the first
        request; seconds taken, 0 when decoding is not compiled. Call once at start-up, with
        `sampling` when requests will sample (that path is compiled too).

        If compiling fails, the backend falls back to plain `generate` (the reason is logged
        and kept in `fast_error`) rather than failing every later request.
        """
        if self.fast is None:
            return 0.0
        with self._lock:
            try:
                return self.fast.warmup(self, log, sampling=sampling)
            except Exception as exc:  # noqa: BLE001 - any compiler/driver error: plain decoding still works
                from .fast import give_up  # fast.py never imports this module: no cycle

                self.fast_error = give_up(self.fast, exc, log)
                self.fast = None
                return 0.0

    # -- generation -------------------------------------------------------------------------

    def _inputs(self, requests: Sequence[GenerationRequest]):
        inputs = self.processor(
            images=[r.image for r in requests],
            text=[r.prompt for r in requests],
            return_tensors="pt",
            padding=True,
        )
        return inputs.to(self.model.device)

    def _generate_kwargs(self, settings: DecodingSettings) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens,
            "min_new_tokens": settings.min_new_tokens or None,
            "do_sample": settings.do_sample,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if settings.do_sample:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        suppressed = self._non_text_ids()
        if suppressed:
            kwargs["suppress_tokens"] = suppressed
        return kwargs

    def _non_text_ids(self) -> list[int]:
        """Ids the model must never write: the image token, padding and unused vocab rows."""
        vocab = self.model.get_output_embeddings().weight.shape[0]
        image_id = getattr(self.model.config, "image_token_id", None)
        extra = {image_id, self.tokenizer.pad_token_id} - {None, self.tokenizer.eos_token_id}
        return sorted(extra | set(range(len(self.tokenizer), vocab)))

    def generate(
        self, requests: Sequence[GenerationRequest], settings: DecodingSettings
    ) -> list[Generation]:
        """Answer all requests in one batched `generate` call (left padding)."""
        if not requests:
            return []
        if self.fast is not None:
            with self._lock:
                return self.fast.generate(self, requests, settings)
        with self._lock, torch.inference_mode():
            torch.manual_seed(settings.seed)
            inputs = self._inputs(requests)
            prompt_len = inputs["input_ids"].shape[1]
            stop = answer_end_stop(self.tokenizer, prompt_len, requests, settings.stop_at_answer_end)
            kwargs = self._generate_kwargs(settings)
            if stop is not None:
                kwargs["stopping_criteria"] = [stop]
            out = self.model.generate(**inputs, **kwargs)
        return [self._finish(row, out[i, prompt_len:], settings, stop) for i, row in enumerate(requests)]

    def _finish(self, request: GenerationRequest, new_ids, settings: DecodingSettings, stop) -> Generation:
        """One row's text and why it stopped; with an answer-end `stop`, cut after the request's
        closing line (a row checked every few tokens may have written past it)."""
        ids = new_ids.tolist()
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        stopped_by = "max_new_tokens"
        if eos in ids:
            ids = ids[: ids.index(eos)]
            stopped_by = "eos"
        while ids and ids[-1] == pad and pad != eos:
            ids.pop()
        text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        end = answer_end_pattern(tuple(request.end_labels)) if stop is not None else None
        if stopped_by != "eos" and ended(text, end):
            if len(ids) < settings.max_new_tokens:
                stopped_by = "answer_end"
            text = cut_after_answer(text, end)
        return Generation(text=text, new_tokens=len(ids), stopped_by=stopped_by)

    def score_verdict(self, requests: Sequence[GenerationRequest]) -> list[float]:
        """P(fake) / (P(real) + P(fake)) of the next token after each prompt: one forward pass.

        "real" and "fake" count in every spelling the tokenizer writes as one token ("real",
        "Real", " real", ...), so the score does not hinge on how the model cases its verdict.
        With left padding the last position is every row's next token.
        """
        if not requests:
            return []
        words: dict[str, set[int]] = {"real": set(), "fake": set()}
        for word, ids in words.items():
            for form in (word, word.capitalize(), word.upper(), f" {word}", f" {word.capitalize()}"):
                pieces = self.tokenizer.encode(form, add_special_tokens=False)
                if len(pieces) == 1:
                    ids.add(pieces[0])
            if not ids:
                raise CheckpointError(f"the tokenizer has no single token for {word!r}: triage cannot score this model")
        real, fake = sorted(words["real"]), sorted(words["fake"])
        with self._lock, torch.inference_mode():
            logits = self.model(**self._inputs(requests)).logits[:, -1, :].float()
        probs = logits.softmax(dim=-1)
        p_real, p_fake = probs[:, real].sum(dim=-1), probs[:, fake].sum(dim=-1)
        return (p_fake / (p_real + p_fake).clamp_min(1e-12)).tolist()

    def stream(self, request: GenerationRequest, settings: DecodingSettings) -> Iterator[str]:
        """Yield text pieces of one answer as they are generated (for the chat UI)."""
        streamer = transformers.TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        inputs = self._inputs([request])
        cancel = threading.Event()
        kwargs = {
            **self._generate_kwargs(settings),
            "streamer": streamer,
            "stopping_criteria": [_Cancelled(cancel)],
        }
        errors: list[BaseException] = []

        def work():
            try:
                with self._lock, torch.inference_mode():
                    self.model.generate(**inputs, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - surfaced to the consumer below
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            yield from streamer
        finally:
            # A consumer that stops reading (a cancelled chat turn) ends generation at the next
            # token instead of holding the model until max_new_tokens.
            cancel.set()
            thread.join()
        if errors:
            raise errors[0]


class _Cancelled:
    """Stopping criterion that ends generation once `event` is set."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def _fast_decoder(backend: HFLlavaBackend, options: LoadOptions, quant: str):
    """The FastDecoder for the resolved compile mode, or None for plain `generate`."""
    from .fast import FastDecoder, FastSettings, resolve_mode
    from .quant import quant_format

    mode = resolve_mode(options.compile, backend.info.device, quant_format(quant).compiles)
    if mode == "off":
        return None
    return FastDecoder(backend.model, backend.tokenizer, mode, FastSettings(rows=options.compile_rows))
