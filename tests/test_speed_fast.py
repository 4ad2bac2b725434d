"""Static-cache / compiled decoding (`ffaa.backends.fast`) on the tiny model, CPU only.

What must hold: the static path writes exactly the tokens plain `generate` writes (greedy and
seeded sampling), whatever the group size or prompt length; one cache serves every call; the
answer-end stop never changes a parsed field; and, compiled, nothing recompiles after warm-up.
"""

from __future__ import annotations

import functools

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from PIL import Image

from ffaa.backends.base import GenerationRequest
from ffaa.backends.fast import FastSettings, bucket_up, resolve_mode
from ffaa.errors import FfaaError
from ffaa.parsing import parse_answer
from ffaa.prompts import load_answer_format, load_prompt_set
from ffaa.types import DecodingSettings

ANSWER = (
    "Image description: A young woman faces the camera in soft, even light.\n"
    "Forgery reasoning: The skin around the eyes is too smooth and the hairline blends badly.\n"
    "Analysis result: Fake.\n"
    "Probability: 0.87.\n"
    "Forgery type: Facial attribute manipulation.\n"
    "I hope this helps with the analysis of the image and of its many details."
)


@pytest.fixture(scope="module")
def tiny_dir():
    from ffaa.backends.tiny import tiny_model_dir

    return str(tiny_model_dir())


def load(tiny_dir, compile_mode, rows=3):
    from ffaa.backends.hf_llava import HFLlavaBackend, LoadOptions

    return HFLlavaBackend.load(tiny_dir, LoadOptions(device="cpu", compile=compile_mode, compile_rows=rows))


@pytest.fixture(scope="module")
def plain(tiny_dir):
    return load(tiny_dir, "off")


@pytest.fixture(scope="module")
def static(tiny_dir):
    backend = load(tiny_dir, "static")
    yield backend
    backend.fast.close()


def requests(n: int, extra_words: int = 0, seed: int = 0):
    """`n` prompts (questions of the prompt set, optionally lengthened) on a noise image."""
    import numpy as np

    ps = load_prompt_set()
    image = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (336, 336, 3), dtype=np.uint8))
    questions = [ps.questions[i % len(ps.questions)] + " please" * (extra_words + i) for i in range(n)]
    end = load_answer_format().end_labels  # as the pipeline asks: stop after the closing line
    return [GenerationRequest(image, ps.chat([(q, None)]), end) for q in questions]


GREEDY = DecodingSettings(max_new_tokens=12, min_new_tokens=12, stop_at_answer_end=False)


def test_bucket_and_settings():
    assert [bucket_up(n, 64) for n in (1, 64, 65, 640)] == [64, 64, 128, 640]
    with pytest.raises(FfaaError, match="rows must be at least 1"):
        FastSettings(rows=0)


def test_mode_resolution():
    assert resolve_mode("auto", "cpu", True) == "off"  # compile only pays off on CUDA
    assert resolve_mode("static", "cpu", False) == "static"
    assert resolve_mode("off", "cuda", True) == "off"
    with pytest.raises(FfaaError, match="bitsandbytes layers do not compile"):
        resolve_mode("on", "cpu", False)
    with pytest.raises(FfaaError, match="unknown compile mode"):
        resolve_mode("fast", "cpu", True)


def test_backend_wiring(plain, static):
    assert plain.fast is None and plain.warmup() == 0.0
    assert static.fast is not None and static.fast.mode == "static" and not static.fast.compiled


@pytest.mark.parametrize("n,extra", [(3, 0), (2, 3), (5, 1), (3, 40)])
def test_static_cache_writes_the_plain_greedy_tokens(plain, static, n, extra):
    """Full groups, a short group (filler rows), several groups, and a longer prompt."""
    reqs = requests(n, extra)
    want = plain.generate(reqs, GREEDY)
    got = static.generate(reqs, GREEDY)
    assert [g.text for g in got] == [w.text for w in want]
    assert [g.new_tokens for g in got] == [w.new_tokens for w in want] == [12] * n


