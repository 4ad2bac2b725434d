"""Image loading: limits, broken files, colour modes, orientation, frames, sniffing."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import makers
import numpy as np
import pytest
from PIL import Image, ImageFile

from ffaa.errors import InputError
from ffaa.media import LoadLimits, from_pil, load_image, load_image_from_bytes, sniff_kind


def rejected(path: Path, *fragments: str, limits: LoadLimits | None = None) -> str:
    """Assert load_image refuses `path` with a one-line message naming it and each fragment."""
    with pytest.raises(InputError) as caught:
        load_image(path, limits)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# -- good files ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, suffix", [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("BMP", "bmp")])
def test_plain_rgb_image_loads_with_file_hash(tmp_path, fmt, suffix):
    path = makers.save(Image.fromarray(makers.gradient()), tmp_path / f"x.{suffix}", fmt)
    loaded = load_image(path)
    assert loaded.image.mode == "RGB" and loaded.image.size == (64, 48)
    info = loaded.info
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (info.width, info.height, info.original_mode, info.format) == (64, 48, "RGB", fmt)
    assert info.notes == () and info.path == str(path)


def test_real_photo_fixture(shared_fixtures):
    loaded = load_image(shared_fixtures / "images" / "real_celeba3.jpg")
    assert loaded.image.size == (256, 256) and loaded.info.format == "JPEG"


def test_extension_does_not_matter(tmp_path):
    path = makers.save(Image.fromarray(makers.gradient()), tmp_path / "really_a_png.jpg", "PNG")
    assert load_image(path).info.format == "PNG"


# -- refused inputs --------------------------------------------------------------------------


def test_missing_file(tmp_path):
    rejected(tmp_path / "nope.jpg", "no such file")


def test_directory(tmp_path):
    rejected(tmp_path, "is a directory")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    rejected(path, "empty file")


@pytest.mark.parametrize(
    "content, what",
    [
        (b"just some notes\n", "text"),
        (b"<!DOCTYPE html><html><body>404</body></html>", "HTML"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "PostScript"),
        (b"\x00\x01\x02\xfe\xff" * 20, "unrecognised data"),
    ],
)
def test_not_an_image(tmp_path, content, what):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    rejected(path, "not an image", what)


def test_zip_renamed_jpg(tmp_path):
    path = tmp_path / "photo.jpg"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.txt", "x")
    rejected(path, "ZIP archive")


def test_eps_is_refused_even_though_pillow_knows_it(tmp_path):
    # Pillow would run Ghostscript on it; only SUPPORTED_FORMATS are opened.
    path = makers.save(Image.new("RGB", (8, 8)), tmp_path / "x.eps", "EPS")
    rejected(path, "not an image")


def test_video_is_not_an_image(tmp_path):
    path = tmp_path / "clip.jpg"
    path.write_bytes(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 64)
    rejected(path, "is a video")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("keep", [0.3, 0.9, 0.995])
def test_truncated_file_is_refused_not_grey_filled(tmp_path, fmt, keep):
    whole = makers.save(makers.noisy_rgb(160, 120), tmp_path / f"whole.{fmt.lower()}", fmt)
    cut = makers.truncated(tmp_path / f"cut.{fmt.lower()}", whole, keep)
    rejected(cut, "truncated or corrupt")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the cut TIFF tags
def test_truncated_compressed_tiff_is_refused(tmp_path):
    # Compressed TIFFs keep their directory at the end: a cut file has no readable header.
    whole = makers.save(makers.noisy_rgb(64, 64), tmp_path / "w.tif", "TIFF", compression="tiff_lzw")
    rejected(makers.truncated(tmp_path / "cut.tif", whole, 0.9), "cannot be opened", "truncated")


def test_unreadable_permission(tmp_path, monkeypatch):
    path = makers.save(Image.new("RGB", (8, 8)), tmp_path / "x.png", "PNG")

    def deny(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    rejected(path, "permission denied")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_permission_for_real(tmp_path):
    path = makers.save(Image.new("RGB", (8, 8)), tmp_path / "x.png", "PNG")
    path.chmod(0)
    rejected(path, "permission denied")


# -- limits ----------------------------------------------------------------------------------


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    path = makers.png_header_only(tmp_path / "big.png", 8000, 8000)

    def no_decoding(self):
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    rejected(path, "8000x8000", "64.0 Mpx", "40.0 Mpx", "--max-pixels (LoadLimits.max_pixels in Python)")


def test_raising_the_pixel_limit_is_per_call(tmp_path):
    path = makers.save(Image.new("RGB", (300, 200)), tmp_path / "x.png", "PNG")
    before = Image.MAX_IMAGE_PIXELS
    rejected(path, "300x200", limits=LoadLimits(max_pixels=50_000))
    assert load_image(path, LoadLimits(max_pixels=60_000)).image.size == (300, 200)
    rejected(path, "300x200", limits=LoadLimits(max_pixels=50_000))
    assert Image.MAX_IMAGE_PIXELS == before


def test_decompression_bomb_beyond_pillows_guard(tmp_path):
    path = makers.png_header_only(tmp_path / "bomb.png", 20000, 20000)
    rejected(path, "400.0 Mpx", "decompression-bomb")


def test_image_between_pillows_warning_and_its_guard_is_refused_without_a_warning(tmp_path):
    path = makers.png_header_only(tmp_path / "large.png", 10000, 10000)  # over Pillow's 89.5 Mpx warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rejected(path, "10000x10000", "100.0 Mpx")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_side_limit(tmp_path):
    path = makers.png_header_only(tmp_path / "strip.png", 13000, 10)
    rejected(path, "13000x10", "12000 px", "max_side")


def test_byte_limit(tmp_path):
    path = makers.save(makers.noisy_rgb(64, 64), tmp_path / "x.png", "PNG")
    rejected(path, "MiB", "max_bytes", limits=LoadLimits(max_bytes=1000))


def test_small_custom_pixel_limit(tmp_path):
    path = makers.save(Image.new("RGB", (64, 48)), tmp_path / "x.png", "PNG")
    rejected(path, "64x48", limits=LoadLimits(max_pixels=1000))


# -- colour modes ----------------------------------------------------------------------------


def test_transparent_pixels_become_white_not_their_hidden_colour(tmp_path):
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., :3] = (255, 0, 0)  # red everywhere...
    rgba[:, 32:, 3] = 255  # ...but only the right half is visible
    loaded = load_image(makers.save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    pixels = np.asarray(loaded.image)
    assert (pixels[:, :32] == 255).all()
    assert (pixels[:, 32:] == (255, 0, 0)).all()
    assert loaded.info.original_mode == "RGBA"
    assert any("composited onto white" in n for n in loaded.info.notes)


def test_half_transparent_pixels_blend_with_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 128  # black at half opacity
    pixels = np.asarray(load_image(makers.save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png")).image)
    assert np.all(np.abs(pixels.astype(int) - 127) <= 1)


def test_opaque_alpha_is_just_dropped(tmp_path):
    gray = Image.fromarray(makers.gradient()).convert("LA")
    loaded = load_image(makers.save(gray, tmp_path / "la.png"))
    assert any("opaque" in n for n in loaded.info.notes)
    assert np.array_equal(np.asarray(loaded.image)[..., 0], np.asarray(gray)[..., 0])


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency(tmp_path, fmt):
    pal = Image.new("P", (16, 16), 1)
    pal.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    pal.paste(0, (0, 0, 8, 16))  # left half: index 0 (blue), declared transparent
    loaded = load_image(makers.save(pal, tmp_path / f"p.{fmt.lower()}", fmt, transparency=0))
    pixels = np.asarray(loaded.image)
    assert (pixels[:, :8] == 255).all() and (pixels[:, 8:] == (0, 255, 0)).all()


def test_palette_without_transparency(tmp_path):
    loaded = load_image(makers.save(Image.fromarray(makers.gradient()).convert("P"), tmp_path / "p.png"))
    assert loaded.image.mode == "RGB" and "palette image converted to RGB" in loaded.info.notes


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grayscale_to_rgb(tmp_path, mode):
    gray = Image.fromarray(makers.gradient()).convert(mode)
    loaded = load_image(makers.save(gray, tmp_path / "g.png"))
    pixels = np.asarray(loaded.image)
    assert pixels.shape == (48, 64, 3)
    assert np.array_equal(pixels[..., 0], np.asarray(gray.convert("L")))
    assert "grayscale converted to RGB" in loaded.info.notes


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_not_clipped(tmp_path, fmt):
    values = np.array([[0, 257, 1000, 32896, 65535, 65535]], np.uint16)
    loaded = load_image(makers.save(Image.fromarray(values), tmp_path / f"d.{fmt.lower()}", fmt))
    assert loaded.info.original_mode == "I;16"
    assert np.asarray(loaded.image)[0, :, 0].tolist() == [0, 1, 4, 128, 255, 255]
    assert any("16-bit" in n for n in loaded.info.notes)


def test_float_tiff_is_scaled(tmp_path):
    values = np.array([[0.0, 0.5, 1.0, 1.0]], np.float32)
    loaded = load_image(makers.save(Image.fromarray(values), tmp_path / "f.tif", "TIFF"))
    assert np.asarray(loaded.image)[0, :, 0].tolist() == [0, 128, 255, 255]


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_to_rgb(tmp_path, fmt):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    params = {"quality": 95} if fmt == "JPEG" else {}
    loaded = load_image(makers.save(cmyk, tmp_path / f"c.{fmt.lower()}", fmt, **params))
    r, g, b = np.asarray(loaded.image)[4, 4].tolist()
    assert r > 200 and g < 60 and b < 60
    assert loaded.info.original_mode == "CMYK"
    assert any(n.startswith("CMYK converted") for n in loaded.info.notes)


# -- orientation and frames ------------------------------------------------------------------


@pytest.mark.parametrize(
    "orientation, expected",
    [
        (3, lambda a: np.rot90(a, 2)),
        (6, lambda a: np.rot90(a, -1)),  # stored sideways; viewers turn it clockwise
        (8, lambda a: np.rot90(a, 1)),
        (2, lambda a: a[:, ::-1]),
    ],
)
def test_exif_orientation_is_applied_and_noted(tmp_path, orientation, expected):
    array = makers.gradient(64, 48)
    path = makers.with_exif_orientation(Image.fromarray(array), tmp_path / "o.jpg", orientation)
    loaded = load_image(path)
    want = expected(array).astype(int)
    got = np.asarray(loaded.image).astype(int)
    assert got.shape == want.shape
    assert np.abs(got - want).mean() < 4  # JPEG noise only
    assert (loaded.info.width, loaded.info.height) == (want.shape[1], want.shape[0])
    assert any(f"EXIF orientation {orientation}" in n for n in loaded.info.notes)


def test_upright_exif_adds_no_note(tmp_path):
    path = makers.with_exif_orientation(Image.fromarray(makers.gradient()), tmp_path / "o.jpg", 1)
    assert load_image(path).info.notes == ()


def _frames() -> list[Image.Image]:
    return [Image.new("RGB", (32, 32), (40 * i + 20, 0, 0)) for i in range(4)]


@pytest.mark.parametrize(
    "fmt, word",
    [("GIF", "animated GIF"), ("WEBP", "animated WEBP"), ("PNG", "animated PNG"), ("TIFF", "multi-page TIFF")],
)
def test_multi_frame_files_give_their_first_frame(tmp_path, fmt, word):
    first, *rest = _frames()
    params = {"lossless": True} if fmt == "WEBP" else {}
    path = makers.save(first, tmp_path / f"m.{fmt.lower()}", fmt, save_all=True, append_images=rest, **params)
    loaded = load_image(path)
    assert abs(int(np.asarray(loaded.image)[16, 16, 0]) - 20) <= 3
    assert any(word in n and "1 of 4" in n for n in loaded.info.notes)


# -- other sources ---------------------------------------------------------------------------


def test_bytes_and_file_objects(tmp_path):
    data = makers.encoded(Image.fromarray(makers.gradient()), "PNG")
    from_bytes = load_image_from_bytes(data, name="upload.png")
    from_file = load_image_from_bytes(io.BytesIO(data))
    assert from_bytes.info.sha256 == from_file.info.sha256 == hashlib.sha256(data).hexdigest()
    assert from_bytes.info.path == "upload.png"
    assert np.array_equal(np.asarray(from_bytes.image), np.asarray(from_file.image))


def test_bytes_errors_name_the_upload():
    with pytest.raises(InputError, match="^upload.jpg: empty file"):
        load_image_from_bytes(b"", name="upload.jpg")
    with pytest.raises(InputError, match="^upload.jpg: not an image"):
        load_image_from_bytes(b"hello", name="upload.jpg")
    big = makers.encoded(makers.noisy_rgb(64, 64), "PNG")
    with pytest.raises(InputError, match="max_bytes"):
        load_image_from_bytes(io.BytesIO(big), name="u.png", limits=LoadLimits(max_bytes=100))


def test_from_pil_normalises_and_hashes_pixels():
    pal = Image.fromarray(makers.gradient()).convert("P")
    loaded = from_pil(pal, name="widget")
    assert loaded.image.mode == "RGB" and loaded.info.original_mode == "P"
    assert "sha256 of the RGB pixels (no file bytes)" in loaded.info.notes
    assert loaded.info.sha256 == from_pil(pal.copy(), name="again").info.sha256


def test_from_pil_decodes_a_lazy_truncated_image(tmp_path):
    whole = makers.save(makers.noisy_rgb(96, 96), tmp_path / "w.jpg", "JPEG")
    lazy = Image.open(makers.truncated(tmp_path / "cut.jpg", whole, 0.5))
    with pytest.raises(InputError, match="truncated or corrupt"):
        from_pil(lazy, name="cut.jpg")


def test_from_pil_applies_limits():
    with pytest.raises(InputError, match="Mpx"):
        from_pil(Image.new("RGB", (100, 100)), limits=LoadLimits(max_pixels=50))


# -- sniffing --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "PPM"])
def test_sniff_images_by_content(tmp_path, fmt):
    path = makers.save(Image.new("RGB", (8, 8)), tmp_path / "x.mp4", fmt)  # misleading suffix
    assert sniff_kind(path) == "image"


def test_sniff_videos(tmp_path):
    pytest.importorskip("av")
    frames = makers.counter_frames(3, 32, 32)
    assert sniff_kind(makers.write_video(tmp_path / "v.jpg", frames, container="mp4")) == "video"
    assert sniff_kind(makers.write_video(tmp_path / "v.png", frames, container="matroska")) == "video"
    avi = makers.write_video(tmp_path / "v.bin", frames, codec="mpeg4", container="avi")
    assert sniff_kind(avi) == "video"


@pytest.mark.parametrize("content", [b"hello", b"BMW 3 series\n", b"PK\x03\x04rest", b"<html></html>", b""])
def test_sniff_other(tmp_path, content):
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    assert sniff_kind(path) == "other"


def test_sniff_missing_and_directory(tmp_path):
    assert sniff_kind(tmp_path) == "other"
    with pytest.raises(InputError, match="no such file"):
        sniff_kind(tmp_path / "missing.png")


# -- import cost -----------------------------------------------------------------------------


def test_importing_media_faces_video_pulls_in_no_heavy_library():
    code = (
        "import sys, ffaa, ffaa.media, ffaa.faces, ffaa.video; "
        "print([m for m in ('cv2', 'dlib', 'av', 'skimage', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- robustness ------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt EXIF/TIFF tags
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "TIFF", "BMP", "WEBP"])
def test_mutated_files_load_or_raise_input_error(fmt):
    """Flipped bytes and cut tails must never escape as anything but an InputError."""
    import random

    rng = random.Random(fmt)
    base = Image.fromarray(makers.gradient(48, 32))
    data = makers.encoded(base.convert("P") if fmt == "GIF" else base, fmt)
    for _ in range(40):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        if rng.random() < 0.3:
            mutated = mutated[: rng.randrange(1, len(mutated))]
        try:
            loaded = load_image_from_bytes(bytes(mutated), name="fuzz")
        except InputError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("fuzz: ")
        else:
            assert loaded.image.mode == "RGB"
