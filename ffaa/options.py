"""Choices of command-line options, as plain data.

The CLI builds its parser from these without importing the modules that act on them
(`backends/fast.py`, `backends/quant.py`), so those modules are free to import torch at their
top and `ffaa --help` stays light. The modules import their lists from here: one source.
"""

from __future__ import annotations

# --compile: see backends/fast.py ("on" = static cache + torch.compile, "static" = static cache
# only, "off" = plain generate, "auto" = "on" on CUDA when the weight format compiles).
COMPILE_CHOICES = ("auto", "on", "static", "off")

# --quant: "auto" plus the weight formats of backends/quant.py (FORMATS), in the same order.
QUANT_CHOICES = ("auto", "none", "4bit", "8bit", "int4-ao", "int4-hqq", "int8-ao")

# --dtype of the language model ("auto": fp32 on CPU, bf16 on GPUs that have it).
DTYPE_CHOICES = ("auto", "bf16", "fp16", "fp32")

# --detector-dtype of the classic detectors (fp32 reproduces the originals; see detectors/base.py).
DETECTOR_DTYPES = ("fp32", "bf16", "fp16")

# Image files a folder listing picks up (benchmark and MIDS training folders); anything else in
# such a folder is not an image.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
