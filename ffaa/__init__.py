"""ffaa: an explainable face-forgery forensic assistant.

Importing the package is cheap: it pulls in no torch, transformers or gradio. Heavy pieces are
imported by the modules that need them, when they are first used.
"""

from .types import (
    Candidate,
    CandidateScore,
    Decision,
    DecodingSettings,
    FaceBox,
    ForensicAnswer,
    ForensicReport,
    ForgeryType,
    ImageInfo,
    ParseResult,
    Provenance,
    Verdict,
)

__version__ = "0.1.0"

__all__ = [
    "Candidate",
    "CandidateScore",
    "Decision",
    "DecodingSettings",
    "FaceBox",
    "ForensicAnswer",
    "ForensicReport",
    "ForgeryType",
    "ImageInfo",
    "ParseResult",
    "Provenance",
    "Verdict",
    "__version__",
]
