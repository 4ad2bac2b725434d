"""The original checkpoint's tensors: finding the shards, reading them safely, renaming them to
transformers' LLaVA names and checking that every tensor has its place and its shape.

Used by the converter (`convert.py`); heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError
from ..lazy import require
from .llava_layout import read_json_object

if TYPE_CHECKING:
    import torch
    from transformers import CLIPVisionConfig

# Original tensor-name prefixes. Order matters: the generic `model.` rule comes last.
ORIG_VISION = "model.vision_tower.vision_tower.vision_model."
ORIG_PROJ_1 = "model.mm_projector.0."
ORIG_PROJ_2 = "model.mm_projector.2."
ORIG_LM_HEAD = "lm_head."
ORIG_TEXT = "model."
# Tensors of the original model that transformers' Llava has no counterpart for (1.6 `unpad`).
DROPPED = ("model.image_newline",)


def weight_files(src: Path) -> list[Path]:
    """The checkpoint's weight shards: safetensors if any, else pytorch `.bin` files."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = src / index_name
        if index.is_file():
            names = sorted(set(read_json_object(index).get("weight_map", {}).values()))
            missing = [n for n in names if not (src / n).is_file()]
            if missing:
                raise CheckpointError(f"{index} lists {len(missing)} missing shard(s): {missing[:3]}")
            return [src / n for n in names]
    files = sorted(src.glob("*.safetensors")) or sorted(src.glob("pytorch_model*.bin"))
    if not files:
        raise CheckpointError(f"{src} has no weights (*.safetensors or pytorch_model*.bin)")
    return files


