"""Released detector checkpoints -> our networks, key for key, as the original test scripts
load them.

* DeepfakeBench's `test.py`: `load_state_dict(ckpt, strict=True)`, no renaming.
* DF40's `test.py`: unwrap `ckpt["state_dict"]`, strip `module.` anywhere in a key, rename
  `base_model.` -> `backbone.` and `classifier.` -> `head.`, then strict.
* StA4Deepfake's `demo.py`: strip `module.` (DDP training), then strict.

Our loader applies the rule of the file's origin and then insists on the exact key set and
shapes of our network, which are the originals' (`../shared/fixtures/detectors/*/keys.json`).
The only keys it drops are ones known to be harmless (`HARMLESS`). Anything else — a missing or
unexpected key, a shape mismatch — is one line naming the first offenders, and when the file
looks like another known detector (or DF40's CLIP-B/16 `clip.pth` given as `clip_large`) the
line says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from ..tensorfile import key_problems, read_metadata, read_tensor_file, unshared, write_safetensors
from .registry import SPECS, DetectorSpec, LoaderKind, get_spec

log = logging.getLogger(__name__)

FORMAT = "ffaa-detector/1"
# Tensors some released files hold that the network does not (and must not) load:
# transformers < 4.31 saved CLIP's `position_ids` as a persistent buffer.
HARMLESS = ("backbone.embeddings.position_ids",)


def normalise_keys(state: Mapping[str, Tensor], loader: LoaderKind) -> dict[str, Tensor]:
    """The original loader's renaming, applied to a state dict."""
    if loader == "deepfakebench":
        return dict(state)
    out = {}
    for key, value in state.items():
        new = key.replace("module.", "")
        if loader == "df40":
            new = new.replace("base_model.", "backbone.").replace("classifier.", "head.")
        out[new] = value
    return out


def build_network(spec: DetectorSpec, variant: str = "full") -> nn.Module:
    """The spec's network with freshly initialised weights (on the current default device)."""
    import importlib

    if variant != "full" and variant not in spec.variants:
        raise ValueError(f"{spec.name} has no variant {variant!r}; variants: full, {', '.join(spec.variants)}")
    module_name, func = spec.builder.split(":")
    return getattr(importlib.import_module(module_name), func)(variant)


@cache
def expected_shapes(name: str, variant: str = "full") -> dict[str, tuple[int, ...]]:
    """Every state-dict key of a detector's network and its shape, built on the meta device
    (no memory is allocated, so checking CLIP-L's 1.2 GB key set is instant)."""
    with torch.device("meta"):
        net = build_network(get_spec(name), variant)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def looks_like(state: Mapping[str, Tensor], name: str) -> str | None:
    """A hint when `state` is not a `name` checkpoint but resembles something known."""
    head = state.get("head.weight")
    if name == "clip_large" and head is not None and tuple(head.shape) == (2, 768):
        return ("this is a CLIP ViT-B/16 detector (head [2, 768]), such as DF40's clip.pth; "
                "clip_large needs DF40's clip_large.pth (CLIP ViT-L/14, head [2, 1024])")
    keys = set(state)
    best, best_score = None, 0.0
    for other in SPECS:
        if other == name:
            continue
        wanted = set(expected_shapes(other))
        score = len(keys & wanted) / max(1, len(keys | wanted))
        if score > best_score:
            best, best_score = other, score
    if best is not None and best_score >= 0.8:
        return f"its keys are those of the {best} detector ({SPECS[best].title})"
    return None


def prepare_state(state: Mapping[str, Tensor], name: str, loader: LoaderKind | None = None,
                  variant: str = "full", source: str = "checkpoint") -> dict[str, Tensor]:
    """`state` renamed by its origin's rule and checked against the network: the dict that
    `load_state_dict(strict=True)` accepts, or CheckpointError with one line saying why not."""
    spec = get_spec(name)
    rules = [loader] if loader else list(dict.fromkeys(c.loader for c in spec.checkpoints))
    expected = expected_shapes(name, variant)
    first_problems: list[str] = []
    for rule in rules:
        renamed = normalise_keys(state, rule)
        dropped = [k for k in HARMLESS if k in renamed and k not in expected]
        for k in dropped:
            del renamed[k]
        found = key_problems(renamed, expected)
        if not found:
            if dropped:
                log.debug("%s: ignored %s", source, ", ".join(dropped))
            return renamed
        first_problems = first_problems or found
    hint = looks_like(normalise_keys(state, rules[0]), name)
    detail = "; ".join(first_problems)
    raise CheckpointError(f"{source} is not a {name} checkpoint: {hint + '; ' if hint else ''}{detail}")