def test_seeded_sampling_matches_plain(plain, static):
    settings = DecodingSettings(max_new_tokens=10, do_sample=True, temperature=1.3, top_p=0.95, seed=7,
                                stop_at_answer_end=False)
    reqs = requests(3)
    assert [g.text for g in static.generate(reqs, settings)] == [g.text for g in plain.generate(reqs, settings)]


def test_one_cache_serves_every_call(static):
    static.warmup(log=lambda msg: None)
    cache, length = static.fast._cache, static.fast.cache_len
    assert length % static.fast.settings.prompt_bucket == 0
    for n, extra in ((3, 0), (1, 5), (4, 20)):
        static.generate(requests(n, extra), GREEDY)
        assert static.fast._cache is cache and static.fast.cache_len == length


def test_prompts_are_padded_to_the_bucket(static):
    inputs = static.fast._pad_inputs(static._inputs(requests(2)), 2)
    rows, length = inputs["input_ids"].shape
    assert rows == 3 and length % 64 == 0
    assert torch.equal(inputs["input_ids"][2], inputs["input_ids"][1])  # the filler copies the last row
    pad = static.tokenizer.pad_token_id
    first_real = int(inputs["attention_mask"][0].argmax())
    assert first_real > 0 and bool((inputs["input_ids"][0, :first_real] == pad).all())


class _Force:
    """Forward hook on the output head that makes the model write `ids`, then EOS, whichever
    loop drives it (`generate` or ffaa's own); `reset` before each call."""

    def __init__(self, ids, eos):
        self.ids, self.eos, self.step = ids, eos, 0

    def reset(self):
        self.step = 0

    def __call__(self, module, args, logits):
        token = self.ids[self.step] if self.step < len(self.ids) else self.eos
        self.step += 1
        forced = torch.full_like(logits, -1e4)
        forced[..., token] = 0.0
        return forced


def _forcing(backend, monkeypatch):
    ids = backend.tokenizer(ANSWER, add_special_tokens=False).input_ids
    forcer = _Force(ids, backend.tokenizer.eos_token_id)
    handle = backend.model.get_output_embeddings().register_forward_hook(forcer)
    original = backend.generate

    @functools.wraps(original)
    def generate(*args, **kwargs):
        forcer.reset()
        return original(*args, **kwargs)

    monkeypatch.setattr(backend, "generate", generate)
    return len(ids), handle


def test_answer_end_stop_never_changes_parsed_fields(plain, static, monkeypatch):
    total, plain_hook = _forcing(plain, monkeypatch)
    _, static_hook = _forcing(static, monkeypatch)
    request_list = requests(3)
    no_stop = DecodingSettings(max_new_tokens=total + 8, stop_at_answer_end=False)
    stop = DecodingSettings(max_new_tokens=total + 8, stop_at_answer_end=True)
    try:
        full = plain.generate(request_list, no_stop)
        cut_plain = plain.generate(request_list, stop)
        cut_static = static.generate(request_list, stop)
    finally:
        plain_hook.remove()
        static_hook.remove()
    assert all(g.stopped_by == "eos" and "I hope" in g.text for g in full)
    for f, a, b in zip(full, cut_plain, cut_static):
        want = parse_answer(f.text).answer
        assert want is not None and want.forgery_type_text.startswith("Facial attribute")
        assert parse_answer(a.text).answer == want == parse_answer(b.text).answer
        assert a.stopped_by == b.stopped_by == "answer_end"
        assert "I hope" not in a.text and "I hope" not in b.text
        # The static path checks every few tokens: it may write a little more, never less.
        assert a.new_tokens <= b.new_tokens <= a.new_tokens + static.fast.settings.answer_check_every
        assert b.new_tokens < f.new_tokens


