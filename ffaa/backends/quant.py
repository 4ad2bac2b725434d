"""Weight formats for the LLaVA backend: what each `--quant` choice is, which ones compile, and
how the torchao ones are applied.

Two families:

* bitsandbytes (`4bit` = nf4 with double quantisation, `8bit` = LLM.int8): quantised while
  loading, through transformers' `BitsAndBytesConfig`. Small, but their layers do not compile,
  so decoding stays at plain `generate` speed.
* torchao weight-only (`int4-ao`, `int4-hqq`, `int8-ao`): the bf16/fp32 model is loaded on the
  CPU and each Linear of the language model is quantised on its way to the device with
  `torchao.quantization.quantize_`. These are tensor subclasses that `torch.compile` fuses, so
  they combine a small footprint with the compiled decoding path (`fast.py`). We call
  `quantize_` ourselves rather than going through transformers' `TorchAoConfig` because its
  loading hooks change between transformers releases while `quantize_` does not.

Everything except the vision tower, the projector and lm_head is quantised, as for
bitsandbytes. int4 uses group-wise asymmetric quantisation (group 128 where the widths allow):
on CUDA torchao's tile-packed layout with the `_weight_int4pack_mm` kernel (bf16 only, compute
capability 8.0+), on the CPU its opaque CPU layout with the same arithmetic. `int4-hqq` differs
only in how scales and zero points are chosen (HQQ's optimiser instead of min/max), which costs a
few seconds at load time and usually lowers the error.

Default (`--quant auto`), by device:

| device | default | why |
|---|---|---|
| CPU | `none` (fp32) | quantised CPU kernels are slower than fp32 here |
| CUDA with 24 GiB or more | `none` (bf16, compiled) | full quality; weights 15 GB |
| CUDA under 24 GiB, compute 8.0+, torchao installed | `int4-ao` (compiled) | about 5 GB, fast |
| other CUDA GPUs | `4bit` (bitsandbytes nf4) | about 5 GB, plain decoding speed |

torch is imported at the top: this module is imported only once a model is to be loaded (the
CLI takes its `--quant` choices from `ffaa.options`). bitsandbytes and torchao, of the optional
`gpu` extra, are imported where a format needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import FfaaError
from ..lazy import require

# Module paths kept in full precision (transformers 5 names; same list as for bitsandbytes).
KEEP_UNQUANTIZED = ("model.vision_tower", "model.multi_modal_projector", "lm_head")
# GPUs with at least this much memory run bf16 by default.
BF16_MIN_GIB = 24.0


@dataclass(frozen=True)
class QuantFormat:
    """One `--quant` choice: which library provides it and whether compiled decoding applies."""

    name: str
    library: str  # "bitsandbytes", "torchao" or "" (no quantisation)
    bits: int
    compiles: bool
    summary: str


FORMATS: dict[str, QuantFormat] = {
    f.name: f
    for f in (
        QuantFormat("none", "", 16, True, "no quantisation (bf16 on CUDA, fp32 on CPU)"),
        QuantFormat("4bit", "bitsandbytes", 4, False, "bitsandbytes nf4, double quant, bf16 compute"),
        QuantFormat("8bit", "bitsandbytes", 8, False, "bitsandbytes LLM.int8"),
        QuantFormat("int4-ao", "torchao", 4, True, "torchao int4 weight-only, group-wise min/max"),
        QuantFormat("int4-hqq", "torchao", 4, True, "torchao int4 weight-only, HQQ-chosen scales"),
        QuantFormat("int8-ao", "torchao", 8, True, "torchao int8 weight-only, per row"),
    )
}
from ..options import QUANT_CHOICES  # noqa: E402 (the --quant choices: "auto" + FORMATS, checked by a test)

torch = require("torch", "torch", "running the model")

BNB_FORMATS = tuple(n for n, f in FORMATS.items() if f.library == "bitsandbytes")
TORCHAO_FORMATS = tuple(n for n, f in FORMATS.items() if f.library == "torchao")


def quant_format(name: str) -> QuantFormat:
    """The format called `name`; a precise error for anything else (including "auto")."""
    try:
        return FORMATS[name]
    except KeyError:
        raise FfaaError(f"unknown quantisation {name!r}; choose one of {', '.join(QUANT_CHOICES)}") from None


def default_quant(device: str) -> str:
    """The `auto` choice for `device` (see the module docstring for the table)."""
    if not device.startswith("cuda"):
        return "none"
    index = torch.device(device).index or 0
    props = torch.cuda.get_device_properties(index)
    if props.total_memory / 2**30 >= BF16_MIN_GIB:
        return "none"
    if props.major >= 8 and _importable("torchao"):
        return "int4-ao"
    return "4bit"


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def check_available(quant: str, device: str) -> None:
    """Fail early, with the fix, when `quant` cannot run on `device`."""
    fmt = quant_format(quant)
    if fmt.library == "bitsandbytes":
        require("bitsandbytes", "gpu", f"--quant {quant}")
    elif fmt.library == "torchao":
        require("torchao", "gpu", f"--quant {quant}")
        if quant.startswith("int4") and device.startswith("cuda"):
            major, minor = torch.cuda.get_device_capability(torch.device(device))
            if major < 8:
                raise FfaaError(
                    f"--quant {quant} needs a GPU of compute capability 8.0 or newer (this one is "
                    f"{major}.{minor}); use --quant 4bit or int8-ao"
                )


def loads_on_cpu_first(quant: str) -> bool:
    """torchao formats are loaded unquantised on the CPU and quantised layer by layer on the
    way to the device, so the device never holds the full-precision weights."""
    return quant in TORCHAO_FORMATS


def should_quantize(module: Any, fqn: str) -> bool:
    """torchao filter: every Linear outside the vision tower, the projector and lm_head."""
    if not isinstance(module, torch.nn.Linear):
        return False
    return not any(fqn == keep or fqn.startswith(keep + ".") for keep in KEEP_UNQUANTIZED)


def group_size(model: Any, preferred: int = 128) -> int:
    """The largest int4 group (128, 64 or 32) that divides every quantised layer's input width.

    Mistral-7B's widths (4096, 14336) take 128; the tiny test model (64) takes 64.
    """
    widths = [m.in_features for fqn, m in model.named_modules() if should_quantize(m, fqn)]
    for size in (preferred, 64, 32):
        if size <= preferred and all(w % size == 0 for w in widths):
            return size
    raise FfaaError(f"no int4 group size (128/64/32) divides the layer widths {sorted(set(widths))}")


def torchao_config(quant: str, device: str, group: int) -> Any:
    """The torchao config object for `quant` on `device` (CUDA and CPU int4 use different layouts).

    `set_inductor_config=False`: torchao would otherwise switch on inductor's coordinate-descent
    autotuning for the whole process, which multiplies the start-up compile time (and would also
    slow every later compile of other models in the process).
    """
    quantization = require("torchao.quantization", "gpu", f"--quant {quant}")
    if quant == "int8-ao":
        return quantization.Int8WeightOnlyConfig(set_inductor_config=False)
    algorithm = "hqq" if quant == "int4-hqq" else "tinygemm"
    if device.startswith("cuda"):
        return quantization.Int4WeightOnlyConfig(
            group_size=group, int4_packing_format="tile_packed_to_4d", int4_choose_qparams_algorithm=algorithm,
            set_inductor_config=False,
        )
    workflow = require("torchao.prototype.quantization.int4.inference_workflow", "gpu", f"--quant {quant} on CPU")
    return workflow.PrototypeInt4WeightOnlyConfig(
        group_size=group, int4_choose_qparams_algorithm=algorithm, set_inductor_config=False
    )


def apply_torchao(model: Any, quant: str, device: str) -> Any:
    """Quantise the language model's Linear layers in place and move the whole model to `device`.

    Layers are moved to the device one at a time before being quantised, so the device's peak
    is the quantised model plus one full-precision layer.
    """
    if quant.startswith("int4") and device.startswith("cuda") and model.dtype != torch.bfloat16:
        raise FfaaError(f"--quant {quant} on CUDA needs --dtype bf16 (or auto), not {model.dtype}")
    check_available(quant, device)
    quantization = require("torchao.quantization", "gpu", f"--quant {quant}")
    config = torchao_config(quant, device, group_size(model))
    quantization.quantize_(model, config, filter_fn=should_quantize, device=device)
    return model.to(device)


def weight_bytes(model: Any) -> int:
    """Bytes held by the model's parameters and buffers as stored (quantised tensors included)."""
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        total += _stored_bytes(tensor)
    return total