def file_variant(path: str | Path) -> str:
    """The network variant a file is for: recorded in our safetensors, else the full size."""
    return read_metadata(Path(path).expanduser()).get("variant", "full")


def read_detector_state(path: str | Path, name: str, variant: str = "full") -> dict[str, Tensor]:
    """A checkpoint file (released `.pth` or our `.safetensors`) as a strict state dict for
    detector `name`."""
    path = Path(path).expanduser()
    if not path.is_file():
        from ..errors import WeightsNotFoundError
        from .registry import download_hint

        raise WeightsNotFoundError(f"{name} weights not found at {path}; {download_hint(get_spec(name))}")
    meta = read_metadata(path)
    if meta.get("format") == FORMAT and meta.get("detector") not in (None, name):
        raise CheckpointError(f"{path} holds the {meta['detector']} detector, not {name}")
    loader: LoaderKind | None = "deepfakebench" if meta.get("format") == FORMAT else None  # ours: renamed
    return prepare_state(read_tensor_file(path), name, loader, variant, source=str(path))


def save_detector(state: Mapping[str, Tensor], out: str | Path, name: str, variant: str = "full",
                  source: str = "") -> Path:
    """Our safetensors file of a detector: the tensors under the network's names, their
    dtypes kept, the detector and variant recorded."""
    meta = {"format": FORMAT, "detector": name, "variant": variant}
    if source:
        meta["converted_from"] = source
    return write_safetensors(unshared(state, dtype=None), out, meta)


def identify(path: str | Path) -> str:
    """Which known detector a checkpoint file holds, from its keys and shapes; CheckpointError
    when it is none of them."""
    state = read_tensor_file(Path(path).expanduser())
    fits = []
    for name in SPECS:
        try:
            prepare_state(state, name, source=str(path))
        except CheckpointError:
            continue
        fits.append(name)
    if len(fits) == 1:
        return fits[0]
    if fits:
        raise CheckpointError(f"{path} fits several detectors ({', '.join(fits)}): pass --detector NAME")
    hint = next((h for h in (looks_like(state, n) for n in SPECS) if h), None)
    raise CheckpointError(f"{path} is none of the known detectors ({', '.join(SPECS)})" + (f": {hint}" if hint else ""))


def load_into_network(spec: DetectorSpec, state: Mapping[str, Tensor], variant: str = "full") -> nn.Module:
    """The network with `state` loaded strictly. Built on the meta device and given the
    state's tensors directly (no throwaway random init: seconds saved on CLIP-L and StA). A
    network that keeps tensors outside its state dict (transformers' non-persistent
    `position_ids`) fills them with its module's `restore_buffers(net)`; without one it is
    built and initialised normally."""
    import importlib

    with torch.device("meta"):
        net = build_network(spec, variant)
    net.load_state_dict(state, strict=True, assign=True)
    restore = getattr(importlib.import_module(spec.builder.split(":")[0]), "restore_buffers", None)
    if restore is not None:
        restore(net)
    if not any(t.is_meta for t in (*net.parameters(), *net.buffers())):
        return net
    net = build_network(spec, variant)
    net.load_state_dict(state, strict=True)
    return net


def convert(src: str | Path, dst: str | Path, name: str) -> dict[str, object]:
    """A released checkpoint -> our safetensors (the same tensors under the network's names,
    their dtypes kept), checked against the architecture first. Returns a summary."""
    state = read_detector_state(src, name)
    out = save_detector(state, dst, name, source=Path(src).name)
    return {"detector": name, "tensors": len(state), "values": sum(v.numel() for v in state.values()),
            "path": str(out)}
