"""Meso4 (Afchar et al., 2018) as DeepfakeBench trains and tests it (`meso4_best.pth`).

DeepfakeBench's version has quirks that its checkpoint depends on, kept here: ReLU comes
*before* BatchNorm, the first BatchNorm (8 channels) is applied after both of the first two
convolutions and the second (16 channels) after both of the last two, and the classifier is
Dropout -> Linear(1024, 16) -> LeakyReLU(0.1) -> Dropout -> Linear(16, 2). Input [B, 3, 256, 256].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Meso4(nn.Module):
    def __init__(self, num_classes: int = 2, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 5, padding=2, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.conv3 = nn.Conv2d(8, 16, 5, padding=2, bias=False)
        self.conv4 = nn.Conv2d(16, 16, 5, padding=2, bias=False)
        self.dropout = nn.Dropout(0.5)  # identity in eval mode (the original uses Dropout2d on 2-D inputs: the same)
        self.fc1 = nn.Linear(16 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """[B, 3, 256, 256] -> [B, 1024]."""
        pool2, pool4 = nn.functional.max_pool2d, nn.functional.max_pool2d
        x = pool2(self.bn1(torch.relu(self.conv1(x))), 2)
        x = pool2(self.bn1(torch.relu(self.conv2(x))), 2)
        x = pool2(self.bn2(torch.relu(self.conv3(x))), 2)
        x = pool4(self.bn2(torch.relu(self.conv4(x))), 4)
        return x.flatten(1)

    def classifier(self, features: Tensor) -> Tensor:
        x = nn.functional.leaky_relu(self.fc1(self.dropout(features)), 0.1)
        return self.fc2(self.dropout(x))


class Meso4Detector(nn.Module):
    """The detector wrapper: its only child is `backbone`, as in the checkpoint's keys."""

    def __init__(self):
        super().__init__()
        self.backbone = Meso4()

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone.classifier(self.backbone.features(x))


def build(variant: str = "full") -> nn.Module:
    return Meso4Detector()
