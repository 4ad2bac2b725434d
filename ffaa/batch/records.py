"""The records of `reports.jsonl`: what each line holds, and how an item's lines form a block.

Every item gets one *block* of lines, written together: its face reports (or an error), a
video aggregate for videos, and last an `item` record. The `item` record is the commit mark:
an item counts as done only when it is in the file, so a block cut short by a crash is
dropped and redone on resume. A `run` record (settings of one invocation) is a block of its
own.

Face records are `report_to_dict` output (schema `ffaa.report/2`, readable by
`report_from_dict` and `ffaa eval`) plus `record: "face"` and a `batch` object; the other
records have schema `ffaa.batch/1`. Every record's `batch` object names the item: its
content hash, id(s), path(s), label, kind and mode ("full" or "triage").
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..report import report_to_dict
from ..types import ForensicReport
from .inputs import Item

BATCH_SCHEMA = "ffaa.batch/1"
FINAL_RECORDS = ("item", "run")
Mode = Literal["full", "triage"]
Status = Literal["ok", "partial", "undecided", "error"]


@dataclass(frozen=True)
class Block:
    """One item's records, in write order (the last is its `item` record), and its thumbnails.

    thumbs maps a file name under DIR/thumbs/ to JPEG bytes; they are written before the
    records, so a committed item always has its pictures.
    """

    records: tuple[dict[str, Any], ...]
    thumbs: tuple[tuple[str, bytes], ...] = ()

    @property
    def final(self) -> dict[str, Any]:
        return self.records[-1]

    @property
    def key(self) -> tuple[str, str]:
        """(item key, mode): what makes this block's item done."""
        batch = self.final["batch"]
        return batch["key"], batch["mode"]

    def encode(self) -> bytes:
        """The block as JSONL bytes: one line per record, written by one append.

        ASCII-escaped, because a file name need not be valid UTF-8 (Python keeps its bad bytes
        as lone surrogates, which only a JSON escape can carry).
        """
        return "".join(json.dumps(r) + "\n" for r in self.records).encode("ascii")

    def to_json(self) -> str:
        """For transport between processes (Ray): records plus base64 thumbnails."""
        thumbs = [[name, base64.b64encode(data).decode("ascii")] for name, data in self.thumbs]
        return json.dumps({"records": self.records, "thumbs": thumbs})

    @classmethod
    def from_json(cls, text: str) -> Block:
        data = json.loads(text)
        thumbs = tuple((name, base64.b64decode(b64)) for name, b64 in data["thumbs"])
        return cls(tuple(data["records"]), thumbs)


def item_fields(item: Item, mode: Mode) -> dict[str, Any]:
    """The `batch` object that ties a record to its item."""
    return {
        "key": item.key,
        "sha256": item.sha256,
        "kind": item.kind,
        "item_id": item.item_id,
        "path": item.path,
        "paths": [s.path for s in item.sources],
        "ids": [s.item_id for s in item.sources],
        "label": item.label,
        "mode": mode,
    }


def face_record(
    report: ForensicReport,
    fields: dict[str, Any],
    *,
    frame_index: int | None = None,
    timestamp: float | None = None,
    crop: str | None = None,
) -> dict[str, Any]:
    """A face report plus where it sits in the batch (video frame, thumbnail file)."""
    batch = {**fields, "frame_index": frame_index, "timestamp": timestamp, "crop": crop}
    return {**report_to_dict(report), "record": "face", "batch": batch}


def error_record(fields: dict[str, Any], stage: str, reason: str, error_type: str) -> dict[str, Any]:
    """Why an item (or a stage of it) failed; `stage` is read, decode, faces, video or generate."""
    return {"schema": BATCH_SCHEMA, "record": "error", "batch": fields,
            "stage": stage, "reason": reason, "error_type": error_type}


def video_record(
    fields: dict[str, Any], aggregate: dict[str, Any], timeline: list[dict[str, Any]], decode: dict[str, Any],
    detectors: dict[str, Any] | None = None, detectors_error: str | None = None,
) -> dict[str, Any]:
    """A video's aggregate verdict, its per-frame timeline, how decoding went, and (with
    --detectors) the classic detectors' face tracks and verdict."""
    record = {"schema": BATCH_SCHEMA, "record": "video", "batch": fields, "aggregate": aggregate,
              "timeline": timeline, "decode": decode, "partial": bool(decode.get("partial"))}
    if detectors is not None or detectors_error is not None:
        record["detectors"] = detectors
        record["detectors_error"] = detectors_error
    return record


def item_record(fields: dict[str, Any], summary: ItemSummary, seconds: float, thumb: str | None) -> dict[str, Any]:
    """The commit mark of an item, with its item-level verdict for quick reading."""
    return {"schema": BATCH_SCHEMA, "record": "item", "batch": fields, **summary.as_dict(),
            "prepare_seconds": round(seconds, 4), "finished": _now(), "thumb": thumb}


def run_record(settings: dict[str, Any]) -> dict[str, Any]:
    return {"schema": BATCH_SCHEMA, "record": "run", "started": _now(), "settings": settings}


@dataclass(frozen=True)
class ItemSummary:
    """An item's outcome. For several faces (or frames) the item is as fake as its fakest."""

    status: Status
    faces: int = 0
    undecided: int = 0
    verdict: str | None = None
    score: float | None = None
    flagged: bool = False
    reason: str | None = None
    stage: str | None = None
    detectors_verdict: str | None = None  # the classic detectors' vote, with --detectors
    detectors_votes: str | None = None  # e.g. "3/5 fake"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