def _stored_bytes(tensor: Any) -> int:
    """Storage of a plain tensor, or of the inner tensors of a torchao/bitsandbytes subclass."""
    inner = getattr(tensor, "__tensor_flatten__", None)
    if inner is not None and type(tensor).__name__ not in ("Parameter", "Tensor"):
        names, _ = inner()
        return sum(_stored_bytes(getattr(tensor, n)) for n in names)
    return tensor.numel() * tensor.element_size()


# -- quality: how far a format's outputs drift from a reference format ---------------------------


@dataclass(frozen=True)
class Fingerprint:
    """What one format writes for fixed inputs: greedy tokens per row, and next-token logits at
    the verdict position of a teacher-forced answer (rows x vocab, float32 on the CPU)."""

    quant: str
    tokens: tuple[tuple[int, ...], ...]
    verdict_logits: Any
    verdict_ids: tuple[int, int]  # token ids of " Real" and " Fake"


@dataclass(frozen=True)
class Agreement:
    """A format against the reference: share of greedy tokens equal position by position, mean
    length of the common prefix (as a share of the answer), largest absolute logit difference at
    the verdict position, largest change of the fake-minus-real margin, and whether every row
    still prefers the same verdict word."""

    quant: str
    reference: str
    token_agreement: float
    prefix_agreement: float
    max_logit_drift: float
    max_margin_drift: float
    same_verdict: bool

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def compare(fp: Fingerprint, ref: Fingerprint) -> Agreement:
    """Agreement of `fp` with `ref` (same inputs, same answer length)."""
    equal = total = prefix = 0
    for mine, theirs in zip(fp.tokens, ref.tokens):
        n = min(len(mine), len(theirs))
        same = [a == b for a, b in zip(mine[:n], theirs[:n])]
        equal += sum(same)
        total += max(len(mine), len(theirs))
        prefix += next((i for i, s in enumerate(same) if not s), n) / max(1, len(theirs))
    a, b = fp.verdict_logits.float(), ref.verdict_logits.float()
    real, fake = ref.verdict_ids
    margin_a, margin_b = a[:, fake] - a[:, real], b[:, fake] - b[:, real]
    return Agreement(
        quant=fp.quant,
        reference=ref.quant,
        token_agreement=equal / max(1, total),
        prefix_agreement=prefix / max(1, len(ref.tokens)),
        max_logit_drift=float((a - b).abs().max()),
        max_margin_drift=float((margin_a - margin_b).abs().max()),
        same_verdict=bool(torch.equal(margin_a > 0, margin_b > 0)),
    )


