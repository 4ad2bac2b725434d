"""Write a public-domain sample face (scikit-image's astronaut) to a temp file and print its path.

Used by the quick start so that a fresh clone can run the demo without any image of its own.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def sample_face_path() -> Path:
    from PIL import Image

    try:
        from skimage import data
    except ImportError as exc:  # scikit-image comes with the dev/faces extras
        raise SystemExit("the sample image needs scikit-image: pip install scikit-image") from exc
    path = Path(tempfile.gettempdir()) / "ffaa_sample_astronaut.png"
    if not path.exists():
        Image.fromarray(data.astronaut()).save(path)
    return path


if __name__ == "__main__":
    print(sample_face_path())
