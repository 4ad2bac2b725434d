"""Match a report's image path to a ground-truth id.

Ids and paths are compared component by component after turning backslashes into slashes and
dropping empty and "." components; letter case matters. The rule, in order:

1. the id is a trailing run of the path's components (label `DPF/imgs/1.png` matches report
   path `/data/bench/DPF/imgs/1.png`, and label `1.png` matches it too); the longest such id wins;
2. otherwise the path is a trailing run of exactly one id (a relative report path `imgs/1.png`
   matches label `DPF/imgs/1.png` when no other set has an `imgs/1.png`); several such ids make
   the path *ambiguous*, and it is not matched;
3. otherwise the path is *unmatched*.

A bare file name is never matched to an id in another folder (`/flat/1.png` does not match
`DPF/imgs/1.png`): a wrong match would silently mislabel an image, a missed one is counted.

The ids `ffaa.eval.texts` gives a video frame (`clip.mp4#frame3`) or one face of several
(`a.png#face1`, `clip.mp4#frame3#face1`) name a part of a file: `PathIndex.match_item` matches
such an id itself, else the file it is part of, so the label of `clip.mp4` is every frame's.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal


def path_parts(path: str) -> tuple[str, ...]:
    """Path components: '/'-separated, backslashes read as '/', empty and '.' parts dropped."""
    return tuple(p for p in path.replace("\\", "/").split("/") if p not in ("", "."))


def normalize_id(path: str) -> str:
    return "/".join(path_parts(path))


# The part suffixes of an item id, at its end only: `a#face1.png` is a file name, not a face.
_PART_SUFFIX = re.compile(r"(?:#frame\d+)?(?:#face\d+)?\Z")


def item_path(item_id: str) -> str:
    """The file an item id names: `clip.mp4#frame3#face1` -> `clip.mp4`; a path stays as it is."""
    found = _PART_SUFFIX.search(item_id)
    return item_id[: found.start()] if found and found.start() > 0 else item_id


@dataclass(frozen=True)
class Match:
    """The id a path matched (`how` says by which rule), or why it matched none."""

    id: str | None
    how: Literal["id_suffix", "path_suffix", "ambiguous", "unmatched"]
    candidates: tuple[str, ...] = ()


class PathIndex:
    """Looks ids up by the matching rule above."""

    def __init__(self, ids: Iterable[str]):
        self._full: dict[tuple[str, ...], str] = {}
        self._by_suffix: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for original in ids:
            parts = path_parts(original)
            if not parts:
                continue
            self._full[parts] = original
            for k in range(1, len(parts) + 1):
                self._by_suffix[parts[-k:]].append(original)

    def match(self, path: str) -> Match:
        parts = path_parts(path)
        for k in range(len(parts), 0, -1):
            found = self._full.get(parts[-k:])
            if found is not None:
                return Match(found, "id_suffix")
        owners = self._by_suffix.get(parts, []) if parts else []
        if len(owners) == 1:
            return Match(owners[0], "path_suffix")
        if len(owners) > 1:
            return Match(None, "ambiguous", tuple(sorted(owners)[:5]))
        return Match(None, "unmatched")

    def match_item(self, item_id: str) -> Match:
        """`match` for an item id that may name a frame or a face: the id itself first (an id
        given for that very frame or face wins, and several of them make it ambiguous), else the
        file it is part of."""
        hit = self.match(item_id)
        path = item_path(item_id)
        if hit.how != "unmatched" or path == item_id:
            return hit
        return self.match(path)
