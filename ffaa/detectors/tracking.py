"""Faces linked across the sampled frames of a video, so that each person gets one verdict.

Faces are detected on some frames (the "detection frames"); each detection joins the active
track whose last box overlaps it most (IoU at least `min_iou`), or — across the longer gaps
between a video's segments — whose last box is close and of similar size. A track that misses
`max_missed` detection frames in a row ends; a face that comes back later starts a new track.
Between two detections of a track, the boxes of the frames in between are interpolated
linearly, so clip detectors get a crop of the same face on every consecutive frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..types import FaceBox


def iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    w = min(a.right, b.right) - max(a.left, b.left)
    h = min(a.bottom, b.bottom) - max(a.top, b.top)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (a.width * a.height + b.width * b.height - inter)


def near(a: FaceBox, b: FaceBox) -> bool:
    """Centres within 3/4 of a face and sides within a factor 1.5: the same face after a gap
    (two people side by side are at least a face apart)."""
    side = (max(a.width, a.height) + max(b.width, b.height)) / 2
    dx = (a.left + a.right - b.left - b.right) / 2
    dy = (a.top + a.bottom - b.top - b.bottom) / 2
    ratio = max(a.width, 1) / max(b.width, 1)
    return (dx * dx + dy * dy) ** 0.5 < 0.75 * side and 1 / 1.5 <= ratio <= 1.5


@dataclass
class Track:
    """One face over time: its box at each detection frame (keyed by frame position)."""

    track_id: int
    boxes: dict[int, FaceBox] = field(default_factory=dict)
    missed: int = 0

    @property
    def last(self) -> FaceBox:
        return self.boxes[max(self.boxes)]

    def box_at(self, position: int, lo: int, hi: int) -> FaceBox | None:
        """The box at `position`, interpolated between this track's detections within
        [lo, hi] (a segment), held constant before the first and after the last."""
        known = sorted(p for p in self.boxes if lo <= p <= hi)
        if not known:
            return None
        before = [p for p in known if p <= position]
        after = [p for p in known if p >= position]
        if not before:
            return self.boxes[after[0]]
        if not after:
            return self.boxes[before[-1]]
        p0, p1 = before[-1], after[0]
        if p0 == p1:
            return self.boxes[p0]
        return _lerp(self.boxes[p0], self.boxes[p1], (position - p0) / (p1 - p0))


def _lerp(a: FaceBox, b: FaceBox, t: float) -> FaceBox:
    def mix(x: int, y: int) -> int:
        return round(x + (y - x) * t)

    return FaceBox(mix(a.left, b.left), mix(a.top, b.top), mix(a.right, b.right), mix(a.bottom, b.bottom),
                   detector=a.detector)


def link(detections: Sequence[tuple[int, Sequence[FaceBox], bool]], min_iou: float = 0.3,
         max_missed: int = 2) -> list[Track]:
    """Tracks from `(frame position, boxes, after_gap)` in time order; `after_gap` marks the
    first detection frame of a new segment, where `near` may link faces that moved."""
    tracks: list[Track] = []
    active: list[Track] = []
    for position, boxes, after_gap in detections:
        unmatched = list(boxes)
        for track, box in _match(active, unmatched, min_iou, after_gap):
            track.boxes[position] = box
            track.missed = -1  # reset below
            unmatched.remove(box)
        for track in active:
            track.missed += 1
        for box in unmatched:
            track = Track(len(tracks) + 1, {position: box})
            tracks.append(track)
            active.append(track)
        active = [t for t in active if t.missed <= max_missed]
    return tracks


def _match(active: list[Track], boxes: list[FaceBox], min_iou: float, after_gap: bool) -> list[tuple[Track, FaceBox]]:
    """Greedy one-to-one matching, best overlap first."""
    pairs = []
    for track in active:
        for box in boxes:
            score = iou(track.last, box)
            if score < min_iou and after_gap and near(track.last, box):
                score = min_iou  # a weak but acceptable link across a gap
            if score >= min_iou:
                pairs.append((score, track.track_id, track, box))
    pairs.sort(key=lambda p: (-p[0], p[1]))
    used_tracks: set[int] = set()
    used_boxes: set[int] = set()
    matches = []
    for _, tid, track, box in pairs:
        if tid in used_tracks or id(box) in used_boxes:
            continue
        used_tracks.add(tid)
        used_boxes.add(id(box))
        matches.append((track, box))
    return matches
