"""MIDS subcommands: `ffaa mids convert-mids|train-mids|mids-data` (also `ffaa convert-mids` etc.).

* `ffaa mids convert-mids mids.pth mids.safetensors`: FFAA's released weights -> our safetensors.
* `ffaa mids train-mids --train data.json --out runs/mids`: train MIDS (FFAA's recipe), resumable.
* `ffaa mids mids-data LABELS --out data.json`: run the assistant over labelled images and write
  MIDS training data in FFAA's schema.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import FfaaError
from ..models import FFAA

FFAA_CLIP = FFAA.clip.repo_id  # the registry is light: no need to import ffaa.mids (torch) here
FFAA_T5 = FFAA.t5.repo_id


def add_parser(sub) -> None:
    group = sub.add_parser("mids", help="MIDS: convert-mids, train-mids, mids-data",
                           description="MIDS weights, training data and training.")
    mids_sub = group.add_subparsers(dest="mids_command", metavar="MIDS_COMMAND", required=True)
    for add in (_add_convert, _add_train, _add_data):
        add(mids_sub)  # `ffaa mids convert-mids ...`, as the README writes it
        add(sub)  # `ffaa convert-mids ...`, the short form


# --- convert-mids ------------------------------------------------------------------------------

def _add_convert(sub) -> None:
    p = sub.add_parser("convert-mids", help="convert FFAA's mids.pth to safetensors",
                       description="Read FFAA's mids.pth safely (tensors only) and write our safetensors.")
    p.add_argument("source", metavar="MIDS_PTH", help="FFAA's mids.pth")
    p.add_argument("out", metavar="OUT", help="output .safetensors file")
    p.set_defaults(func=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from ..mids.checkpoint import convert_mids

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise FfaaError(f"{out}: the output must be a .safetensors file")
    if out.is_dir():
        raise FfaaError(f"{out} is a folder: give the output file's path, e.g. {out / 'mids.safetensors'}")
    summary = convert_mids(args.source, out)
    print(f"wrote {summary['path']}: {summary['tensors']} tensors, {summary['values']:,} values, "
          f"MIDS dim {summary['dim']}")
    return 0


# --- train-mids --------------------------------------------------------------------------------

def _add_train(sub) -> None:
    p = sub.add_parser("train-mids", help="train MIDS on answers in FFAA's data schema",
                       description="Train MIDS as FFAA did (T5 frozen, CLIP frozen but its last two layers, "
                                   "cross-entropy, AdamW). Checkpoints go to --out; --resume continues a run.")
    p.add_argument("--train", required=True, metavar="JSON", help="training rows (FFAA's schema)")
    p.add_argument("--val", default=None, metavar="JSON", help="validation rows: ACC/AUC/AP each epoch")
    p.add_argument("--image-root", default=None, help="base of relative image paths (default: each JSON's folder)")
    p.add_argument("--out", required=True, metavar="DIR", help="checkpoint folder")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    g = p.add_argument_group("model")
    g.add_argument("--clip", default=FFAA_CLIP, help=f"CLIP vision encoder, id or folder (default {FFAA_CLIP})")
    g.add_argument("--t5", default=FFAA_T5, help=f"T5 encoder and tokenizer, id or folder (default {FFAA_T5})")
    g.add_argument("--init", default=None, metavar="PATH",
                   help="start from these MIDS weights (mids.pth or .safetensors)")
    g.add_argument("--tiny", action="store_true", help="tiny random network and toy tokenizer (tests, demos)")
    g.add_argument("--reinit-clip-layers", action="store_true",
                   help="re-initialise the two trainable CLIP layers at random, as FFAA's script did")
    h = p.add_argument_group("training")
    h.add_argument("--epochs", type=int, default=2)
    h.add_argument("--batch-size", type=int, default=48, help="faces per step (each with its answers)")
    h.add_argument("--lr", type=float, default=1e-4)
    h.add_argument("--weight-decay", type=float, default=0.01)
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--no-augment", action="store_true", help="no JPEG/noise/blur/colour augmentation")
    h.add_argument("--save-every", type=int, default=200, help="steps between checkpoints")
    h.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in all")
    h.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from ..mids.data import load_mids_data
    from ..mids.train import TrainConfig, prepare_out_dir, train_mids

    _check_positive(args, "epochs", "batch_size", "save_every")
    train = load_mids_data(args.train, args.image_root)
    if not train.samples:
        raise FfaaError(f"{train.summary(args.train)}: no usable training rows")
    val = load_mids_data(args.val, args.image_root) if args.val else None
    if val is not None and not val.samples:
        raise FfaaError(f"{val.summary(args.val)}: no usable validation rows")
    prepare_out_dir(args.out)  # before the encoders load: a bad folder must fail fast
    net, tokenizer, processor = _training_model(args)
    config = TrainConfig(out_dir=args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, seed=args.seed, augment=not args.no_augment,
                         save_every=args.save_every, max_steps=args.max_steps, device=args.device,
                         reinit_clip_layers=args.reinit_clip_layers)
    result = train_mids(config, train, val, net=net, tokenizer=tokenizer, processor=processor, resume=args.resume)
    last = f"{result.losses[-1]:.4f}" if result.losses else "n/a"
    print(f"trained {result.steps} steps, last loss {last}; checkpoints in {result.out_dir}")
    if result.best:
        print("best validation: " + ", ".join(f"{k} {int(v)}" if k == "epoch" else f"{k} {v:.4f}"
                                              for k, v in result.best.items()))
    return 0


def _training_model(args: argparse.Namespace):
    from ..mids.checkpoint import overlay, read_state
    from ..mids.net import TRAINING_FLAGS, build_from_encoders
    from ..mids.preprocess import clip_image_processor, load_t5_tokenizer

    if args.tiny:
        from ..mids.decider import MidsDecider

        tiny = MidsDecider.tiny(seed=args.seed)
        net, tokenizer, processor = tiny.net, tiny.tokenizer, tiny.image_processor
    else:
        net = build_from_encoders(args.clip, args.t5, flags=TRAINING_FLAGS)
        tokenizer = load_t5_tokenizer(args.t5)
        processor = clip_image_processor(net.image_encoder.config.image_size, source=args.clip)
    if args.init:
        overlay(net, read_state(args.init), source=args.init)
    return net, tokenizer, processor


def _check_positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(args, name) < 1:
            raise FfaaError(f"--{name.replace('_', '-')} must be at least 1")


# --- mids-data ---------------------------------------------------------------------------------

def _add_data(sub) -> None:
    from .common import add_analysis_args, add_model_args

    p = sub.add_parser("mids-data", help="write MIDS training data from the assistant's answers",
                       description="Analyse labelled images (a folder with real/ and fake/, a benchmark "
                                   "folder, <set>.json, CSV or JSONL) and write FFAA's MIDS data schema.")
    p.add_argument("labels", metavar="LABELS", help="labelled images")
    p.add_argument("--out", required=True, metavar="JSON", help="output file")
    p.add_argument("--keep-agreeing", action="store_true",
                   help="keep faces whose three verdicts agree (FFAA drops them)")
    add_model_args(p)
    add_analysis_args(p)
    p.set_defaults(func=run_data)


def run_data(args: argparse.Namespace) -> int:
    from ..mids.data import find_labelled_images, write_mids_data
    from .common import build_assistant

    found = find_labelled_images(args.labels)
    for line in found.problems[:10]:
        print(f"note: {line}", file=sys.stderr)
    if not found.items:
        raise FfaaError(f"{args.labels}: no labelled images found"
                        + (f" ({found.skipped} label row(s) skipped)" if found.skipped else ""))
    out = _data_output(args.out)  # before the model loads: a bad path must fail fast
    args.no_mids = True  # the answers are the data; MIDS has no say here
    assistant = build_assistant(args)
    failures: list[str] = []
    stats = write_mids_data(_reports(assistant, found.items, failures), out,
                            drop_agreeing=not args.keep_agreeing, image_root=out.parent)
    skipped = f"; {found.skipped} label row(s) skipped" if found.skipped else ""
    print(f"{out}: {stats.summary()}; {len(failures)} image(s) could not be analysed{skipped}")
    for line in failures[:10]:
        print(f"  {line}", file=sys.stderr)
    return 0


def _data_output(name: str) -> Path:
    """The --out file of mids-data, checked writable (its folder is created)."""
    import tempfile

    out = Path(name).expanduser()
    if out.is_dir():
        raise FfaaError(f"--out {name} is a folder: give the JSON file to write, e.g. {out / 'data.json'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as exc:
        raise FfaaError(f"--out {name}: cannot write in {out.parent} ({exc.strerror or exc})") from None
    return out


def _reports(assistant, items, failures: list[str]) -> Iterator[tuple[Path, bool, object]]:
    """(image, is fake, report) for every face of every image; failures are collected, not fatal."""
    from tqdm.auto import tqdm

    for path, is_fake in tqdm(items, desc="mids-data", unit="image"):
        try:
            reports = assistant.analyze(path)
        except FfaaError as exc:
            failures.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")  # errors often name it
            continue
        for report in reports:
            yield path, is_fake, report