def fingerprint(backend: Any, quant: str, requests: list, new_tokens: int = 32) -> Fingerprint:
    """Greedy answers of exactly `new_tokens` tokens, and verdict-position logits, for `requests`.

    The verdict position is reached by appending a fixed answer prefix that ends with the
    verdict label, so every format is asked the same question at the same position.
    """
    from ..types import DecodingSettings

    settings = DecodingSettings(max_new_tokens=new_tokens, min_new_tokens=new_tokens, stop_at_answer_end=False)
    tokens = _greedy_tokens(backend, requests, settings)
    logits, ids = verdict_logits(backend, requests)
    return Fingerprint(quant, tokens, logits, ids)


def _greedy_tokens(backend: Any, requests: list, settings: Any) -> tuple[tuple[int, ...], ...]:
    """Greedy answers (through whatever decoding path the backend uses), as the token ids of
    their text: the backend returns text, and text is what every format is judged on."""
    tokenizer = backend.tokenizer
    gens = backend.generate(requests, settings)
    return tuple(tuple(tokenizer(g.text, add_special_tokens=False).input_ids) for g in gens)


def verdict_prefix() -> str:
    """A short answer in FFAA's format, cut right after the verdict label."""
    from ..prompts import load_answer_format

    fmt = load_answer_format()
    return (
        f"{fmt.label('description')}: A frontal face in even light.\n"
        f"{fmt.label('reasoning')}: The skin and the facial organs look consistent.\n"
        f"{fmt.label('verdict')}:"
    )


def verdict_logits(backend: Any, requests: list) -> tuple[Any, tuple[int, int]]:
    """Logits [rows, vocab] (float32, CPU) of the token after the verdict label, and the ids of
    the words " Real" and " Fake" at that position."""
    from .base import GenerationRequest

    prefix = verdict_prefix()
    forced = [GenerationRequest(r.image, r.prompt + " " + prefix) for r in requests]
    with torch.inference_mode():
        inputs = backend._inputs(forced)
        out = backend.model(**inputs, logits_to_keep=1)
    ids = (_next_word_id(backend.tokenizer, prefix, " Real"), _next_word_id(backend.tokenizer, prefix, " Fake"))
    return out.logits[:, -1, :].float().cpu(), ids


def _next_word_id(tokenizer: Any, prefix: str, word: str) -> int:
    """The first token id that `word` adds after `prefix` (tokenised together, as the model sees it)."""
    base = tokenizer(prefix, add_special_tokens=False).input_ids
    full = tokenizer(prefix + word, add_special_tokens=False).input_ids
    return int(full[len(base)] if len(full) > len(base) else full[-1])
