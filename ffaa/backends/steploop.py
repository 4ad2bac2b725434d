"""Greedy decoding with ffaa's own loop: one compiled step per token, the host out of the way.

For every token, transformers' `generate` builds the attention mask, runs the logits processors
and the stopping criteria, and tests whether all rows have finished, which waits for the GPU.
Once the model's step is a CUDA graph the GPU writes a token in a few milliseconds, and this host
work, which cannot overlap with it, costs about as much again. This loop does the same greedy
decoding itself:

* prefill: the full LLaVA forward (image and prompt) fills the static cache, eagerly, because
  its length varies from group to group;
* step: language model, output head, token suppression, the minimum-length rule, argmax and the
  finished-row bookkeeping for one token, in one function that is compiled once; its inputs are
  device tensors updated on the device, so nothing is copied from the host per token;
* the host reads the tokens only every `check_every` tokens (answer-end and all-finished
  checks), so it queues steps ahead of the GPU instead of waiting for each one.

Greedy only: sampling goes through `generate`. The tokens equal `generate`'s under the same
suppression, minimum length and stopping rule; the tests compare the two on CPU.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..lazy import require

# Imported only by compiled decoding (`fast.py`), once a model is loaded.
torch = require("torch", "torch", "compiled decoding")

# GenerationConfig fields that would add a logits processor to greedy `generate`, with the values
# that add none. A checkpoint that sets one of them is decoded by `generate`, never approximated.
_NEUTRAL_GENERATION = {
    "repetition_penalty": (None, 1.0), "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,), "sequence_bias": (None,),
    "forced_bos_token_id": (None,), "forced_eos_token_id": (None,), "begin_suppress_tokens": (None,),
    "exponential_decay_length_penalty": (None,), "min_length": (None, 0), "guidance_scale": (None, 1.0),
    "watermarking_config": (None,), "num_beams": (None, 1), "num_return_sequences": (None, 1),
    "remove_invalid_values": (None, False), "max_time": (None,), "stop_strings": (None,),
}


def loop_blocker(model: Any) -> str | None:
    """Why the model's generation config needs `generate` (a processor this loop lacks), or None."""
    config = getattr(model, "generation_config", None)
    for name, neutral in _NEUTRAL_GENERATION.items():
        value = getattr(config, name, None)
        if value not in neutral:
            return f"its generation config sets {name}={value!r}"
    return None


@dataclass
class _State:
    """What the step reads and returns, all on the model's device."""

    token: Any  # (rows,) the last token written
    position: Any  # (rows,) that token's position id
    count: Any  # () tokens written so far
    finished: Any  # (rows,) rows that write padding from now on


