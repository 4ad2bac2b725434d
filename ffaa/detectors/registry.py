"""The classic detectors ffaa knows, as data: what each architecture expects at test time and
where its released checkpoint comes from.

Nothing here imports torch. `DetectorSpec.builder` names the function that builds the network
("module:function"), imported only when a detector is loaded, so `ffaa detect --help` and the
registry listing stay light.

The facts (resolution, normalisation, clip length, output head, key layout, loader rules) are
the original repositories' test-time settings: DeepfakeBench (SCLBD/DeepfakeBench), DF40
(YZY-stack/DF40) and StA4Deepfake (YZY-stack/StA4Deepfake).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

InputKind = Literal["frame", "clip"]
OutputKind = Literal["softmax", "sigmoid"]
# How the original test script turns a checkpoint file into the model's state dict:
#   deepfakebench: the file is the detector's state_dict, loaded strictly, no renaming;
#   df40: unwrap 'state_dict', strip 'module.' anywhere, 'base_model.' -> 'backbone.',
#         'classifier.' -> 'head.', then strict;
#   sta: strip 'module.' anywhere (DDP training), then strict.
LoaderKind = Literal["deepfakebench", "df40", "sta"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class CheckpointSource:
    """One released checkpoint file of a detector."""

    origin: str  # "DeepfakeBench", "DF40", "StA4Deepfake"
    file_name: str
    where: str  # a page a user can open to download it
    size: str  # as published, for the "what to download" message
    loader: LoaderKind


@dataclass(frozen=True)
class DetectorSpec:
    """Test-time facts of one detector architecture.

    input_kind "frame": the network takes [B, 3, R, R] face crops; "clip": [B, T, 3, R, R]
    with T = clip_len consecutive frames. output "softmax": two logits (real, fake) and
    P(fake) = softmax[:, 1]; "sigmoid": one logit and P(fake) = sigmoid(z).
    variants: the builder's variants besides "full" (tiny test variants of the same code).
    """

    name: str
    title: str  # as the talk's table names it
    builder: str  # "module:function" returning the torch.nn.Module, given a variant
    input_kind: InputKind
    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output: OutputKind
    checkpoints: tuple[CheckpointSource, ...]
    clip_len: int = 1
    variants: tuple[str, ...] = ()
    in_talk: bool = False  # one of the five detectors of the talk's ensemble
    notes: str = ""

    @property
    def origin(self) -> str:
        return self.checkpoints[0].origin


_DFB_RELEASE = "https://github.com/SCLBD/DeepfakeBench/releases/tag/v1.0.1"
_DF40_DRIVE = "https://drive.google.com/drive/folders/1HDgIOutGw3jsFXwvSQYeDoVPAzgfYbyr (DF40 README, 'Checkpoints')"
_STA_DRIVE = "https://drive.google.com/file/d/1WdmyPWKSR1kFE5dIsQvbb0MOGBUqUyjN (StA4Deepfake README)"

SPECS: dict[str, DetectorSpec] = {
    spec.name: spec
    for spec in (
        DetectorSpec(
            name="clip_large", title="DF40 - CLIP Large", builder="ffaa.detectors.clip_large:build",
            input_kind="frame", resolution=224, mean=HALF, std=HALF, output="softmax",
            checkpoints=(CheckpointSource("DF40", "clip_large.pth", _DF40_DRIVE, "1.13 GiB", "df40"),),
            variants=("tiny",), in_talk=True,
            notes="CLIP ViT-L/14 vision tower + Linear(1024, 2); normalised with mean = std = 0.5, "
                  "not CLIP's statistics (DF40's clip.yaml)",
        ),
        DetectorSpec(
            name="xception", title="DF40 - Xception", builder="ffaa.detectors.xception:build",
            input_kind="frame", resolution=256, mean=HALF, std=HALF, output="softmax",
            checkpoints=(
                CheckpointSource("DF40", "xception.pth", _DF40_DRIVE, "84 MB", "df40"),
                CheckpointSource("DeepfakeBench", "xception_best.pth", _DFB_RELEASE, "84 MB", "deepfakebench"),
            ),
            in_talk=True,
        ),
        DetectorSpec(
            name="i3d", title="DF40 - i3d", builder="ffaa.detectors.i3d:build",
            input_kind="clip", clip_len=16, resolution=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
            output="sigmoid",
            checkpoints=(CheckpointSource("DF40", "i3d.pth", _DF40_DRIVE, "104 MB", "df40"),),
            in_talk=True,
            notes="SlowFast's ResNet-50 I3D over 16-frame clips, one sigmoid output; DF40 normalises "
                  "with ImageNet statistics",
        ),
        DetectorSpec(
            name="sta", title="StA4Deepfake", builder="ffaa.detectors.sta:build",
            input_kind="clip", clip_len=8, resolution=224, mean=CLIP_MEAN, std=CLIP_STD, output="softmax",
            checkpoints=(CheckpointSource("StA4Deepfake", "sta_best.pth", _STA_DRIVE, "856 MB", "sta"),),
            variants=("reduced_2_layers",), in_talk=True,
            notes="14 CLIP-L/14 blocks with spatiotemporal adapters over 8-frame clips",
        ),
        DetectorSpec(
            name="srm", title="SRM", builder="ffaa.detectors.srm:build",
            input_kind="frame", resolution=256, mean=HALF, std=HALF, output="softmax",
            checkpoints=(CheckpointSource("DeepfakeBench", "srm_best.pth", _DFB_RELEASE, "212 MB", "deepfakebench"),),
            in_talk=True,
            notes="trained with AM-Softmax (logits x30, margin 0.45) but tested with a plain softmax, "
                  "so its probabilities sit close to 0.5: a 0.70 threshold rarely fires",
        ),
        DetectorSpec(
            name="meso4", title="Meso4", builder="ffaa.detectors.meso4:build",
            input_kind="frame", resolution=256, mean=HALF, std=HALF, output="softmax",
            checkpoints=(CheckpointSource("DeepfakeBench", "meso4_best.pth", _DFB_RELEASE, "0.1 MB", "deepfakebench"),),
        ),
        DetectorSpec(
            name="efficientnetb4", title="EfficientNet-B4", builder="ffaa.detectors.efficientnetb4:build",
            input_kind="frame", resolution=256, mean=HALF, std=HALF, output="softmax",
            checkpoints=(CheckpointSource("DeepfakeBench", "effnb4_best.pth", _DFB_RELEASE, "71 MB", "deepfakebench"),),
        ),
        DetectorSpec(
            name="f3net", title="F3Net", builder="ffaa.detectors.f3net:build",
            input_kind="frame", resolution=256, mean=HALF, std=HALF, output="softmax",
            checkpoints=(CheckpointSource("DeepfakeBench", "f3net_best.pth", _DFB_RELEASE, "90 MB", "deepfakebench"),),
        ),
    )
}

# The talk's ensemble, in the order of its table.
TALK_ENSEMBLE = ("clip_large", "xception", "i3d", "sta", "srm")


def get_spec(name: str) -> DetectorSpec:
    """The spec of a known detector; a ValueError naming the known ones otherwise."""
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(SPECS)}") from None


def download_hint(spec: DetectorSpec) -> str:
    """What to download, and from where, for a detector whose weights are missing."""
    files = "; ".join(f"{c.origin} {c.file_name} ({c.size}) from {c.where}" for c in spec.checkpoints)
    return f"{spec.name} needs its released weights: {files}"
