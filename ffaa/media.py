"""Safe image loading: size limits, full decoding, orientation and colour-mode normalisation.

Every image the assistant analyses goes through `load_image` (or `load_image_from_bytes` /
`from_pil`), which returns an RGB Pillow image plus an `ImageInfo` that records what was done
to it. Why so careful:

- a forensic model must never see pixels the file does not contain: truncated files are
  refused rather than padded with grey (Pillow's LOAD_TRUNCATED_IMAGES is never enabled),
  and transparent areas are flattened onto white rather than exposing the colours hidden
  under alpha = 0;
- a face tool has no use for 100-megapixel images, so the limits here are much tighter than
  Pillow's own decompression-bomb guard, and they are checked per call from the header,
  before any pixel is decoded (Pillow's guard is a process-wide global, left untouched);
- conversions that change pixel values (16-bit to 8-bit, CMYK to RGB, EXIF rotation, first
  frame of an animation) are noted in `ImageInfo.notes` so a report can say so.

Only the formats in `SUPPORTED_FORMATS` are opened; the others Pillow knows (EPS runs
Ghostscript, PSD, ICO, ...) are refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps

from .errors import InputError, one_line
from .types import ImageInfo

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "PPM", "AVIF", "HEIF", "JPEG2000")
WHITE = (255, 255, 255)
# What Pillow's plugins raise on malformed data (they do not share one exception class).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error, zlib.error)


@dataclass(frozen=True)
class LoadLimits:
    """Per-call ceilings for an input image; raise them for unusually large scans.

    max_pixels: width x height of the (first) frame, checked from the header before decoding.
    max_side: the longest side in pixels.
    max_bytes: the encoded size (file or upload).
    """

    max_pixels: int = 40_000_000
    max_side: int = 12_000
    max_bytes: int = 50 * 1024 * 1024


@dataclass(frozen=True)
class LoadedImage:
    """A decoded RGB image ready for face detection, and how it was obtained."""

    image: Image.Image
    info: ImageInfo


# -- entry points ----------------------------------------------------------------------------


def load_image(path: str | os.PathLike, limits: LoadLimits | None = None) -> LoadedImage:
    """Read, check and normalise the image file at `path` (see the module docstring)."""
    limits = limits or LoadLimits()
    data = _read_file(Path(path), limits)
    return _decode(data, str(path), limits)


def load_image_from_bytes(
    data: bytes | BinaryIO, *, name: str = "<upload>", limits: LoadLimits | None = None
) -> LoadedImage:
    """Like `load_image` for encoded bytes or a binary file object (web uploads, archives)."""
    limits = limits or LoadLimits()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        data = data.read(limits.max_bytes + 1)
    data = bytes(data)
    if not data:
        raise InputError(f"{name}: empty file (0 bytes)")
    _check_bytes(len(data), name, limits)
    return _decode(data, name, limits)


def from_pil(
    image: Image.Image, *, name: str = "<image>", limits: LoadLimits | None = None
) -> LoadedImage:
    """Normalise an already-open Pillow image (e.g. from a UI widget).

    There are no file bytes to hash, so `sha256` is taken over the size and the normalised
    RGB pixels; a note says so.
    """
    limits = limits or LoadLimits()
    _check_size(image.size, name, limits)
    note = "sha256 of the RGB pixels (no file bytes)"
    loaded = _normalise(_load_first_frame(image, name), name, "", (note,))
    digest = hashlib.sha256(f"{loaded.image.size}:".encode() + loaded.image.tobytes()).hexdigest()
    return replace(loaded, info=replace(loaded.info, sha256=digest))


def sniff_kind(path: str | os.PathLike) -> Literal["image", "video", "other"]:
    """Classify a file by its first bytes (never by its extension), for batch inputs."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        return "other"
    try:
        with path.open("rb") as fh:
            head = fh.read(400)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return sniff_bytes(head)


def sniff_bytes(head: bytes) -> Literal["image", "video", "other"]:
    """`sniff_kind` on the first bytes of a file (a few hundred are enough)."""
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head[:2] == b"BM" and head[6:10] == b"\0\0\0\0":
        return "image"  # BMP: magic, file size, then two reserved zero words
    if head[:3] in (b"P4\n", b"P5\n", b"P6\n", b"P4 ", b"P5 ", b"P6 ") or _is_jp2(head):
        return "image"
    if head[4:8] == b"ftyp":
        return "image" if head[8:12] in _IMAGE_BRANDS else "video"
    if head.startswith(_VIDEO_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"AVI "):
        return "video"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "video"  # QuickTime without an ftyp box
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "video"  # MPEG transport stream: sync byte every 188 bytes
    return "other"


