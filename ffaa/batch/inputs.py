"""Batch inputs: files, folders, globs and manifests -> distinct items to analyse.

Two steps, both before any model runs. `collect_sources` expands the command-line arguments
into one `Source` per listed file (folders recursively, symlink loops cut, manifests read).
`build_items` hashes every file and groups sources by content, so a file listed twice, or two
copies of the same file, is analysed once and its record lists every path. The content hash
is also the key that makes runs resumable: an item is done when a record for its hash is.
"""

from __future__ import annotations

import csv
import errno
import glob
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ..errors import InputError

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson")
_GLOB_CHARS = set("*?[")
_CHUNK = 1 << 20

Kind = Literal["image", "video", "other", "unreadable"]


@dataclass(frozen=True)
class Source:
    """One listed file: where it is, the id and label the user gave it, and what listed it.

    manifest: listed by a manifest row, whose id and label were chosen by the user; it wins
    over a folder or glob listing of the same path (see `_unique_paths`).
    """

    path: str
    item_id: str
    label: str | None = None
    origin: str = ""
    manifest: bool = False


@dataclass(frozen=True)
class Item:
    """One distinct content to analyse, with every source that holds it.

    key: "sha256:<hex>" for readable files; "path:<absolute path>" when the file cannot be
    read or is empty (it has no content to hash, and empty files are not copies of each other).
    problem: why the item cannot be analysed at all, if known before decoding (missing,
    unreadable, empty).
    """

    key: str
    sha256: str | None
    kind: Kind
    size: int
    sources: tuple[Source, ...]
    problem: str | None = None

    @property
    def path(self) -> str:
        return self.sources[0].path

    @property
    def item_id(self) -> str:
        return self.sources[0].item_id

    @property
    def label(self) -> str | None:
        return next((s.label for s in self.sources if s.label), None)


def item_to_dict(item: Item) -> dict:
    """Plain data for sending an item to another process."""
    return {**asdict(item), "sources": [asdict(s) for s in item.sources]}


def item_from_dict(data: dict) -> Item:
    return Item(**{**data, "sources": tuple(Source(**s) for s in data["sources"])})


@dataclass(frozen=True)
class Discovery:
    """What the arguments expanded to, plus notes for the user (skipped loops, empty folders)."""

    items: tuple[Item, ...]
    warnings: tuple[str, ...] = ()


# Above this many bytes of input, say that hashing is under way (it reads every byte once).
HASH_NOTICE_BYTES = 256 * 2**20


def discover(arguments: Sequence[str], exclude: Path | None = None,
             log: Callable[[str], None] | None = None) -> Discovery:
    """Expand, hash and group the inputs; refuses when nothing at all was found.

    exclude: the run's output folder; files inside it (thumbnails, reports, summaries) are
    never inputs, even when the output folder sits inside an input folder.
    log: told when hashing will take a while (large inputs), before it starts.
    """
    sources, warnings = collect_sources(arguments, exclude)
    if not sources:
        raise InputError(f"no input files found in {', '.join(arguments)}" + _why(warnings))
    total = sum(_size(s.path) for s in sources)
    if log is not None and total > HASH_NOTICE_BYTES:
        log(f"hashing {len(sources)} input files ({total / 2**30:.1f} GiB) to find copies and finished items...")
    return Discovery(tuple(build_items(sources)), tuple(warnings))


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:  # reported with its reason when the file is inspected
        return 0


def _why(warnings: list[str]) -> str:
    return f" ({'; '.join(warnings)})" if warnings else ""


# -- expanding arguments ---------------------------------------------------------------------


def collect_sources(arguments: Sequence[str], exclude: Path | None = None) -> tuple[list[Source], list[str]]:
    """One Source per file named by the arguments, in argument order, each path once.

    A manifest given as an argument is not also an input when a folder walk finds it, and
    nothing inside `exclude` (the output folder) is an input.
    """
    sources: list[Source] = []
    warnings: list[str] = []
    for arg in arguments:
        found, notes = _expand(arg)
        sources += found
        warnings += notes
    manifests = {_absolute(Path(a).expanduser()) for a in arguments if _is_manifest(Path(a).expanduser())}
    sources = [s for s in sources if s.path not in manifests]
    if exclude is not None:
        sources, notes = _outside(sources, exclude)
        warnings += notes
    unique, notes = _unique_paths(sources)
    return unique, warnings + notes


