"""Which detectors to run, with which weights and rule: `--detectors` and `--detectors-config`.

    --detectors xception=/w/xception.pth,srm=/w/srm_best.pth,clip_large=/w/clip_large.pth
    --detectors demo                   # the talk's five, random weights (noise), to try the flow
    --detectors-config detectors.yaml

The config file (YAML or JSON):

    detectors:
      xception: /w/xception.pth
      srm: {weights: /w/srm_best.pth, threshold: 0.6}
    threshold: 0.7        # the talk's rule (default)
    tie: real             # real | fake
    ffaa_votes: false     # FFAA's verdict as one more voter
    still_clips: false    # clip detectors on still images: a clip of repeated frames
    device: auto
    dtype: fp32           # fp32 | bf16 | fp16

No torch here: the CLI parses and checks this before anything heavy loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import FfaaError
from ..options import DETECTOR_DTYPES
from ..types import Verdict
from .registry import SPECS, TALK_ENSEMBLE
from .vote import DEFAULT_THRESHOLD, VoteRule

DEMO = "demo"


@dataclass(frozen=True)
class DetectorChoice:
    """One detector to run: its registry name and its weights (a file, or DEMO)."""

    name: str
    weights: str


@dataclass(frozen=True)
class DetectorsConfig:
    """The picklable recipe of a detector set (Ray workers build theirs from it)."""

    choices: tuple[DetectorChoice, ...]
    rule: VoteRule = field(default_factory=VoteRule)
    device: str = "auto"
    dtype: str = "fp32"
    batch_size: int = 8
    still_clips: bool = False
    segments: int = 4
    frames_per_segment: int = 4

    @property
    def demo(self) -> bool:
        return any(c.weights == DEMO for c in self.choices)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.choices)


def parse_detectors(text: str) -> tuple[DetectorChoice, ...]:
    """`name=path,name=path` (or `demo`, or `name=demo`) -> choices; FfaaError naming the
    problem (unknown name, missing '=', repeated name)."""
    text = text.strip()
    if text == DEMO:
        return tuple(DetectorChoice(n, DEMO) for n in TALK_ENSEMBLE)
    choices: list[DetectorChoice] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weights = part.partition("=")
        name, weights = name.strip(), weights.strip()
        if not sep or not weights:
            raise FfaaError(f"--detectors: {part!r} is not NAME=PATH (known names: {', '.join(SPECS)})")
        choices.append(_choice(name, weights, "--detectors"))
    return _unique(choices, "--detectors")


def _choice(name: str, weights: str, where: str) -> DetectorChoice:
    if name not in SPECS:
        raise FfaaError(f"{where}: unknown detector {name!r}; known: {', '.join(SPECS)}")
    if weights != DEMO:
        path = Path(weights).expanduser()
        if not path.is_file():
            from .registry import download_hint

            raise FfaaError(f"{where}: {name} weights not found at {path}; {download_hint(SPECS[name])}")
        weights = str(path)
    return DetectorChoice(name, weights)


def _unique(choices: list[DetectorChoice], where: str) -> tuple[DetectorChoice, ...]:
    if not choices:
        raise FfaaError(f"{where}: no detector given")
    seen: set[str] = set()
    for c in choices:
        if c.name in seen:
            raise FfaaError(f"{where}: {c.name} is given twice")
        seen.add(c.name)
    return tuple(choices)


def load_config_file(path: str | Path) -> DetectorsConfig:
    """A detectors config file -> DetectorsConfig; FfaaError with the file and the problem."""
    p = Path(path).expanduser()
    where = str(p)
    data = _read_mapping(p)
    entries = data.get("detectors")
    if not isinstance(entries, dict) or not entries:
        raise FfaaError(f"{where}: 'detectors' must map detector names to weights")
    choices, thresholds = [], []
    for name, value in entries.items():
        if isinstance(value, dict):
            weights, threshold = value.get("weights"), value.get("threshold")
        else:
            weights, threshold = value, None
        if not isinstance(weights, str):
            raise FfaaError(f"{where}: detector {name!r} needs weights (a path, or 'demo')")
        choices.append(_choice(str(name), weights, where))
        if threshold is not None:
            thresholds.append((str(name), _number(threshold, f"{where}: threshold of {name}")))
    base = DetectorsConfig(_unique(choices, where))
    rule = _rule(data, tuple(thresholds), where)
    return replace(base, rule=rule, device=str(data.get("device", "auto")), dtype=_dtype(data, where),
                   still_clips=bool(data.get("still_clips", False)))


def _read_mapping(p: Path) -> dict[str, Any]:
    if not p.is_file():
        raise FfaaError(f"detectors config not found: {p}")
    import yaml

    try:
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FfaaError(f"{p}: cannot read the detectors config ({exc})") from None
    except yaml.YAMLError as exc:  # the parser's own message, first line
        raise FfaaError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise FfaaError(f"{p}: expected a mapping with a 'detectors' entry")
    return data


def _number(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise FfaaError(f"{where} must be a number, got {value!r}") from None


def _rule(data: dict[str, Any], thresholds: tuple[tuple[str, float], ...], where: str) -> VoteRule:
    tie = str(data.get("tie", "real")).lower()
    if tie not in ("real", "fake"):
        raise FfaaError(f"{where}: tie must be real or fake, got {tie!r}")
    try:
        return VoteRule(threshold=_number(data.get("threshold", DEFAULT_THRESHOLD), f"{where}: threshold"),
                        thresholds=thresholds, tie=Verdict(tie), ffaa_votes=bool(data.get("ffaa_votes", False)))
    except ValueError as exc:
        raise FfaaError(f"{where}: {exc}") from None


def _dtype(data: dict[str, Any], where: str) -> str:
    dtype = str(data.get("dtype", "fp32"))
    if dtype not in DETECTOR_DTYPES:
        raise FfaaError(f"{where}: dtype must be one of {', '.join(DETECTOR_DTYPES)}, got {dtype!r}")
    return dtype