_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
    b"\xff\x4f\xff\x51",  # JPEG 2000 codestream
)
_IMAGE_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1", b"avif", b"avis")
_VIDEO_MAGIC = (
    b"\x1a\x45\xdf\xa3",  # Matroska / WebM
    b"FLV",
    b"\x00\x00\x01\xba",  # MPEG program stream
    b"\x00\x00\x01\xb3",  # MPEG-1/2 elementary video
    b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",  # ASF / WMV
)


def _is_jp2(head: bytes) -> bool:
    return head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n"


# -- reading and decoding --------------------------------------------------------------------


def _read_file(path: Path, limits: LoadLimits) -> bytes:
    """The file's bytes, or an InputError saying why they cannot be used."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; pass an image file (use `ffaa batch` for folders)")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    _check_bytes(size, str(path), limits)
    try:
        return path.read_bytes()
    except PermissionError as exc:
        raise InputError(f"{path}: permission denied; check the file's read permission") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _decode(data: bytes, name: str, limits: LoadLimits) -> LoadedImage:
    """Open from the header, check the limits, then decode the first frame completely."""
    try:
        with warnings.catch_warnings():  # the limits checked below are tighter and say more
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_openable_formats())
    except Image.DecompressionBombError as exc:
        raise InputError(_bomb_message(name, exc, limits)) from exc
    except Image.UnidentifiedImageError as exc:
        raise InputError(_not_an_image(name, data)) from exc
    except _DECODE_ERRORS as exc:
        raise InputError(f"{name}: corrupt image header ({one_line(exc, 200, with_type=False)})") from exc
    _check_size(image.size, name, limits)
    image = _load_first_frame(image, name)
    return _normalise(image, name, hashlib.sha256(data).hexdigest())


def _openable_formats() -> list[str]:
    """SUPPORTED_FORMATS that this Pillow can open (HEIF needs a plugin, for instance)."""
    Image.init()
    return [fmt for fmt in SUPPORTED_FORMATS if fmt in Image.OPEN]


def _bomb_message(name: str, exc: Exception, limits: LoadLimits) -> str:
    """Pillow's own guard fired while reading the header: the image is enormous."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)) / 1e6:.1f} Mpx" if found else "too large"
    return (
        f"{name}: image is {size}, over the limit of {limits.max_pixels / 1e6:.1f} Mpx and over "
        f"Pillow's decompression-bomb guard; refusing to decode it"
    )


def _load_first_frame(image: Image.Image, name: str) -> Image.Image:
    """Decode every pixel of frame 0 now, so truncation is an error here and not later."""
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        image.load()
    except _DECODE_ERRORS as exc:
        reason = one_line(exc, 200, with_type=False)
        raise InputError(f"{name}: cannot decode the image, file truncated or corrupt ({reason})") from exc
    return image


def _not_an_image(name: str, data: bytes) -> str:
    head = data[:512]
    kind = sniff_bytes(head)
    if kind == "video":
        return f"{name}: is a video file, not an image"
    if kind == "image":
        return (
            f"{name}: looks like an image but cannot be opened (truncated, corrupt, or a format "
            "variant this Pillow lacks); convert it to PNG or JPEG"
        )
    what = _describe_other(head)
    return f"{name}: not an image ({what}); supported formats: {', '.join(_openable_formats())}"