class GreedyLoop:
    """Greedy decoding of a left-padded batch into a `StaticCache`, compiled or eager."""

    def __init__(self, model: Any, tokenizer: Any, suppressed: Sequence[int], compile_mode: str | None):
        self.model = model
        self.decoder = model.get_decoder()
        self.head = model.get_output_embeddings()
        self.eos, self.pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        self.cache_name = cache_kwarg(model.forward)
        self.decoder_cache_name = cache_kwarg(self.decoder.forward)
        vocab = self.head.weight.shape[0]  # the rows the suppressed ids index (as `_non_text_ids`)
        self.bias = torch.zeros(vocab, dtype=torch.float32, device=model.device)
        self.bias[list(suppressed)] = float("-inf")
        self.compiled = compile_mode is not None
        self._step: Callable = self._step_eager
        if self.compiled:
            self._step = torch.compile(self._step_eager, mode=compile_mode, dynamic=False, fullgraph=False)

    def run(self, inputs: dict[str, Any], cache: Any, cache_len: int, real_rows: int, max_new: int,
            min_new: int, stop: Callable | None, check_every: int) -> Any:
        """New token ids, (rows, n) with n <= max_new; rows from `real_rows` on are filler.

        `stop(ids, None)` (the answer-end check, ids = new tokens so far) is asked every
        `check_every` tokens, as `generate`'s stopping criteria would be; rows it flags then write
        padding, like rows that wrote end-of-sequence.
        """
        device = inputs["input_ids"].device
        rows = inputs["input_ids"].shape[0]
        mask = _full_mask(inputs["attention_mask"], cache_len)
        min_new_t = torch.tensor(min_new, device=device)
        state = self._prefill(inputs, mask, cache, real_rows, min_new_t)
        out = torch.full((rows, max_new), self.pad, dtype=torch.long, device=device)
        out[:, 0] = state.token
        n = 1
        while n < max_new:
            if n % check_every == 0 and self._all_done(out[:, :n], state, real_rows, stop):
                break
            if self.compiled and device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()
            step = self._step(state.token, state.position, state.count, state.finished, mask, min_new_t, cache)
            # Outputs of a CUDA graph are overwritten by its next replay: keep copies.
            state = _State(*(t.clone() for t in step))
            out[:, n] = state.token
            n += 1
        return out[:, :n]

    def _prefill(self, inputs: dict[str, Any], mask: Any, cache: Any, real_rows: int, min_new: Any) -> _State:
        """Run image and prompt through the full model; the state holds the first new token."""
        prompt_mask = inputs["attention_mask"]
        # As `generate` derives them: left padding shifts each row's positions.
        position = (prompt_mask.long().cumsum(-1) - 1).masked_fill(prompt_mask == 0, 0)
        kwargs = {k: v for k, v in inputs.items() if k != "attention_mask"}
        kwargs[self.cache_name] = cache  # the cache tracks its own write position
        logits = self.model(**kwargs, attention_mask=mask, position_ids=position, use_cache=True,
                            logits_to_keep=1).logits[:, -1].float()
        count = torch.zeros((), dtype=torch.long, device=position.device)
        finished = torch.zeros(position.shape[0], dtype=torch.bool, device=position.device)
        finished[real_rows:] = True
        token, finished = self._pick(logits, count, finished, min_new)
        return _State(token, position[:, -1] + 1, count + 1, finished)

    def _step_eager(self, token, position, count, finished, mask, min_new, cache):
        """One token for every row: the function that is compiled."""
        kwargs = {self.decoder_cache_name: cache}
        hidden = self.decoder(input_ids=token[:, None], position_ids=position[:, None], attention_mask=mask,
                              use_cache=True, **kwargs).last_hidden_state
        logits = self.head(hidden[:, -1]).float()
        token, finished = self._pick(logits, count, finished, min_new)
        return token, position + 1, count + 1, finished

    def _pick(self, logits, count, finished, min_new):
        """`generate`'s greedy choice: suppressed ids and early end-of-sequence ruled out, argmax,
        padding for finished rows; a row that writes end-of-sequence is finished."""
        logits = logits + self.bias
        logits[:, self.eos] = torch.where(count >= min_new, logits[:, self.eos], float("-inf"))
        token = torch.where(finished, self.pad, logits.argmax(-1))
        return token, finished | (token == self.eos)

    def _all_done(self, ids: Any, state: _State, real_rows: int, stop: Callable | None) -> bool:
        """Mark rows the answer-end check flags as finished; True when every real row is."""
        if stop is not None:
            state.finished = state.finished | stop(ids, None).to(state.finished.device)
        return bool(state.finished[:real_rows].all())


def _full_mask(prompt_mask: Any, cache_len: int) -> Any:
    """The prompt's padding mask widened to the whole cache. Positions past the prompt are
    marked visible: the causal rule already hides those not yet written, so one mask serves
    every step."""
    rows, length = prompt_mask.shape
    mask = torch.ones((rows, cache_len), dtype=prompt_mask.dtype, device=prompt_mask.device)
    mask[:, :length] = prompt_mask
    return mask


def cache_kwarg(forward: Callable) -> str:
    """The name under which a forward takes the cache ("cache" in newer transformers releases,
    "past_key_values" before)."""
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"