def _is_manifest(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES


def _outside(sources: list[Source], folder: Path) -> tuple[list[Source], list[str]]:
    """The sources that are not inside `folder` (symlinks resolved), and a note if some were."""
    root = os.path.realpath(folder)
    outside = [s for s in sources if os.path.commonpath([root, os.path.realpath(s.path)]) != root]
    if len(outside) == len(sources):
        return sources, []
    skipped = len(sources) - len(outside)
    return outside, [f"{skipped} file(s) inside the output folder {folder} skipped (the run's own outputs)"]


def _expand(arg: str) -> tuple[list[Source], list[str]]:
    path = Path(arg).expanduser()
    if path.is_dir():
        found, notes = walk_folder(path)
        return found, notes + ([f"folder {arg} holds no files"] if not found else [])
    if _is_manifest(path):
        return read_manifest(path), []
    if path.exists() or os.path.islink(path):
        return [Source(_absolute(path), path.name, origin=arg)], []
    if _GLOB_CHARS & set(arg):
        return _expand_glob(arg)
    raise InputError(f"input not found: {arg}")


def _expand_glob(pattern: str) -> tuple[list[Source], list[str]]:
    matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
    sources: list[Source] = []
    notes: list[str] = []
    for match in matches:
        if Path(match).is_dir():
            found, more = _expand(match)
            sources, notes = sources + found, notes + more
        else:
            sources.append(Source(_absolute(Path(match)), Path(match).name, origin=pattern))
    if not matches:
        notes.append(f"pattern {pattern} matches no file")
    return sources, notes


def walk_folder(root: Path) -> tuple[list[Source], list[str]]:
    """Files under `root`, recursively and sorted, following symlinks but never in a loop.

    Hidden files and folders (name starting with ".") are skipped: they are tool metadata
    (.DS_Store, .git), not inputs. Item ids are paths relative to `root`.
    """
    sources: list[Source] = []
    notes: list[str] = []
    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True, onerror=lambda e: notes.append(_walk_error(e))):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            notes.append(f"symlink loop skipped at {folder} (a folder already listed)")
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            full = Path(folder) / name
            sources.append(Source(_absolute(full), full.relative_to(root).as_posix(), origin=str(root)))
    return sources, notes


def _walk_error(exc: OSError) -> str:
    return f"cannot list {exc.filename}: {exc.strerror or exc}"


def _absolute(path: Path) -> str:
    """Absolute, with `..` resolved, but a symlink's own name kept (it is what the user sees)."""
    return os.path.normpath(os.path.abspath(path))


def _unique_paths(sources: Iterable[Source]) -> tuple[list[Source], list[str]]:
    """Each path once, where it was first listed. A manifest row's id and label win over a
    folder or glob listing of the same file (`photos/ photos/labels.csv`); between two manifest
    rows the first wins, and a conflicting label is reported."""
    kept: dict[str, Source] = {}
    notes = []
    for source in sources:
        first = kept.get(source.path)
        if first is None or (source.manifest and not first.manifest):
            kept[source.path] = source  # a dict keeps the first position on reassignment
        elif source.manifest and source.label != first.label:
            notes.append(f"{source.path} is listed with label {first.label!r} in {first.origin} and "
                         f"{source.label!r} in {source.origin}; keeping {first.label!r}")
    return list(kept.values()), notes


# -- manifests -------------------------------------------------------------------------------


