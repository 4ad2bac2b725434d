"""Small generators of test inputs: images in awkward modes, broken files, short videos, and a
free port for the app's test servers.

Everything is made in the test's tmp_path from numbers, so the tests need no data files.
"""

from __future__ import annotations

import io
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def gradient(width: int = 64, height: int = 48) -> np.ndarray:
    """An RGB uint8 array with distinct values everywhere (so orientation errors show)."""
    y, x = np.mgrid[0:height, 0:width]
    channels = [x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256]
    return np.stack(channels, -1).astype(np.uint8)


def save(image: Image.Image, path: Path, fmt: str | None = None, **params) -> Path:
    image.save(path, format=fmt, **params)
    return path


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def truncated(path: Path, src: Path, keep: float = 0.6) -> Path:
    """A copy of `src` cut after `keep` of its bytes."""
    data = src.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def noisy_rgb(width: int, height: int, seed: int = 0) -> Image.Image:
    """Noise compresses badly, so truncating the file really cuts into pixel data."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims a size but that carries a single tiny compressed row.

    It is enough to test that limits are checked from the header, before decoding.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def with_exif_orientation(image: Image.Image, path: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, format="JPEG", exif=exif, quality=95)
    return path


# -- videos ----------------------------------------------------------------------------------


def write_video(
    path: Path,
    frames: list[np.ndarray],
    fps: int = 10,
    *,
    codec: str = "libx264",
    container: str | None = None,
    faststart: bool = False,
    rotation: int | None = None,
    gop: int | None = None,
) -> Path:
    """Encode RGB uint8 frames with PyAV (libx264 by default; sizes must be even)."""
    import av

    options = {"movflags": "faststart"} if faststart else {}
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format=container, options=options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def counter_frames(count: int, width: int = 96, height: int = 64, seed: int = 0) -> list[np.ndarray]:
    """Frames whose mean brightness encodes their index, with noise so they compress badly."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        base = np.full((height, width, 3), (i * 7) % 200 + 20, np.int16)
        noise = rng.integers(-20, 21, (height, width, 3))
        frame = np.clip(base + noise, 0, 255).astype(np.uint8)
        frame[:8, :16] = 255  # a white mark top-left, to check orientation
        frames.append(frame)
    return frames


def face_frames(face: np.ndarray, count: int, size: tuple[int, int] = (160, 160)) -> list[np.ndarray]:
    """A face pasted on grey, drifting one pixel per frame."""
    width, height = size
    frames = []
    for i in range(count):
        canvas = np.full((height, width, 3), 128, np.uint8)
        y, x = 10, 10 + (i % 20)
        canvas[y : y + face.shape[0], x : x + face.shape[1]] = face[: height - y, : width - x]
        frames.append(canvas)
    return frames


def free_port() -> int:
    """A localhost TCP port that was free just now, so a test server does not clash with another."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
