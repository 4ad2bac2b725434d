"""The classic deepfake detectors of DeepfakeBench, DF40 and StA4Deepfake, from their released
checkpoints, beside FFAA.

`registry` (no torch) says what each detector is and where its weights come from; `base.Detector`
loads one and turns face crops or clips into P(fake); the architecture modules
(`xception`, `srm`, `clip_large`, `i3d`, `sta`, `meso4`, `efficientnetb4`, `f3net`) build
networks whose state dicts are the originals' key for key.
"""

from .registry import SPECS, TALK_ENSEMBLE, CheckpointSource, DetectorSpec, get_spec

__all__ = ["SPECS", "TALK_ENSEMBLE", "CheckpointSource", "DetectorSpec", "get_spec"]
