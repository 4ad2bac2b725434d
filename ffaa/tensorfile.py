"""Reading checkpoints of other projects safely and writing ours, in one place.

Torch files are read with `weights_only=True` (no arbitrary unpickling: a checkpoint that holds
pickled code is refused, never run), memory-mapped where the file format allows it. Files we
write are safetensors, written to a temporary name and renamed, so an interrupted write never
leaves a half file under the real name. MIDS (`ffaa.mids.checkpoint`) and the classic detectors
(`ffaa.detectors.checkpoint`) both read and write through here.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from .errors import CheckpointError

# Containers training scripts wrap a state dict in ({"state_dict": ..., "epoch": 3}, DDP's
# {"module": ...}); the reader descends into them.
NESTED = ("state_dict", "model", "module")


def read_tensor_file(path: str | Path) -> dict[str, Tensor]:
    """Every named tensor of a torch or safetensors file, on the CPU.

    A torch file may wrap its tensors in one of `NESTED`; a wrapper that also holds other
    entries (an epoch, an optimizer state) is unwrapped too. CheckpointError for a missing,
    truncated, pickled-code or non-tensor file, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _named_tensors(path, _unwrap(_torch_load(path)))


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise CheckpointError(f"cannot read {path}: not a valid safetensors file ({exc})") from exc


def _torch_load(path: Path) -> object:
    with warnings.catch_warnings():  # torch warns about pickle protocols before it refuses a file
        warnings.simplefilter("ignore", UserWarning)
        return _torch_load_quietly(path)


def _torch_load_quietly(path: Path) -> object:
    try:
        return torch.load(str(path), weights_only=True, map_location="cpu", mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):  # the legacy (pre-1.6) format cannot be mapped: read it whole
            raise CheckpointError(f"cannot read {path}: {load_failure(exc)}") from exc
    except Exception as exc:
        raise CheckpointError(f"cannot read {path}: {load_failure(exc)}") from exc
    try:
        return torch.load(str(path), weights_only=True, map_location="cpu")
    except Exception as exc:
        raise CheckpointError(f"cannot read {path}: {load_failure(exc)}") from exc


def _unwrap(obj: object) -> object:
    while isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
        inner = next((obj[k] for k in NESTED if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    return obj


def _named_tensors(path: Path, obj: object) -> dict[str, Tensor]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dict of tensors")
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if bad:
        raise CheckpointError(f"{path}: entry {bad[0]!r} is not a named tensor ({len(bad)} such entries)")
    return dict(obj)


def load_failure(exc: Exception) -> str:
    """One line for a failed `torch.load(weights_only=True)` (torch's own text is a paragraph that
    suggests `weights_only=False`, which is exactly what must not be done with an unknown file)."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return (f"it contains pickled objects ({found.group(1)}), which are refused: "
                "only a checkpoint of plain tensors is loaded")
    if "Weights only load failed" in text:
        return "not a torch checkpoint of plain tensors (refused without unpickling it)"
    first = text.strip().splitlines()[0].split(". ")[0] if text.strip() else type(exc).__name__
    return f"not a readable torch checkpoint (truncated or corrupt): {first}"


def key_problems(state: Mapping[str, Tensor], shapes: Mapping[str, tuple[int, ...]],
                 required: Sequence[str] | None = None) -> list[str]:
    """Why `state` does not load into a network whose state dict has `shapes` (empty when it
    does): keys missing (of `required`, default all of them), keys the network lacks, shapes
    that differ; each problem names its first few keys."""
    missing = [k for k in (shapes if required is None else required) if k not in state]
    unexpected = [k for k in state if k not in shapes]
    mismatched = [k for k in state if k in shapes and tuple(state[k].shape) != tuple(shapes[k])]
    found = []
    if missing:
        found.append(f"{len(missing)} missing key(s) ({_first(missing)})")
    if unexpected:
        found.append(f"{len(unexpected)} unexpected key(s) ({_first(unexpected)})")
    if mismatched:
        k = mismatched[0]
        found.append(f"{len(mismatched)} shape mismatch(es) (first {k}: file {list(state[k].shape)}, "
                     f"network {list(shapes[k])})")
    return found


def _first(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (", ..." if len(keys) > n else "")


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a safetensors file ({} for torch files or files without any)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:
        raise CheckpointError(f"cannot read {path}: not a valid safetensors file ({exc})") from exc


def unshared(tensors: Mapping[str, Tensor], dtype: torch.dtype | None = torch.float32) -> dict[str, Tensor]:
    """Contiguous CPU copies (safetensors refuses tensors that share storage, e.g. tied
    embeddings), floating tensors cast to `dtype` (None keeps their dtype)."""
    out = {}
    for k, v in tensors.items():
        v = v.detach().to("cpu")
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous().clone()
    return out


def write_safetensors(tensors: Mapping[str, Tensor], out: str | Path, metadata: Mapping[str, str]) -> Path:
    """Write `tensors` to `out` atomically (temporary name, then rename); CheckpointError on
    failure, leaving no partial file."""
    from safetensors.torch import save_file

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file(dict(tensors), str(tmp), metadata=dict(metadata))
        os.replace(tmp, out)  # never a half-written output, even when it overwrites the source
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {out}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - safetensors reports I/O failures as its own error type
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {out}: {exc}") from None
    return out