def _describe_other(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith(b"%!PS"):
        return "a PostScript file"
    lower = head.lstrip().lower()
    if lower.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if lower.startswith(b"<svg") or b"<svg" in lower[:200]:
        return "an SVG drawing"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unrecognised data"


def _check_bytes(size: int, name: str, limits: LoadLimits) -> None:
    if size > limits.max_bytes:
        raise InputError(
            f"{name}: file is {size / 2**20:.1f} MiB, over the limit of "
            f"{limits.max_bytes / 2**20:.1f} MiB; raise LoadLimits.max_bytes to accept it"
        )


def _check_size(size: tuple[int, int], name: str, limits: LoadLimits) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise InputError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise InputError(
            f"{name}: image is {width}x{height} = {width * height / 1e6:.1f} Mpx, over the limit of "
            f"{limits.max_pixels / 1e6:.1f} Mpx; raise it with --max-pixels (LoadLimits.max_pixels in Python)"
        )
    if max(width, height) > limits.max_side:
        raise InputError(
            f"{name}: image is {width}x{height}, its longest side is over the limit of "
            f"{limits.max_side} px; raise it with LoadLimits(max_side=...)"
        )


# -- normalisation ---------------------------------------------------------------------------


def _normalise(
    image: Image.Image, name: str, sha256: str, extra_notes: tuple[str, ...] = ()
) -> LoadedImage:
    """Orientation, then colour mode; every value-changing step leaves a note."""
    notes = list(extra_notes)
    original_mode, fmt = image.mode, image.format
    notes += _frame_notes(image)
    image, orientation_note = _apply_orientation(image)
    notes += orientation_note
    try:
        rgb, mode_notes = to_rgb(image)
    except (ValueError, OSError) as exc:
        reason = one_line(exc, 200, with_type=False)
        raise InputError(f"{name}: cannot convert colour mode {original_mode} to RGB ({reason})") from exc
    notes += mode_notes
    info = ImageInfo(
        path=name,
        sha256=sha256,
        width=rgb.width,
        height=rgb.height,
        original_mode=original_mode,
        format=fmt,
        notes=tuple(notes),
    )
    return LoadedImage(rgb, info)


def _frame_notes(image: Image.Image) -> list[str]:
    frames = getattr(image, "n_frames", 1)
    if frames <= 1:
        return []
    if image.format == "TIFF":
        return [f"multi-page TIFF: analysed page 1 of {frames}"]
    if image.format == "MPO":
        return [f"multi-picture JPEG: analysed picture 1 of {frames}"]
    return [f"animated {image.format}: analysed frame 1 of {frames}"]


_ORIENTATION_WORDS = {
    2: "mirrored",
    3: "rotated 180°",
    4: "flipped vertically",
    5: "transposed",
    6: "rotated 90° clockwise",
    7: "transversed",
    8: "rotated 90° counter-clockwise",
}


def _apply_orientation(image: Image.Image) -> tuple[Image.Image, list[str]]:
    """Apply the EXIF orientation so faces are upright, as a photo viewer shows them."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a malformed EXIF block must not sink an otherwise good image
        return image, ["EXIF block unreadable; orientation not applied"]
    if orientation not in _ORIENTATION_WORDS:
        return image, []
    turned = ImageOps.exif_transpose(image)
    note = f"EXIF orientation {orientation} applied ({_ORIENTATION_WORDS[orientation]})"
    return turned, [note]


def to_rgb(image: Image.Image) -> tuple[Image.Image, list[str]]:
    """Convert any decoded mode to 8-bit RGB, saying what was changed.

    Transparency is flattened onto white (alpha is not just dropped: that would reveal the
    colours stored under transparent pixels); 16/32-bit grey is scaled, not clipped; CMYK
    goes through its ICC profile when it has one.
    """
    mode = image.mode
    if mode == "RGB":
        return image, []
    if _has_transparency(image):
        return _flatten_on_white(image)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_to_rgb(image)
    if mode == "CMYK":
        return _cmyk_to_rgb(image)
    if mode in ("L", "1"):
        return image.convert("RGB"), ["grayscale converted to RGB"]
    if mode == "P":
        return image.convert("RGB"), ["palette image converted to RGB"]
    return image.convert("RGB"), [f"{mode} converted to RGB"]


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )


def _flatten_on_white(image: Image.Image) -> tuple[Image.Image, list[str]]:
    rgba = image.convert("RGBA")
    alpha = rgba.getchannel("A")
    if alpha.getextrema() == (255, 255):
        return rgba.convert("RGB"), [f"{image.mode}: fully opaque alpha channel dropped"]
    canvas = Image.new("RGB", rgba.size, WHITE)
    canvas.paste(rgba.convert("RGB"), mask=alpha)
    return canvas, [f"{image.mode}: transparent pixels composited onto white"]


def _high_depth_to_rgb(image: Image.Image) -> tuple[Image.Image, list[str]]:
    """16-bit grey is divided by 257 (65535 -> 255); other ranges are stretched min..max."""
    values = np.asarray(image).astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if image.mode != "F" and lo >= 0 and hi <= 65535:
        scaled, note = values / 257.0, f"{image.mode} 16-bit grey scaled to 8-bit (/257)"
    elif image.mode == "F" and lo >= 0 and hi <= 1:
        scaled, note = values * 255.0, "F float grey in [0, 1] scaled to 8-bit"
    else:
        span = hi - lo or 1.0
        scaled = (values - lo) * (255.0 / span)
        note = f"{image.mode} grey stretched from [{lo:g}, {hi:g}] to 8-bit"
    grey = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")
    return grey.convert("RGB"), [note]


def _cmyk_to_rgb(image: Image.Image) -> tuple[Image.Image, list[str]]:
    icc = image.info.get("icc_profile")
    if icc:
        rgb = _icc_to_srgb(image, icc)
        if rgb is not None:
            return rgb, ["CMYK converted to sRGB through its ICC profile"]
    return image.convert("RGB"), ["CMYK converted to RGB without an ICC profile (colours approximate)"]


def _icc_to_srgb(image: Image.Image, icc: bytes) -> Image.Image | None:
    """Colour-managed conversion to sRGB; None when LittleCMS is missing or the profile is bad."""
    try:
        from PIL import ImageCms
    except ImportError:
        return None
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(image, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None
