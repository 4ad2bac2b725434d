"""FFAA's benchmark layout (OW-FFA-Bench):

```
benchmark/
  DPF/DPF.json        {"0001.png": "fake", "0002.png": "real", ...}
  DPF/imgs/0001.png
  MA/MA.json          {"x.png": ["fake", "Facial attribute manipulation"], ...}
  ...
```

Every folder holding a `<folder>.json` is a set. An image's id is its path relative to the
benchmark root (`DPF/imgs/0001.png`); when an image sits beside the JSON instead of in
`imgs/`, that path is used. Labelled files missing on disk and images on disk without a label
are counted and listed, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ffaa.errors import InputError
from ffaa.jsonio import read_json
from ffaa.options import IMAGE_SUFFIXES

from .labels import MAX_LISTED, Label, LabelSet, build_label_set, parse_label
from .matching import normalize_id


@dataclass(frozen=True)
class BenchmarkItem:
    path: Path
    label: Label


@dataclass(frozen=True)
class Benchmark:
    root: Path
    sets: tuple[str, ...]
    items: tuple[BenchmarkItem, ...]
    labels: LabelSet
    missing_files: tuple[str, ...] = ()
    unlabelled_files: tuple[str, ...] = ()

    def label_set(self) -> LabelSet:
        """The labels, with missing and unlabelled files added to the problems."""
        notes = [f"labelled but not on disk: {i}" for i in self.missing_files[:MAX_LISTED]]
        notes += [f"on disk but not labelled: {i}" for i in self.unlabelled_files[:MAX_LISTED]]
        if len(self.missing_files) > MAX_LISTED or len(self.unlabelled_files) > MAX_LISTED:
            notes.append(f"{len(self.missing_files)} labelled files missing, "
                         f"{len(self.unlabelled_files)} files unlabelled in all")
        labels = self.labels
        return LabelSet(labels.source, labels.labels, labels.rows, labels.invalid, labels.duplicates,
                        labels.conflicting, labels.problems + tuple(notes))


def find_sets(root: Path) -> list[Path]:
    """`<set>/<set>.json` files directly under root, sorted by set name."""
    return sorted(p / f"{p.name}.json" for p in root.iterdir() if (p / f"{p.name}.json").is_file())


def load_set_json(path: Path) -> list[tuple[str, Label | None, str | None]]:
    """Rows (where, label or None, problem) of one `<set>.json`; ids are `<set>/imgs/<name>`."""
    data = read_json(path, expect=dict, error=InputError, unreadable="{path}: cannot read the set's labels ({exc})",
                     wrong_type="{path}: expected a JSON object mapping file name -> label")
    subset = path.stem
    folder = path.parent
    rows: list[tuple[str, Label | None, str | None]] = []
    for name, value in data.items():
        where = f"{path}[{name!r}]"
        try:
            verdict, kind = parse_label(value)
        except ValueError as exc:
            rows.append((where, None, str(exc)))
            continue
        rel = normalize_id(name)
        beside_json = (folder / rel).is_file() and not (folder / "imgs" / rel).is_file()
        ident = f"{subset}/{rel}" if rel.startswith("imgs/") or beside_json else f"{subset}/imgs/{rel}"
        rows.append((where, Label(ident, verdict, subset, kind), None))
    return rows


def load_benchmark(root: str | Path) -> Benchmark:
    """Read every set of a benchmark folder and check its files against its labels."""
    base = Path(root).expanduser()
    if base.is_file():
        raise InputError(f"{base} is a file: give the benchmark folder that holds <set>/<set>.json"
                         + (f" (here {base.absolute().parent.parent})" if base.suffix == ".json" else ""))
    if not base.is_dir():
        raise InputError(f"benchmark folder not found: {base}")
    files = find_sets(base)
    if not files:
        hint = (f"; {base / base.name}.json is one set: give its parent folder {base.absolute().parent}"
                if (base / f"{base.name}.json").is_file() else "")
        raise InputError(f"{base}: no benchmark sets found (expected <set>/<set>.json, e.g. DPF/DPF.json){hint}")
    rows = [row for f in files for row in load_set_json(f)]
    labels = build_label_set(str(base), rows)
    items = tuple(BenchmarkItem(base / lab.id, lab) for lab in labels.labels)
    missing = tuple(i.label.id for i in items if not i.path.is_file())
    labelled = {lab.id for lab in labels.labels}
    on_disk = []
    for f in files:
        folder = f.parent
        for image in sorted(folder.rglob("*")):
            if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file():
                rel = image.relative_to(base).as_posix()
                if rel not in labelled:
                    on_disk.append(rel)
    return Benchmark(base, tuple(f.stem for f in files), items, labels, missing, tuple(on_disk))