def read_manifest(path: Path) -> list[Source]:
    """Rows of a CSV (header row) or JSONL manifest: `path`, optional `id` and `label`.

    Relative paths are taken from the manifest's folder, so a manifest travels with its data.
    """
    out = []
    for number, row in _manifest_rows(path):
        where = f"{path}:{number}"
        value = _text(row, "path", where)
        if not value:
            raise InputError(f"{where}: empty 'path'")
        if "\0" in value:
            raise InputError(f"{where}: 'path' contains a NUL character")
        full = Path(value).expanduser()
        full = full if full.is_absolute() else path.parent / full
        item_id = _text(row, "id", where) or value
        label = _text(row, "label", where) or None
        out.append(Source(_absolute(full), item_id, label, origin=str(path), manifest=True))
    return out


def _text(row: dict, column: str, where: str) -> str:
    """A cell as stripped text; JSON numbers are fine (id 7, label 1), lists and objects are not."""
    value = row.get(column)
    if value is None:
        return ""
    if isinstance(value, (dict, list, bool)):
        raise InputError(f"{where}: '{column}' must be text or a number, not {json.dumps(value)[:60]}")
    return str(value).strip()


def _manifest_rows(path: Path) -> list[tuple[int, dict]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read manifest {path}: not UTF-8 text (byte {exc.start}); "
                         "save it as UTF-8") from None
    except OSError as exc:
        raise InputError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".csv":
        return _csv_rows(path, text)
    return _jsonl_rows(path, text)


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    """(line number, row) of each row that is not blank; a row of empty cells (",,", as
    spreadsheets export trailing rows) is blank too."""
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    if "path" not in columns:
        raise InputError(f"manifest {path} has no 'path' column (columns: {', '.join(columns) or 'none'})")
    reader.fieldnames = columns
    rows = [(reader.line_num, row) for row in reader]
    return [(n, row) for n, row in rows if any(str(v or "").strip() for k, v in row.items() if k is not None)]


def _delimiter(text: str) -> str:
    """Comma, or the semicolon or tab that spreadsheets in some locales write: whichever
    splits the header line into a 'path' column."""
    header = text.split("\n", 1)[0]
    for sep in (",", ";", "\t"):
        if "path" in (cell.strip().strip('"').strip().lower() for cell in header.split(sep)):
            return sep
    return ","


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or "path" not in row:
            raise InputError(f"{path}:{number}: expected an object with a 'path' field")
        rows.append((number, row))
    return rows


# -- hashing and grouping ----------------------------------------------------------------------


def build_items(sources: Sequence[Source]) -> list[Item]:
    """Hash and sniff each source; sources with the same content become one item."""
    by_key: dict[str, Item] = {}
    for source in sources:
        item = _inspect(source)
        known = by_key.get(item.key)
        by_key[item.key] = item if known is None else _merge(known, source)
    return list(by_key.values())


def _merge(item: Item, source: Source) -> Item:
    return Item(item.key, item.sha256, item.kind, item.size, (*item.sources, source), item.problem)


def _inspect(source: Source) -> Item:
    """Content hash and kind of one file, or the reason it cannot be read.

    An empty file is keyed by its path: empty files share a hash but are not copies of one
    another (each is its own mistake, to be reported under its own name).
    """
    from ..media import sniff_kind

    path = Path(source.path)
    try:
        if not path.exists():
            raise InputError(_missing(path))
        if not path.is_file():
            raise InputError(f"{path}: not a regular file")
        digest, size = file_sha256(path)
        if not size:
            return Item(f"path:{source.path}", None, "other", 0, (source,), f"{path}: empty file (0 bytes)")
        kind = sniff_kind(path)
    except InputError as exc:
        return Item(f"path:{source.path}", None, "unreadable", 0, (source,), str(exc))
    return Item(f"sha256:{digest}", digest, kind, size, (source,))


def _missing(path: Path) -> str:
    if not os.path.islink(path):
        return f"{path}: no such file"
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{path}: symlink loop (the link leads back to itself)"
    return f"{path}: broken symlink (its target does not exist)"


def file_sha256(path: Path) -> tuple[str, int]:
    """SHA-256 of the file's bytes, read in chunks so videos never sit in memory whole."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return digest.hexdigest(), size