@pytest.mark.slow
def test_compiled_on_cpu_writes_plain_tokens_without_recompiling(tiny_dir, plain):
    """torch.compile (inductor, CPU) once at warm-up; later calls of other prompt lengths and
    group sizes reuse the same graph."""
    from torch._dynamo.utils import counters

    compiled = load(tiny_dir, "on")
    try:
        assert compiled.fast.compiled
        messages = []
        assert compiled.warmup(log=messages.append) > 0
        assert "compiling the decoder" in messages[0] and "ready" in messages[-1]
        graphs = counters["stats"]["unique_graphs"]
        for n, extra in ((3, 0), (2, 7), (4, 30)):
            reqs = requests(n, extra)
            assert [g.text for g in compiled.generate(reqs, GREEDY)] == [g.text for g in plain.generate(reqs, GREEDY)]
        assert counters["stats"]["unique_graphs"] == graphs
    finally:
        compiled.fast.close()


def test_failed_warmup_falls_back_to_plain_decoding(tiny_dir, plain, monkeypatch):
    backend = load(tiny_dir, "static")

    def broken(*args, **kwargs):
        raise RuntimeError("inductor exploded\nlong traceback")

    monkeypatch.setattr(backend.fast, "_generate_group", broken)
    messages = []
    assert backend.warmup(log=messages.append) == 0.0
    assert backend.fast is None and backend.fast_error == "RuntimeError: inductor exploded"
    assert "using plain generate" in messages[-1]
    reqs = requests(2)
    assert [g.text for g in backend.generate(reqs, GREEDY)] == [g.text for g in plain.generate(reqs, GREEDY)]


@pytest.fixture(scope="module")
def via_generate(tiny_dir):
    """The static decoder with transformers' `generate` as its loop, to compare ffaa's loop with."""
    import dataclasses

    backend = load(tiny_dir, "static")
    backend.fast.settings = dataclasses.replace(backend.fast.settings, loop="generate")
    yield backend
    backend.fast.close()


@pytest.mark.parametrize("max_new,min_new", [(12, 0), (20, 5), (7, 7)])
def test_own_loop_equals_generate_on_the_same_cache(static, via_generate, max_new, min_new):
    settings = DecodingSettings(max_new_tokens=max_new, min_new_tokens=min_new, stop_at_answer_end=True)
    reqs = requests(4, 2)
    assert static.fast._greedy_loop(static, settings) is not None
    assert via_generate.fast._greedy_loop(via_generate, settings) is None
    assert static.generate(reqs, settings) == via_generate.generate(reqs, settings)


def test_own_loop_stops_like_generate(static, via_generate, monkeypatch):
    """Forced answers with an early end-of-sequence and an answer end: same texts, same token
    counts, same reasons, because both check the answer end after the same tokens."""
    total, own_hook = _forcing(static, monkeypatch)
    _, gen_hook = _forcing(via_generate, monkeypatch)
    try:
        for settings in (DecodingSettings(max_new_tokens=total + 8, stop_at_answer_end=True),
                         DecodingSettings(max_new_tokens=total + 8, stop_at_answer_end=False),
                         DecodingSettings(max_new_tokens=total - 3, stop_at_answer_end=False)):
            own, gen = static.generate(requests(2), settings), via_generate.generate(requests(2), settings)
            assert own == gen
            assert {g.stopped_by for g in own} == {
                "answer_end" if settings.stop_at_answer_end else
                "eos" if settings.max_new_tokens > total else "max_new_tokens"}
    finally:
        own_hook.remove()
        gen_hook.remove()


def test_a_generation_config_with_extra_processors_keeps_generate(tiny_dir, plain, caplog):
    backend = load(tiny_dir, "static")
    try:
        backend.model.generation_config.repetition_penalty = 1.3
        plain.model.generation_config.repetition_penalty = 1.3
        reqs = requests(3)
        got = backend.generate(reqs, GREEDY)
        assert backend.fast.settings.loop == "generate"
        assert "repetition_penalty=1.3" in caplog.text
        assert [g.text for g in got] == [g.text for g in plain.generate(reqs, GREEDY)]
    finally:
        plain.model.generation_config.repetition_penalty = None
        backend.fast.close()


