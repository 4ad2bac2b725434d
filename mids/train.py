"""Training MIDS the way FFAA did, with the bugs of its released script fixed.

* Trainable: CLIP's last two encoder layers and the head; T5 and the rest of CLIP are frozen
  (`freeze_like_ffaa`). Frozen encoders run in eval mode, so T5's dropout is off and a step
  depends only on the data.
* Loss: cross-entropy over the 4 classes of every (image, answer) row; AdamW.
* Data: FFAA's schema (`ffaa.mids.data`), RGB, optional augmentation seeded by
  (seed, epoch, position), a seeded shuffle per epoch.
* Checkpoints in `out_dir`: `last.safetensors` (weights), `last_optim.safetensors` (AdamW
  moments) and `last_state.json` (epoch, step, history), written after every `save_every`
  steps and at each epoch end; `best.safetensors` keeps the best validation result. Resuming
  reloads them and skips the batches already done, so an interrupted run continues exactly.
* Validation each epoch: FFAA's selector on each face's answers, then ACC, ROC-AUC and AP of
  the forgery score against the image label (scikit-learn).

FFAA's script also re-initialised the unfrozen CLIP layers at random; `reinit_clip_layers`
reproduces that, off by default (it throws away pretrained weights).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ffaa.errors import FfaaError

from .checkpoint import overlay, read_state, save_mids
from .data import Augment, LoadedData, Sample, make_batch
from .net import MidsNet, freeze_like_ffaa
from .selector import select

LAST, BEST = "last", "best"


@dataclass
class TrainConfig:
    """Hyper-parameters and paths. FFAA: batch 48, lr 1e-4, 2 epochs."""

    out_dir: str
    epochs: int = 2
    batch_size: int = 48
    lr: float = 1e-4
    weight_decay: float = 0.01
    seed: int = 0
    augment: bool = True
    save_every: int = 200
    max_steps: int | None = None
    best_metric: str = "auc"
    reinit_clip_layers: bool = False
    max_length: int = 512
    device: str = "cpu"


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None
    out_dir: str = ""


class Trainer:
    """Owns the network, optimiser and data order; `run` trains (or resumes) to the end."""

    def __init__(self, net: MidsNet, tokenizer: Any, processor: Any, train: Sequence[Sample],
                 config: TrainConfig, val: Sequence[Sample] = (), log: Callable[[str], None] = print):
        if not train:
            raise FfaaError("no usable training rows")
        self.net, self.tokenizer, self.processor = net, tokenizer, processor
        self.train_samples, self.val_samples = list(train), list(val)
        self.config, self.log = config, log
        self.out = Path(config.out_dir)
        self.device = torch.device(config.device)
        self.trainable = freeze_like_ffaa(net)
        if config.reinit_clip_layers:
            _reinit_clip_layers(net)
        self.net.to(self.device, torch.float32)
        params = [p for p in net.parameters() if p.requires_grad]
        self.optim = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.augment = Augment() if config.augment else None
        self.steps_per_epoch = math.ceil(len(self.train_samples) / config.batch_size)
        self.state: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0,
                                      "losses": [], "validation": [], "best": None}

    # --- the loop --------------------------------------------------------------------------

    def run(self, resume: bool = False) -> TrainResult:
        from tqdm.auto import tqdm

        prepare_out_dir(self.out)
        if resume:
            self.load_last()
        elif (self.out / f"{LAST}_state.json").exists():
            raise FfaaError(f"{self.out} already holds a training run: resume it or pick another folder")
        total = self.config.epochs * self.steps_per_epoch
        if self.config.max_steps is not None:
            total = min(total, self.config.max_steps)
        bar = tqdm(total=total, initial=self.state["global_step"], desc="train MIDS", unit="step")
        while self.state["epoch"] < self.config.epochs and self.state["global_step"] < total:
            self._epoch(bar, total)
        bar.close()
        return TrainResult(self.state["global_step"], list(self.state["losses"]),
                           list(self.state["validation"]), self.state["best"], str(self.out))

    def _epoch(self, bar: Any, total: int) -> None:
        epoch = self.state["epoch"]
        order = self.order(epoch)
        for step in range(self.state["step_in_epoch"], self.steps_per_epoch):
            if self.state["global_step"] >= total:
                self.save_last()
                return
            loss = self.step(order[step * self.config.batch_size:(step + 1) * self.config.batch_size],
                             (self.config.seed, epoch, step))
            self.state["losses"].append(loss)
            self.state["step_in_epoch"] = step + 1
            self.state["global_step"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", epoch=epoch)
            if self.state["global_step"] % self.config.save_every == 0:
                self.save_last()
        self.end_epoch()

    def end_epoch(self) -> None:
        if self.val_samples:
            metrics = {"epoch": self.state["epoch"], **self.validate()}
            self.state["validation"].append(metrics)
            self.log("validation " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "epoch"))
            if _better(metrics, self.state["best"], self.config.best_metric):
                self.state["best"] = metrics
                self._save_best(metrics)
        self.state["epoch"] += 1
        self.state["step_in_epoch"] = 0
        self.save_last()

    def _save_best(self, metrics: dict[str, float]) -> None:
        """`best.safetensors`, replaced atomically (a kill never leaves it half-written)."""
        tmp = self.out / f".{BEST}.tmp.safetensors"
        try:
            save_mids(self.net, tmp, extra={"metrics": _json(metrics)})
            _fsync(tmp)
            os.replace(tmp, self.out / f"{BEST}.safetensors")
        except OSError as exc:
            raise FfaaError(f"cannot write a checkpoint in {self.out}: {exc.strerror or exc}") from None

    def order(self, epoch: int) -> list[Sample]:
        """This epoch's shuffled samples (seeded by seed and epoch, so resumable)."""
        perm = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.train_samples))
        return [self.train_samples[i] for i in perm]

    def step(self, samples: Sequence[Sample], seed: Sequence[int]) -> float:
        """One optimiser step on a batch; returns its mean cross-entropy."""
        self._train_mode()
        batch = make_batch(samples, self.processor, self.tokenizer, augment=self.augment, seed=seed,
                           max_length=self.config.max_length)
        logits = self.net.logits_per_row(batch.pixel_values.to(self.device), batch.input_ids.to(self.device),
                                         batch.attention_mask.to(self.device), batch.image_index.to(self.device))
        loss = nn.functional.cross_entropy(logits, batch.labels.to(self.device))
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return float(loss.detach())

    def _train_mode(self) -> None:
        """Head and the two trainable CLIP layers train; frozen encoders stay in eval mode."""
        self.net.train()
        self.net.text_encoder.eval()
        self.net.image_encoder.eval()
        layers = self.net.image_encoder.encoder.layers
        for layer in layers[-2:]:
            layer.train()

    # --- validation ------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """ACC / AUC / AP of FFAA's decision over each validation face's answers."""
        self.net.eval()
        truth, scores, preds = [], [], []
        size = self.config.batch_size
        for start in range(0, len(self.val_samples), size):
            samples = self.val_samples[start:start + size]
            batch = make_batch(samples, self.processor, self.tokenizer, max_length=self.config.max_length)
            probs = self.net.logits_per_row(batch.pixel_values.to(self.device), batch.input_ids.to(self.device),
                                            batch.attention_mask.to(self.device),
                                            batch.image_index.to(self.device)).softmax(-1).cpu()
            row = 0
            for s in samples:
                sel = select(list(s.claims), probs[row:row + len(s.claims)].tolist())
                row += len(s.claims)
                truth.append(int(s.image_is_fake))
                scores.append(sel.forgery_score)
                preds.append(sel.pred)
        return detection_metrics(truth, scores, preds)

    # --- checkpoints -----------------------------------------------------------------------

    def save_last(self) -> None:
        """Weights, optimiser moments and loop state, committed together (see `_commit_last`)."""
        from safetensors.torch import save_file

        step = {"global_step": str(self.state["global_step"])}
        tmp = _last_files(self.out)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            tmp["state"][0].unlink(missing_ok=True)  # a stale commit record must not adopt new files
            save_mids(self.net, tmp["weights"][0], extra=step)
            tensors, groups = _optim_to_flat(self.optim)
            save_file(tensors, str(tmp["optim"][0]), metadata={"param_groups": json.dumps(groups), **step})
            state = {**self.state, "config": asdict(self.config), "trainable": len(self.trainable)}
            for path in (tmp["weights"][0], tmp["optim"][0]):
                _fsync(path)
            _write_synced(tmp["state"][0], _json(state))  # the commit point
            _commit_last(self.out)
        except OSError as exc:
            raise FfaaError(f"cannot write a checkpoint in {self.out}: {exc.strerror or exc}") from None

    def load_last(self) -> None:
        from safetensors import safe_open

        recover_last(self.out)
        path = self.out / f"{LAST}_state.json"
        if not path.is_file():
            raise FfaaError(f"nothing to resume: {path} does not exist")
        saved = _read_saved_state(path)
        weights = self.out / f"{LAST}.safetensors"
        _check_step(weights, saved["global_step"])
        overlay(self.net, read_state(weights), source=str(weights))
        optim_path = self.out / f"{LAST}_optim.safetensors"
        _check_step(optim_path, saved["global_step"])
        with safe_open(str(optim_path), framework="pt") as handle:
            groups = json.loads(handle.metadata()["param_groups"])
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 (not a dict)
        self.optim.load_state_dict(_optim_from_flat(tensors, groups))
        self.state = {k: saved[k] for k in self.state}
        changed = [k for k in ("seed", "batch_size", "augment", "lr", "weight_decay")
                   if saved.get("config", {}).get(k) != getattr(self.config, k)]
        if changed:
            self.log(f"warning: resuming with different {', '.join(changed)} than the saved run; "
                     "the data order or the optimisation will differ from an uninterrupted run")
        self.log(f"resumed from {path}: epoch {self.state['epoch']}, step {self.state['global_step']}")