def load_original_weights(src: Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint by original name. `.bin` shards load with weights_only."""
    torch = require("torch", "torch", "converting checkpoints")
    safetensors_torch = require("safetensors.torch", "torch", "converting checkpoints")
    weights: dict[str, torch.Tensor] = {}
    for path in weight_files(src):
        try:
            if path.suffix == ".safetensors":
                shard = safetensors_torch.load_file(str(path))
            else:
                shard = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # corrupt, truncated, or a pickle holding more than tensors
            raise CheckpointError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
        duplicated = sorted(set(shard) & set(weights))
        if duplicated:
            raise CheckpointError(
                f"{path.name} repeats {len(duplicated)} tensor(s) of other shards: {duplicated[:3]}"
            )
        weights.update(shard)
    return weights


@dataclass(frozen=True)
class KeyMap:
    """Prefix rules from original names to the names of the model built in this process.

    The target prefixes are read from the model's own state dict (by anchor tensors), so the
    map follows transformers' in-memory layout instead of hard-coding one version's names.
    """

    rules: tuple[tuple[str, str], ...]  # (original prefix, target prefix), most specific first

    @classmethod
    def for_model(cls, target_keys: Iterable[str]) -> KeyMap:
        keys = list(target_keys)

        def prefix(anchor: str) -> str:
            hits = [k[: -len(anchor)] for k in keys if k.endswith(anchor)]
            if len(hits) != 1:
                raise CheckpointError(
                    f"cannot locate {anchor!r} in the transformers model ({len(hits)} matches)"
                )
            return hits[0]

        return cls(
            (
                (ORIG_VISION, prefix("embeddings.patch_embedding.weight")),
                (ORIG_PROJ_1, prefix("linear_1.weight") + "linear_1."),
                (ORIG_PROJ_2, prefix("linear_2.weight") + "linear_2."),
                (ORIG_LM_HEAD, prefix("lm_head.weight") + "lm_head."),
                (ORIG_TEXT, prefix("embed_tokens.weight")),
            )
        )

    def to_target(self, name: str) -> str | None:
        return _swap_prefix(name, self.rules)

    def to_original(self, name: str) -> str | None:
        inverse = sorted(((t, o) for o, t in self.rules), key=lambda r: -len(r[0]))
        return _swap_prefix(name, inverse)


def _swap_prefix(name: str, rules: Iterable[tuple[str, str]]) -> str | None:
    for old, new in rules:
        if name.startswith(old):
            return new + name[len(old) :]
    return None


def map_weights(
    weights: Mapping[str, torch.Tensor],
    target_shapes: Mapping[str, tuple[int, ...]],
    keymap: KeyMap,
    vocab_rows: Mapping[str, int],
) -> dict[str, torch.Tensor]:
    """Rename every original tensor; raise on unexpected, missing or mis-shaped tensors.

    `vocab_rows` names the target tensors whose first dimension is padded (embeddings and
    lm_head): their original row count must equal the original vocab, the rest must match.
    """
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for name, tensor in weights.items():
        if name in DROPPED:
            continue
        target = keymap.to_target(name)
        if target is None or target not in target_shapes:
            unexpected.append(name)
        else:
            mapped[target] = tensor
    if unexpected:
        raise CheckpointError(
            f"{len(unexpected)} tensor(s) in the checkpoint have no place in LlavaForConditionalGeneration: "
            f"{sorted(unexpected)[:5]}"
        )
    missing = sorted(k for k in target_shapes if k not in mapped)
    if missing:
        names = [keymap.to_original(k) or k for k in missing]
        raise CheckpointError(f"{len(missing)} tensor(s) missing from the checkpoint: {names[:5]}")
    _check_shapes(mapped, target_shapes, keymap, vocab_rows)
    return mapped


def _check_shapes(
    mapped: Mapping[str, torch.Tensor],
    target_shapes: Mapping[str, tuple[int, ...]],
    keymap: KeyMap,
    vocab_rows: Mapping[str, int],
) -> None:
    wrong = []
    for name, tensor in mapped.items():
        want = tuple(target_shapes[name])
        if name in vocab_rows:
            want = (vocab_rows[name],) + want[1:]
        if tuple(tensor.shape) != want:
            wrong.append(f"{keymap.to_original(name)}: {tuple(tensor.shape)} vs expected {want}")
    if wrong:
        raise CheckpointError(f"{len(wrong)} tensor(s) have unexpected shapes: {wrong[:5]}")


def pad_rows(tensor: torch.Tensor, rows: int, fill: str) -> torch.Tensor:
    """Grow a [vocab, hidden] matrix to [rows, hidden].

    `fill="mean"` (input embeddings): new tokens start at the mean embedding, a neutral input.
    `fill="zero"` (lm_head): their logit is exactly 0, and generation suppresses them anyway.
    """
    torch = require("torch", "torch", "converting checkpoints")
    extra = rows - tensor.shape[0]
    if fill == "mean":
        new = tensor.float().mean(dim=0, keepdim=True).to(tensor.dtype).expand(extra, -1)
    else:
        new = tensor.new_zeros((extra, tensor.shape[1]))
    return torch.cat([tensor, new], dim=0)



def check_vision_shapes(
    vision: CLIPVisionConfig, shapes: Mapping[str, tuple[int, ...]], mm_hidden: int
) -> None:
    """Cross-check the CLIP config against the checkpoint's tower tensors; raise on mismatch.

    The config comes from outside the checkpoint (a folder or a built-in table), so a wrong one
    must not slip through: width, patch, image size, MLP width and depth are all in the shapes.
    """
    patch = shapes.get(ORIG_VISION + "embeddings.patch_embedding.weight")  # [hidden, 3, p, p]
    pos = shapes.get(ORIG_VISION + "embeddings.position_embedding.weight")  # [(S/p)^2 + 1, hidden]
    fc1 = shapes.get(ORIG_VISION + "encoder.layers.0.mlp.fc1.weight")  # [intermediate, hidden]
    if patch is None or pos is None or fc1 is None:
        raise CheckpointError(
            "the checkpoint has no vision tower tensors "
            f"({ORIG_VISION}embeddings.*, encoder.layers.*): converting a checkpoint whose CLIP "
            "was not saved with it is not supported"
        )
    layer_key = re.compile(re.escape(ORIG_VISION) + r"encoder\.layers\.(\d+)\.")
    layers = {m.group(1) for k in shapes if (m := layer_key.match(k))}
    found = dict(
        hidden_size=patch[0],
        patch_size=patch[-1],
        image_size=patch[-1] * round((pos[0] - 1) ** 0.5),
        intermediate_size=fc1[0],
        num_hidden_layers=len(layers),
    )
    wrong = {k: (getattr(vision, k), v) for k, v in found.items() if getattr(vision, k) != v}
    if wrong:
        detail = ", ".join(f"{k}: config {c} vs tensors {t}" for k, (c, t) in wrong.items())
        raise CheckpointError(f"the CLIP config does not match the checkpoint's vision tower ({detail})")
    if mm_hidden != vision.hidden_size:
        raise CheckpointError(
            f"mm_hidden_size={mm_hidden} but the vision tower is {vision.hidden_size} wide"
        )
