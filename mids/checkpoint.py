"""Reading FFAA's `mids.pth` safely, writing our safetensors, and building a loaded MIDS.

FFAA's `mids.pth` is a `torch.save`d dict of name -> tensor holding only the trained parameters
(CLIP's last two layers and the head); the encoders come from their public checkpoints. We read
it with `weights_only=True` (no arbitrary unpickling) and write only safetensors.

Our safetensors file holds the same tensors under our names, plus metadata:
`format = "ffaa-mids"`, `mids_config` (JSON of `MidsConfig`) and `complete` ("true" when the
file holds every tensor of the network, encoders included, so no encoder checkpoint is needed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from ffaa.errors import CheckpointError
from ffaa.models import FFAA
from ffaa.tensorfile import key_problems, read_metadata, read_tensor_file, unshared, write_safetensors

from .net import (
    NUM_CLASSES,
    NUM_FUSED_TOKENS,
    MidsConfig,
    MidsNet,
    build_from_encoders,
    build_random,
    checkpoint_keys,
    encoder_configs,
    normalise_key,
)

FORMAT = "ffaa-mids"


# --- reading -----------------------------------------------------------------------------------

def read_state(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a `mids.pth` (or any torch/safetensors file) under our names, on the CPU.

    Raises CheckpointError for a missing, corrupt or non-tensor file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"MIDS checkpoint {path} does not exist")
    return {normalise_key(k): v for k, v in read_tensor_file(path).items()}


# --- checking and overlaying -------------------------------------------------------------------

def state_dim(state: Mapping[str, Tensor]) -> int | None:
    """The MIDS width a state was trained for, read from the classifier ([4, 6*d])."""
    weight = state.get("classifier.weight")
    if weight is None or weight.ndim != 2 or weight.shape[1] % NUM_FUSED_TOKENS:
        return None
    return weight.shape[1] // NUM_FUSED_TOKENS


def problems(net: MidsNet, state: Mapping[str, Tensor]) -> list[str]:
    """Why `state` cannot be overlaid on `net` (empty when it can).

    The state must hold every name FFAA trains (`checkpoint_keys`), no name the network lacks,
    and each tensor in the network's shape. Extra encoder tensors are allowed (a full file).
    """
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    found = key_problems(state, shapes, required=checkpoint_keys(net))
    dim = state_dim(state)
    if dim is not None and dim != net.dim:
        found.append(f"the checkpoint is for MIDS dim {dim} but this network has dim {net.dim} "
                     "(the T5 width): use the text encoder it was trained with")
    return found


def overlay(net: MidsNet, state: Mapping[str, Tensor], source: str = "checkpoint") -> MidsNet:
    """Load `state` over `net` strictly (see `problems`); returns `net`."""
    found = problems(net, state)
    if found:
        raise CheckpointError(f"{source} does not fit this MIDS: " + "; ".join(found))
    merged = net.state_dict()
    merged.update({k: v.to(torch.float32) for k, v in state.items()})
    net.load_state_dict(merged, strict=True)
    return net


# --- writing -----------------------------------------------------------------------------------

def save_mids(net: MidsNet, path: str | Path, complete: bool | None = None,
              extra: Mapping[str, str] | None = None) -> Path:
    """Write the trained tensors (or, with `complete`, every tensor) as safetensors.

    `complete=None` writes every tensor only when an encoder was built from a config dict
    (random weights nobody could download again) and the trained tensors otherwise.
    """
    from safetensors.torch import save_file

    if complete is None:
        complete = not (isinstance(net.config.clip, str) and isinstance(net.config.t5, str))
    state = net.state_dict()
    keys = list(state) if complete else checkpoint_keys(net)
    tensors = unshared({k: state[k] for k in keys})
    config = net.config
    if complete:
        config = MidsConfig(**{**config.__dict__, **encoder_configs(net)})
    meta = {"format": FORMAT, "mids_config": config.to_json(), "complete": str(complete).lower(),
            **dict(extra or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


def convert_mids(pth: str | Path, out: str | Path, source_note: str | None = None) -> dict[str, object]:
    """FFAA `mids.pth` -> our safetensors (same tensors, our names, float32).

    The encoders are not in `mids.pth`; the file records FFAA's public encoders as their source.
    Returns a summary (tensor count, values, dim).
    """
    state = read_state(pth)
    dim = state_dim(state)
    if dim is None:
        raise CheckpointError(f"{pth} has no usable 'classifier.weight' [{NUM_CLASSES}, 6*dim]: "
                              "not a MIDS checkpoint")
    unknown = [k for k in state if not _is_mids_name(k)]
    if unknown:
        raise CheckpointError(f"{pth}: {len(unknown)} key(s) are not MIDS parameters, first {unknown[0]!r}")
    missing = missing_mids_names(state, _clip_layers(state, dim))
    if missing:
        raise CheckpointError(f"{pth}: {len(missing)} MIDS parameter(s) missing, first {missing[0]!r}: "
                              "not a complete mids.pth")
    meta = {"format": FORMAT, "complete": "false", "converted_from": source_note or Path(pth).name}
    if dim == MidsConfig.ffaa().dim:  # FFAA's release: its encoders are known
        meta["mids_config"] = MidsConfig.ffaa().to_json()
    out = write_safetensors(unshared(state), out, meta)
    return {"tensors": len(state), "values": sum(v.numel() for v in state.values()), "dim": dim, "path": str(out)}


_HEAD = ("projector_layer1.", "projector_layer2.", "cls_token_layer1.", "cls_token_layer2.",
         "fusion_block.", "se_attn.", "classifier.")


def _is_mids_name(name: str) -> bool:
    return name.startswith(_HEAD) or name.startswith("image_encoder.encoder.layers.")


_CLIP_LAYER = re.compile(r"image_encoder\.encoder\.layers\.(\d+)\.(.+)")
FFAA_CLIP_LAYERS = FFAA.clip.num_hidden_layers


def _clip_layers(state: Mapping[str, Tensor], dim: int) -> int | None:
    """24 when the file looks like FFAA's (its width, CLIP layers among the last two of ViT-L's
    24), so a missing layer 22 or 23 is named; else None (the layers present decide)."""
    from .net import MidsConfig

    layers = {int(m.group(1)) for m in map(_CLIP_LAYER.match, state) if m}
    fits = bool(layers) and layers <= {FFAA_CLIP_LAYERS - 2, FFAA_CLIP_LAYERS - 1}
    return FFAA_CLIP_LAYERS if dim == MidsConfig.ffaa().dim and fits else None


def missing_mids_names(state: Mapping[str, Tensor], clip_layers: int | None = None) -> list[str]:
    """The trained names a `mids.pth` must hold and `state` lacks: every head parameter and the
    same parameters for each of the last two CLIP layers (of `clip_layers` when known, else the
    two below the highest layer present). The names do not depend on the width, so the tiny
    network lists them."""
    from .net import MidsConfig

    reference = checkpoint_keys(build_random(MidsConfig.tiny(), seed=0))
    head = [k for k in reference if not _CLIP_LAYER.match(k)]
    per_layer = sorted({m.group(2) for m in map(_CLIP_LAYER.match, reference) if m})
    layers = sorted({int(m.group(1)) for m in map(_CLIP_LAYER.match, state) if m})
    top = clip_layers - 1 if clip_layers else (layers[-1] if layers else 1)
    wanted = head + [f"image_encoder.encoder.layers.{i}.{rest}" for i in (top - 1, top) for rest in per_layer]
    return [k for k in wanted if k not in state]


# --- building a loaded network ----------------------------------------------------------------

def load_mids(path: str | Path, *, clip: str | Path | None = None, t5: str | Path | None = None,
              config: MidsConfig | None = None, local_files_only: bool = False) -> MidsNet:
    """A ready MIDS in eval mode, float32, on the CPU.

    * `mids.pth` (FFAA's) or a partial safetensors: encoders from `clip` / `t5` (default: the
      sources recorded in the file, else FFAA's public ones), then the file overlaid strictly.
    * a complete safetensors: built from its recorded config (or `config`), no encoder download.
    * a folder: its `mids.safetensors`, else its `mids.pth`.
    """
    path = _resolve(Path(path))
    meta = read_metadata(path)
    if config is None and "mids_config" in meta:
        config = MidsConfig.from_json(meta["mids_config"])
    state = read_state(path)
    if meta.get("complete") == "true" or (config is not None and _looks_complete(state)):
        if config is None:
            raise CheckpointError(f"{path} holds a complete MIDS but no config to build it from")
        net = build_random(config)
    else:
        clip = clip or (config.clip if config and isinstance(config.clip, str) else None)
        t5 = t5 or (config.t5 if config and isinstance(config.t5, str) else None)
        kwargs = {"local_files_only": local_files_only}
        if config is not None:
            kwargs.update(heads=config.heads, attn_implementation=config.attn_implementation)
        net = build_from_encoders(clip or MidsConfig.ffaa().clip, t5 or MidsConfig.ffaa().t5, **kwargs)
    return overlay(net, state, source=str(path)).eval()


def _looks_complete(state: Mapping[str, Tensor]) -> bool:
    return any(k.startswith("text_encoder.") for k in state)


def _resolve(path: Path) -> Path:
    if path.is_dir():
        for name in ("mids.safetensors", FFAA.mids_file):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds neither mids.safetensors nor {FFAA.mids_file}")
    if not path.exists():
        raise CheckpointError(f"MIDS checkpoint {path} does not exist")
    return path


def describe(path: str | Path) -> dict[str, object]:
    """A short summary of a checkpoint file, for the CLI."""
    state = read_state(path)
    return {"path": str(path), "tensors": len(state), "values": sum(v.numel() for v in state.values()),
            "dim": state_dim(state), "metadata": json.dumps(read_metadata(path))}
