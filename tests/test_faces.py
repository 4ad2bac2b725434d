"""Face detection (dlib HOG) and FFAA's crop rule."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from ffaa.errors import InputError
from ffaa.faces import crop_box, crop_face, crop_faces, detect_faces
from ffaa.media import load_image
from ffaa.types import FaceBox

dlib = pytest.importorskip("dlib")
cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    data = pytest.importorskip("skimage.data")
    return Image.fromarray(data.astronaut())


def centre(box: FaceBox) -> tuple[float, float]:
    return (box.left + box.right) / 2, (box.top + box.bottom) / 2


def iou(a: FaceBox, b: FaceBox) -> float:
    w = max(0, min(a.right, b.right) - max(a.left, b.left))
    h = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    inter = w * h
    return inter / (a.width * a.height + b.width * b.height - inter)


# -- detection -------------------------------------------------------------------------------


def test_astronaut_has_one_face(astronaut):
    (face,) = detect_faces(astronaut)
    x, y = centre(face)
    assert 200 < x < 250 and 100 < y < 150  # Eileen Collins' face, upper middle
    assert 70 < face.width < 110 and face.score > 1.0 and face.detector == "dlib-hog"


def test_upsampled_false_hit_is_not_kept(astronaut):
    # On the doubled image dlib also fires on the mission patch (bottom left); at native
    # resolution it rejects it, and a face of that size is taken from the native pass.
    from ffaa.faces import _run_detector

    raw = _run_detector(np.asarray(astronaut), 1, 0.0)
    assert len(raw) == 2
    assert len(detect_faces(astronaut)) == 1


def test_small_face_needs_upsampling(astronaut):
    small = astronaut.resize((256, 256), Image.Resampling.BILINEAR)  # face about 45 px
    assert detect_faces(small, upsample=0) == []
    (face,) = detect_faces(small, upsample=1)
    assert 35 < face.width < 60


def test_min_size_filters_in_source_pixels(astronaut):
    assert detect_faces(astronaut, min_size=120) == []


def test_large_image_boxes_are_scaled_back(astronaut):
    big = astronaut.resize((2048, 2048), Image.Resampling.BILINEAR)
    (small_face,) = detect_faces(astronaut, upsample=0)
    (big_face,) = detect_faces(big, upsample=0)  # detected on a 1600 px copy
    scaled = FaceBox(*(4 * v for v in (small_face.left, small_face.top, small_face.right, small_face.bottom)))
    assert iou(big_face, scaled) > 0.7


def test_reading_order_left_to_right(astronaut):
    face = astronaut.crop((130, 30, 320, 230))
    canvas = Image.new("RGB", (600, 260), (128, 128, 128))
    canvas.paste(face, (380, 20))
    canvas.paste(face.resize((150, 158)), (20, 60))
    boxes = detect_faces(canvas)
    assert len(boxes) == 2
    assert boxes[0].left < boxes[1].left
    assert boxes[0].width < boxes[1].width  # the smaller face is on the left, yet listed first


def test_grayscale_input(astronaut):
    assert len(detect_faces(astronaut.convert("L"))) == 1


def test_blank_image_has_no_face():
    assert detect_faces(Image.new("RGB", (320, 240), (200, 200, 200))) == []


def test_concurrent_calls_agree(astronaut):
    expected = detect_faces(astronaut)
    results: list = []

    def work():
        results.append(detect_faces(astronaut))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


# -- fixtures from FFAA's repository ---------------------------------------------------------


@pytest.mark.parametrize("name", ["real_celeba3.jpg", "fake_pggan4.png"])
def test_single_face_fixtures(shared_fixtures, name):
    image = load_image(shared_fixtures / "images" / name).image
    (face,) = detect_faces(image)
    x, y = centre(face)
    assert abs(x - image.width / 2) < image.width / 4 and abs(y - image.height / 2) < image.height / 4


def test_four_people_frame_finds_the_frontal_face(shared_fixtures):
    # Four people sit at a table; three are in profile, which the HOG frontal detector does
    # not see (FFAA uses the same detector). The one facing the camera is found.
    image = load_image(shared_fixtures / "images" / "fake_c23_dfd1.png").image
    assert image.size == (3024, 1704)
    (crop,) = crop_faces(image)
    x, y = centre(crop.box)
    assert 1250 < x < 1480 and 430 < y < 640
    assert crop.image.size == (336, 336)


# -- cropping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "box, expected",
    [
        (FaceBox(100, 60, 150, 110), (60, 20, 190, 150)),  # room on every side: 40 px each
        (FaceBox(10, 5, 60, 55), (0, 0, 100, 95)),  # near the top-left: stops at the border
        (FaceBox(170, 120, 200, 150), (130, 80, 200, 150)),  # touching the bottom-right
        (FaceBox(-5, -5, 30, 30), (0, 0, 70, 70)),  # a detector box poking outside
    ],
)
def test_crop_box_pads_by_40_or_up_to_the_border(box, expected):
    assert crop_box(box, (200, 150)) == expected


def test_crop_box_outside_the_image_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        crop_box(FaceBox(500, 500, 600, 600), (200, 150), pad=0)


def test_crop_face_is_336_bilinear_like_cv2():
    array = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    crop, box = crop_face(image, FaceBox(100, 60, 150, 110))
    assert crop.size == (336, 336) and crop.mode == "RGB"
    assert box.crop == (60, 20, 190, 150)
    reference = cv2.resize(array[20:150, 60:190], (336, 336), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(np.asarray(crop), reference)


def test_crop_face_stretches_a_border_crop_to_a_square():
    image = Image.new("RGB", (200, 150))
    crop, box = crop_face(image, FaceBox(10, 5, 60, 55))
    assert box.crop == (0, 0, 100, 95) and crop.size == (336, 336)


# -- modes -----------------------------------------------------------------------------------


def test_faces_mode(astronaut):
    (item,) = crop_faces(astronaut, "faces")
    assert item.image.size == (336, 336) and item.box is not None and item.box.crop is not None
    assert item.note == ""


def test_faces_mode_without_a_face_is_an_input_error():
    blank = Image.new("RGB", (320, 240), (200, 200, 200))
    with pytest.raises(InputError) as caught:
        crop_faces(blank, "faces", name="holiday.jpg")
    assert str(caught.value) == ("holiday.jpg: no face found; use --fallback-whole to analyse the whole image when "
                                 "no face is found, or --whole-image to always analyse the whole image")


def test_whole_mode_returns_the_image_unchanged(astronaut):
    (item,) = crop_faces(astronaut, "whole")
    assert item.image is astronaut and item.box is None


def test_auto_mode_falls_back_to_the_whole_image_with_a_note(astronaut):
    blank = Image.new("RGB", (320, 240), (200, 200, 200))
    (item,) = crop_faces(blank, "auto")
    assert item.image is blank and item.box is None and "no face found" in item.note
    assert crop_faces(astronaut, "auto")[0].box is not None


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown face mode"):
        crop_faces(Image.new("RGB", (8, 8)), "first")


def test_weak_extra_detections_are_dropped_but_the_best_face_stays():
    from PIL import ImageOps
    from skimage import data

    from ffaa.faces import EXTRA_FACE_MIN_SCORE, detect_faces

    base = Image.fromarray(data.astronaut())
    for i in range(8):  # rescaled copies where dlib also fires weakly on the mission patch
        variant = (ImageOps.mirror(base) if i % 2 else base).resize((512 - 16 * i,) * 2)
        faces = detect_faces(variant)
        assert len(faces) == 1 and faces[0].score > EXTRA_FACE_MIN_SCORE
    pair = Image.new("RGB", (1024, 512))
    pair.paste(base, (0, 0))
    pair.paste(ImageOps.mirror(base), (512, 0))
    assert len(detect_faces(pair)) == 2