def test_unknown_loop_is_refused():
    with pytest.raises(FfaaError, match="loop must be one of own, generate"):
        FastSettings(loop="fast")


def test_own_loop_on_llava_next_writes_the_plain_tokens():
    """LLaVA-NeXT (AnyRes tiles, `image_sizes`) through the same static cache and loop."""
    from ffaa.backends.tiny import tiny_model_dir

    folder = str(tiny_model_dir(kind="llava_next"))
    plain_next, static_next = load(folder, "off"), load(folder, "static")
    try:
        reqs = requests(2, 3)
        assert static_next.fast._greedy_loop(static_next, GREEDY) is not None
        assert ([g.text for g in static_next.generate(reqs, GREEDY)]
                == [g.text for g in plain_next.generate(reqs, GREEDY)])
    finally:
        static_next.fast.close()


def test_own_loop_failing_at_warmup_falls_back_to_compiled_generate(tiny_dir, plain, monkeypatch):
    from ffaa.backends.steploop import GreedyLoop

    def broken(*args, **kwargs):
        raise RuntimeError("graph capture failed\ndetails")

    monkeypatch.setattr(GreedyLoop, "run", broken)
    backend = load(tiny_dir, "static")
    try:
        messages = []
        backend.warmup(log=messages.append)
        assert backend.fast is not None and backend.fast.settings.loop == "generate"
        assert any("ffaa's decoding loop failed at warm-up (RuntimeError: graph capture failed)" in m
                   for m in messages)
        reqs = requests(2)
        assert [g.text for g in backend.generate(reqs, GREEDY)] == [g.text for g in plain.generate(reqs, GREEDY)]
    finally:
        backend.fast.close()


def test_the_compiled_step_is_one_graph(static, monkeypatch):
    """dynamo traces the whole step (model, head, token choice) as one graph: a break would cost a
    CUDA graph per piece and host work between them."""
    static.generate(requests(3), GREEDY)
    loop = static.fast._loop
    seen = []
    monkeypatch.setattr(loop, "_step", lambda *args: seen.append(args) or loop._step_eager(*args))
    static.generate(requests(3), GREEDY)
    with torch.inference_mode():
        explained = torch._dynamo.explain(loop._step_eager)(*seen[0])
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons[:3]


def test_warmup_for_sampling_also_prepares_the_generate_path(tiny_dir, monkeypatch):
    """Sampled requests go through `generate`, a second compiled path: a process that will sample
    warms it at start-up too, instead of compiling it inside its first request."""
    backend = load(tiny_dir, "static")
    try:
        calls = []
        original = backend.fast._generate_padded
        monkeypatch.setattr(backend.fast, "_generate_padded", lambda *a: calls.append(a[-2].do_sample) or original(*a))
        backend.warmup(log=lambda msg: None)
        assert calls == []  # greedy only: ffaa's loop
        backend.warmup(log=lambda msg: None, sampling=True)
        assert calls == [True]
    finally:
        backend.fast.close()


def test_a_failed_sampling_warmup_keeps_the_greedy_loop(tiny_dir, monkeypatch):
    backend = load(tiny_dir, "static")
    try:
        real = backend.fast._warm_calls

        def warm(backend_, sampled=False):
            if sampled:
                raise RuntimeError("sampling graph failed")
            return real(backend_, sampled)

        monkeypatch.setattr(backend.fast, "_warm_calls", warm)
        messages = []
        backend.warmup(log=messages.append, sampling=True)
        assert backend.fast is not None and backend.fast.warm and backend.fast.settings.loop == "own"
        assert "warming the sampling path failed (RuntimeError: sampling graph failed)" in messages[-2]
    finally:
        backend.fast.close()
