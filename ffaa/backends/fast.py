"""Compiled decoding for the LLaVA backend: one static KV cache, fixed shapes, `torch.compile`.

Plain `generate` spends 25-80 ms per token on Python and kernel-launch overhead, several times
the time the GPU needs to read the weights. A static cache plus `torch.compile` (CUDA graphs)
removes most of it, but only if shapes never change, because every new shape is a new compile
(40-90 s for a 7B model). So the shapes are fixed for the life of the process:

* batch: requests are cut into groups of `rows` (3 = one face's candidates); a short group is
  filled with copies of its last row, whose outputs are dropped (and which are stopped at once);
* prompt: every prompt is left-padded to a multiple of `prompt_bucket` tokens (padding is
  masked, so answers do not change);
* cache: one `StaticCache` of `cache_len` positions is allocated at warm-up and reset and reused
  by every call, so the compiled step always sees the same tensors. It grows (one recompile,
  with a warning) only if a prompt plus its answer would not fit.

Only the one-token decoding step is compiled; the prefill runs eagerly and its shape may vary
freely. Greedy requests are decoded by ffaa's own loop (`steploop.GreedyLoop`: the step, token
choice and bookkeeping on the device, the host checking in every few tokens); sampled requests,
and checkpoints whose generation config adds logits processors, by transformers' `generate` on
the same cache. `warmup()` pays the compile at start-up.
Compiled code runs on one dedicated thread, because CUDA-graph state is per thread: requests
arriving on server threads would otherwise record their own graphs.

The answer-end stop (`generation.AnswerEnd`) decodes text on the CPU, which forces a GPU sync;
here it is checked every `answer_check_every` tokens instead of every token. A row may then
write a few tokens past the end of its answer; they are cut off exactly as before, so no parsed
field changes.

Modes: "on" (static cache + compile), "static" (static cache, no compile: the CPU fallback, and
what tests compare with plain decoding), "off" (plain `generate`), "auto" ("on" on CUDA when the
weight format compiles, else "off").
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..errors import FfaaError, one_line
from ..lazy import require
from ..options import COMPILE_CHOICES  # the --compile choices live with the CLI's option lists
from ..types import DecodingSettings
from .base import Generation, GenerationRequest, round_up
from .generation import answer_end_stop

# Imported only by the backend (`hf_llava.py`), once it loads a model: torch and transformers at
# the top, with the "install ffaa[torch]" message if missing.
torch = require("torch", "torch", "compiled decoding")
transformers = require("transformers", "torch", "compiled decoding")

LOOP_CHOICES = ("own", "generate")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FastSettings:
    """Shapes fixed at start-up so that compiled decoding never recompiles.

    rows: prompts per generate call (3 = one face; use 12 for batch jobs on a large GPU).
    prompt_bucket: prompts are left-padded to a multiple of this many tokens.
    max_new_tokens: answer length the cache is sized for (FFAA writes at most 512).
    answer_check_every: tokens between two answer-end checks (each check syncs with the GPU).
    loop: "own" decodes greedy requests with ffaa's loop (`steploop.GreedyLoop`), "generate" with
        transformers' `generate`; sampled requests always use `generate`.
    """

    rows: int = 3
    prompt_bucket: int = 64
    max_new_tokens: int = 512
    answer_check_every: int = 8
    loop: str = "own"

    def __post_init__(self) -> None:
        for name in ("rows", "prompt_bucket", "max_new_tokens", "answer_check_every"):
            if getattr(self, name) < 1:
                raise FfaaError(f"FastSettings.{name} must be at least 1, not {getattr(self, name)}")
        if self.loop not in LOOP_CHOICES:
            raise FfaaError(f"FastSettings.loop must be one of {', '.join(LOOP_CHOICES)}, not {self.loop!r}")


def bucket_up(n: int, bucket: int) -> int:
    """`n` rounded up to a multiple of `bucket`."""
    return round_up(n, bucket)


def resolve_mode(mode: str, device: str, weights_compile: bool) -> str:
    """The decoding mode to use: "on", "static" or "off" (see the module docstring).

    "on" falls back to "static" with a warning when torch.compile cannot run here; it is an
    error for weights that do not compile (bitsandbytes), where the static cache alone is slower
    than plain decoding.
    """
    if mode not in COMPILE_CHOICES:
        raise FfaaError(f"unknown compile mode {mode!r}; choose one of {', '.join(COMPILE_CHOICES)}")
    if mode == "auto":
        return "on" if device.startswith("cuda") and weights_compile and compile_usable(device) else "off"
    if mode == "on" and not weights_compile:
        raise FfaaError(
            "--compile on needs weights that torch.compile can fuse: --quant none, int4-ao, int4-hqq "
            "or int8-ao (bitsandbytes layers do not compile)"
        )
    if mode == "on" and not compile_usable(device):
        log.warning("ffaa: torch.compile is not usable here; decoding with a static cache, uncompiled")
        return "static"
    return mode


def compile_usable(device: str) -> bool:
    """torch.compile works on this Python/platform (and Triton is present for CUDA)."""
    import importlib.util

    try:
        if not torch._dynamo.is_dynamo_supported():
            return False
    except Exception:  # noqa: BLE001 - older or stripped builds: treat as unsupported rather than crash
        return False
    return not device.startswith("cuda") or importlib.util.find_spec("triton") is not None


class _RowStop:
    """Stopping criterion for padded groups: filler rows stop at once; the wrapped answer-end
    check (if any) runs every `every` steps, so the GPU is synced once per `every` tokens."""

    def __init__(self, inner: Callable | None, every: int, real_rows: int):
        self.inner = inner
        self.every = every
        self.real_rows = real_rows
        self.calls = 0
        self._base = None

    def __call__(self, input_ids, scores, **kwargs):
        if self._base is None:
            self._base = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            self._base[self.real_rows :] = True
        self.calls += 1
        if self.inner is not None and self.calls % self.every == 0:
            return self._base | self.inner(input_ids, scores)
        return self._base


class FastDecoder:
    """Static-cache decoding with fixed shapes for one `HFLlavaBackend`.

    Created by `HFLlavaBackend.load` when the compile mode is "on" or "static"; the backend's
    `generate` then routes through `generate` here, and its `warmup` through `warmup`.
    """

    def __init__(self, model: Any, tokenizer: Any, mode: str, settings: FastSettings = FastSettings()):
        if mode not in ("on", "static"):
            raise FfaaError(f"FastDecoder needs mode 'on' or 'static', not {mode!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.mode = mode
        self.settings = settings
        self.cache_len: int | None = None
        self.warm = False
        self._cache = None
        self._compile_config = None
        self._cache_name: str | None = None
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: Any = None

    @property
    def compiled(self) -> bool:
        return self.mode == "on"

    # -- shapes -------------------------------------------------------------------------------

    def _pad_inputs(self, inputs: Any, real: int) -> dict[str, Any]:
        """Left-pad the sequence to the bucket and fill the batch up to `rows` rows."""
        ids = inputs["input_ids"]
        rows, length = ids.shape
        target = bucket_up(length, self.settings.prompt_bucket)
        extra = self.settings.rows - rows
        out = {}
        for key, value in inputs.items():
            if not hasattr(value, "shape"):
                out[key] = value
                continue
            if value.dim() == 2 and value.shape == (rows, length) and target > length:
                fill = self.tokenizer.pad_token_id if key == "input_ids" else 0
                pad = torch.full((rows, target - length), fill, dtype=value.dtype, device=value.device)
                value = torch.cat([pad, value], dim=1)
            if extra > 0 and value.shape[0] == rows:
                value = torch.cat([value, value[-1:].expand(extra, *value.shape[1:])], dim=0)
            out[key] = value
        if out["input_ids"].shape[0] != self.settings.rows:
            raise FfaaError(f"internal: a group of {real} rows does not fit {self.settings.rows} rows")
        return out

    def _ensure_cache(self, prompt_len: int, max_new_tokens: int) -> Any:
        """The shared StaticCache, (re)allocated only when this prompt and answer do not fit."""
        reserve = max(max_new_tokens, self.settings.max_new_tokens)
        needed = prompt_len + reserve
        if self._cache is not None and needed <= self.cache_len:
            self._cache.reset()
            return self._cache
        if self._cache is not None:
            log.warning("ffaa: a %d-token prompt with %d new tokens does not fit the %d-position cache; "
                        "growing it (one recompile)", prompt_len, max_new_tokens, self.cache_len)
        # One spare bucket, so a slightly longer custom question still fits.
        self.cache_len = needed + self.settings.prompt_bucket
        self._cache = None  # free the old one before allocating
        self._cache = transformers.StaticCache(
            config=self.model.config.get_text_config(decoder=True), max_cache_len=self.cache_len
        )
        return self._cache

    def _cache_kwarg(self) -> str:
        """The name under which this transformers' LLaVA forward takes the cache."""
        if self._cache_name is None:
            from .steploop import cache_kwarg

            self._cache_name = cache_kwarg(self.model.forward)
        return self._cache_name

    def _compile_mode(self) -> str | None:
        """torch.compile's mode, or None when not compiling. FFAA_COMPILE_MODE overrides it (e.g.
        "default" drops CUDA graphs) to diagnose a weight format whose kernels do not capture."""
        if not self.compiled:
            return None
        cuda = self.model.device.type == "cuda"
        return os.environ.get("FFAA_COMPILE_MODE") or ("reduce-overhead" if cuda else "default")

    def _mode_kwargs(self) -> dict[str, Any]:
        """generate() arguments that turn compilation on or off."""
        if not self.compiled:
            return {"disable_compile": True}
        if self._compile_config is None:  # one object: transformers recompiles when it changes
            config = transformers.CompileConfig(fullgraph=False, dynamic=False, mode=self._compile_mode())
            config._compile_all_devices = True  # allow the CPU too when asked for explicitly
            self._compile_config = config
        return {"compile_config": self._compile_config}

    def _greedy_loop(self, backend: Any, settings: DecodingSettings) -> Any:
        """The own loop for these settings, or None when `generate` must decode them."""
        if settings.do_sample or self.settings.loop != "own":
            return None
        if self._loop is None:
            from .steploop import GreedyLoop, loop_blocker

            blocker = loop_blocker(self.model)
            if blocker is not None:
                log.warning("ffaa: decoding with transformers' generate: %s", blocker)
                self.settings = dataclasses.replace(self.settings, loop="generate")
                return None
            self._loop = GreedyLoop(self.model, self.tokenizer, backend._non_text_ids(), self._compile_mode())
        return self._loop

    # -- generation ---------------------------------------------------------------------------

    def generate(self, backend: Any, requests: Sequence[GenerationRequest],
                 settings: DecodingSettings) -> list[Generation]:
        """Answer `requests` in groups of `rows`, on the decoding thread when compiled."""
        out: list[Generation] = []
        rows = self.settings.rows
        for start in range(0, len(requests), rows):
            group = list(requests[start : start + rows])
            out += self._run(self._generate_group, backend, group, settings)
        return out

    def _run(self, fn: Callable, *args: Any) -> Any:
        """Run `fn` on the single decoding thread (compiled) or inline (static)."""
        if not self.compiled:
            return fn(*args)
        if self._worker is None:
            self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ffaa-decode")
        return self._worker.submit(fn, *args).result()

    def _generate_group(self, backend: Any, group: list[GenerationRequest],
                        settings: DecodingSettings) -> list[Generation]:
        loop = self._greedy_loop(backend, settings)
        with torch.inference_mode():
            torch.manual_seed(settings.seed)
            inputs = self._pad_inputs(backend._inputs(group), len(group))
            prompt_len = inputs["input_ids"].shape[1]
            cache = self._ensure_cache(prompt_len, settings.max_new_tokens)
            if loop is not None:  # ffaa's loop hands the stop only the new tokens
                stop = answer_end_stop(self.tokenizer, 0, group, settings.stop_at_answer_end)
                new = loop.run(inputs, cache, self.cache_len, len(group), settings.max_new_tokens,
                               settings.min_new_tokens, stop, self.settings.answer_check_every)
            else:
                stop = answer_end_stop(self.tokenizer, prompt_len, group, settings.stop_at_answer_end)
                new = self._generate_padded(backend, inputs, cache, len(group), settings, stop)[:, prompt_len:]
        return [backend._finish(r, new[i], settings, stop) for i, r in enumerate(group)]

    def _generate_padded(self, backend: Any, inputs: Any, cache: Any, real: int,
                         settings: DecodingSettings, stop: Any) -> Any:
        """transformers' `generate` over a padded group (prompt and new tokens)."""
        kwargs = backend._generate_kwargs(settings)
        kwargs[self._cache_kwarg()] = cache
        kwargs.update(self._mode_kwargs())
        if stop is not None or real < self.settings.rows:
            kwargs["stopping_criteria"] = [_RowStop(stop, self.settings.answer_check_every, real)]
        return self.model.generate(**inputs, **kwargs)

    # -- start-up -----------------------------------------------------------------------------

    def warmup(self, backend: Any, log: Callable[[str], None] | None = None, sampling: bool = False) -> float:
        """Compile (or, static mode, just allocate) for the longest standard prompt; seconds taken.

        Runs three short generations: dynamo compiles on the first, CUDA graphs are recorded on
        the next, and the last one checks that no further compile happens. Greedy requests use
        ffaa's loop and sampled ones `generate`, two compiled paths: `sampling` warms the second
        too, for processes that will sample (`--sample`). Progress goes to `log` when given, else
        to this module's logger (failures as warnings).
        """
        say, warn = (log, log) if log else (_info, _warning)
        what = "compiling the decoder" if self.compiled else "allocating the static cache"
        say(f"ffaa: {what} for groups of {self.settings.rows} prompts (once per process"
            + (", about a minute on a GPU)..." if self.compiled else ")..."))
        start = time.perf_counter()
        try:
            self._warm_calls(backend)
        except Exception as exc:  # compiler or driver error in ffaa's loop: transformers' may still work
            if self.settings.loop != "own":
                raise
            if os.environ.get("FFAA_DEBUG"):
                _debug_traceback(exc)
            instead = "compiling transformers' generate" if self.compiled else "using transformers' generate"
            warn(f"ffaa: ffaa's decoding loop failed at warm-up ({one_line(exc)}); {instead} instead...")
            if self.compiled:
                self._run(_forget_compiled, self.model)
            self._loop = None
            self.settings = dataclasses.replace(self.settings, loop="generate")
            self._warm_calls(backend)
        if sampling and self.settings.loop == "own":
            try:
                self._warm_calls(backend, sampled=True)
            except Exception as exc:  # noqa: BLE001 - greedy decoding is ready; sampling then compiles on first use
                warn(f"ffaa: warming the sampling path failed ({one_line(exc)}); it compiles on first use")
        self.warm = True
        seconds = time.perf_counter() - start
        say(f"ffaa: decoder ready in {seconds:.1f} s (cache of {self.cache_len} positions)")
        return seconds

    def _warm_calls(self, backend: Any, sampled: bool = False) -> None:
        """Short generations of the longest standard prompt: compile, record, check."""
        requests = warmup_requests(backend, self.settings.rows)
        settings = DecodingSettings(max_new_tokens=4, min_new_tokens=4, stop_at_answer_end=False, do_sample=sampled)
        for _ in range(3 if self.compiled else 1):
            self.generate(backend, requests, settings)

    def close(self) -> None:
        """Drop the compiled code, its CUDA graphs and the cache, and stop the decoding thread,
        so the model's memory can be returned (benchmarks and tests that load several models).
        CUDA-graph state lives in the decoding thread, so it is cleared from there."""
        if self._worker is not None:
            self._worker.submit(_forget_compiled, self.model).result()
            self._worker.shutdown(wait=True)
            self._worker = None
        elif self.compiled:
            _forget_compiled(self.model)
        self._cache = None
        self._compile_config = None
        self._loop = None