# --- the checkpoint files ----------------------------------------------------------------------
# A save writes three temporary files, the state last: once `.last_state.tmp.json` is complete,
# the save is committed, and the renames that follow can be finished by `recover_last` if the
# process dies between them. Before that point the previous checkpoint is untouched.


def _last_files(out: Path) -> dict[str, tuple[Path, Path]]:
    """(temporary, final) path of each `last` file, in commit order (the state last)."""
    names = {"weights": f"{LAST}.safetensors", "optim": f"{LAST}_optim.safetensors", "state": f"{LAST}_state.json"}
    return {kind: (out / f".{name.replace('.', '.tmp.', 1)}", out / name) for kind, name in names.items()}


def _commit_last(out: Path) -> None:
    for tmp, final in _last_files(out).values():
        if tmp.exists():
            os.replace(tmp, final)


def recover_last(out: str | Path) -> None:
    """Finish a save that was committed but interrupted, or drop one that was not."""
    out = Path(out)
    files = _last_files(out)
    state_tmp = files["state"][0]
    try:
        json.loads(state_tmp.read_text())
        committed = True
    except (OSError, ValueError):
        committed = False
    if committed:
        _commit_last(out)
        return
    for tmp, _ in files.values():
        tmp.unlink(missing_ok=True)


def prepare_out_dir(out: str | Path) -> Path:
    """The checkpoint folder, created and checked writable before any training step runs."""
    import tempfile

    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise FfaaError(f"checkpoint folder {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise FfaaError(f"cannot write checkpoints in {path}: {exc.strerror or exc}") from None
    return path


def _read_saved_state(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FfaaError(f"cannot resume: {path} is unreadable ({exc})") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("global_step"), int):
        raise FfaaError(f"cannot resume: {path} is not a training state written by train-mids")
    saved["validation"] = [_undefined_as_nan(m) for m in saved.get("validation", [])]
    saved["best"] = _undefined_as_nan(saved["best"]) if saved.get("best") else saved.get("best")
    return saved


def _json(value: Any) -> str:
    """Standard JSON: an undefined metric (NaN, e.g. AUC with one class) is written as null."""
    return json.dumps(_finite(value), indent=1, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _undefined_as_nan(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics read back: null is NaN again, as the loop computed it."""
    return {k: float("nan") if v is None else v for k, v in metrics.items()}


def _check_step(path: Path, step: int) -> None:
    """The file must belong to the saved state (files from older versions carry no step)."""
    from .checkpoint import read_metadata

    if not path.is_file():
        raise FfaaError(f"cannot resume: {path} is missing")
    saved = read_metadata(path).get("global_step")
    if saved is not None and saved != str(step):
        raise FfaaError(f"cannot resume: {path} is from step {saved} but {LAST}_state.json from step {step}")


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def detection_metrics(truth: Sequence[int], scores: Sequence[float], preds: Sequence[int]) -> dict[str, float]:
    """ACC of the predictions; ROC-AUC and AP of the forgery scores (NaN with one class only)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    acc = float(np.mean(np.asarray(truth) == np.asarray(preds))) if truth else float("nan")
    if len(set(truth)) < 2:
        return {"acc": acc, "auc": float("nan"), "ap": float("nan")}
    return {"acc": acc, "auc": float(roc_auc_score(truth, scores)), "ap": float(average_precision_score(truth, scores))}


def _better(new: dict[str, float], best: dict[str, float] | None, metric: str) -> bool:
    value = new.get(metric, float("nan"))
    if math.isnan(value):
        metric, value = "acc", new["acc"]
    return best is None or value > best.get(metric, float("-inf"))


def _optim_to_flat(optim: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """AdamW state -> flat tensors `state.<param>.<name>` and JSON-able param groups."""
    sd = optim.state_dict()
    tensors = {f"state.{pid}.{name}": torch.as_tensor(value).detach().cpu().contiguous().clone()
               for pid, entry in sd["state"].items() for name, value in entry.items()}
    return tensors, sd["param_groups"]


def _optim_from_flat(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": groups}


def _reinit_clip_layers(net: MidsNet) -> None:
    """FFAA's script: xavier-normal weights and zero biases for every Linear of the two
    unfrozen CLIP layers (their LayerNorms keep CLIP's values)."""
    for layer in net.image_encoder.encoder.layers[-2:]:
        for module in layer.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)


def train_mids(config: TrainConfig, train: LoadedData, val: LoadedData | None, *, net: MidsNet,
               tokenizer: Any, processor: Any, resume: bool = False,
               log: Callable[[str], None] = print) -> TrainResult:
    """Train (or resume) and report the data that was skipped."""
    log(train.summary("train"))
    if val is not None:
        log(val.summary("validation"))
        classes = {s.image_is_fake for s in val.samples}
        if len(classes) == 1:
            kind = "fake" if classes.pop() else "real"
            log(f"warning: every validation image is {kind}: AUC and AP are undefined (nan) and the best "
                "checkpoint is chosen by ACC; add images of the other class to the validation rows")
    trainer = Trainer(net, tokenizer, processor, train.samples, config,
                      val.samples if val is not None else (), log)
    return trainer.run(resume=resume)