def give_up(decoder: FastDecoder, exc: BaseException, log: Callable[[str], None] | None = None) -> str:
    """Release a decoder whose warm-up failed and say so; returns the reason as one line."""
    reason = one_line(exc)
    if os.environ.get("FFAA_DEBUG"):
        _debug_traceback(exc)
    (log or _warning)(f"ffaa: compiled decoding failed at warm-up ({reason[:300]}); using plain generate")
    try:
        decoder.close()
    except Exception:  # noqa: BLE001 - the failure above matters, not a second one while cleaning up
        pass
    return reason


def _info(message: str) -> None:
    """The default `log` of a warm-up: its progress (a minute on a GPU) as info."""
    log.info(message, extra={"progress": True})


def _warning(message: str) -> None:
    """The default `log` for failures that decoding survives (it falls back), as warnings."""
    log.warning(message)


def _debug_traceback(exc: BaseException) -> None:
    """With FFAA_DEBUG, the full traceback of a failure otherwise reported in one line."""
    log.warning("traceback (FFAA_DEBUG)", exc_info=exc)


def _forget_compiled(model: Any) -> None:
    """Reset dynamo (compiled frames, CUDA-graph trees of this thread) and the model's compiled call."""
    torch._dynamo.reset()
    for attr in ("_compiled_call", "_last_compile_config"):
        if hasattr(model, attr):
            delattr(model, attr)


def warmup_requests(backend: Any, rows: int) -> list[GenerationRequest]:
    """`rows` requests with the longest of the prompt set's prompts and a grey face-sized image."""
    from ..prompts import load_prompt_set
    from ..types import Verdict

    ps = load_prompt_set()
    texts = [*ps.questions, ps.hypothesis(Verdict.REAL), ps.hypothesis(Verdict.FAKE)]
    prompts = [ps.chat([(q, None)]) for q in texts]
    longest = max(prompts, key=lambda p: len(backend.tokenizer(p).input_ids))
    image = Image.new("RGB", (336, 336), (128, 128, 128))
    return [GenerationRequest(image, longest)] * rows
