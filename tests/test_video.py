"""Video probing and frame sampling on small videos generated on the fly."""

from __future__ import annotations

import wave
from pathlib import Path

import makers
import numpy as np
import pytest
from PIL import Image

from ffaa.errors import InputError
from ffaa.video import (
    VideoSampling,
    plan_targets,
    probe_video,
    sample_frames,
    sample_video,
)

av = pytest.importorskip("av")

BACKENDS = ["pyav", "opencv"]


def brightness_index(image: Image.Image) -> int:
    """Undo `makers.counter_frames`: the frame index (mod 200/7 cycles) from the mean grey."""
    level = float(np.asarray(image)[16:, 16:].mean())
    return round(level - 20)


def expected_level(index: int) -> int:
    return (index * 7) % 200


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """3 s at 10 fps (96x64) in a few containers, a 30 s one, a rotated one, damaged copies."""
    root = tmp_path_factory.mktemp("videos")
    frames = makers.counter_frames(30)
    out = {
        "mp4": makers.write_video(root / "a.mp4", frames),
        "faststart": makers.write_video(root / "fs.mp4", frames, faststart=True),
        "mkv": makers.write_video(root / "a.mkv", frames, container="matroska"),
        "rotated": makers.write_video(root / "rot.mp4", frames, rotation=90),
        "long": makers.write_video(root / "long.mp4", makers.counter_frames(300, 64, 48), gop=10),
    }
    out["truncated"] = makers.truncated(root / "cut.mp4", out["faststart"], 0.5)
    out["no_index"] = makers.truncated(root / "cut_noindex.mp4", out["mp4"], 0.5)
    data = bytearray(out["faststart"].read_bytes())
    middle = len(data) // 2
    data[middle : middle + 300] = b"\xff" * 300
    out["corrupt"] = root / "corrupt.mp4"
    out["corrupt"].write_bytes(bytes(data))
    return out


# -- probing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["mp4", "mkv"])
def test_probe(videos, backend, kind):
    info = probe_video(videos[kind], backend=backend)
    assert info.duration_s == pytest.approx(3.0, abs=0.11)
    assert info.fps == pytest.approx(10.0)
    assert info.frame_count == 30
    assert (info.width, info.height) == (96, 64)
    assert info.codec in ("h264", "avc1")
    assert info.backend == backend


# -- sampling --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["mp4", "mkv"])
def test_every_second(videos, backend, kind):
    sampler = sample_frames(videos[kind], VideoSampling(every_seconds=1.0), backend)
    frames = list(sampler)
    assert [f.timestamp_s for f in frames] == [0.0, 1.0, 2.0]
    assert [f.index for f in frames] == [0, 10, 20]
    for f in frames:
        assert f.image.mode == "RGB" and f.image.size == (96, 64)
        assert abs(brightness_index(f.image) - expected_level(f.index)) <= 3
    assert sampler.partial is False and sampler.error is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_frames_spread_evenly(videos, backend):
    frames = list(sample_frames(videos["mp4"], VideoSampling(frames_per_video=4), backend))
    # Middles of four 0.75 s slices: 0.375, 1.125, 1.875, 2.625 -> the next frame shown.
    assert [f.timestamp_s for f in frames] == [0.4, 1.1, 1.9, 2.6]


def test_default_sampling_is_eight_spread_frames(videos):
    assert len(sample_video(videos["mp4"]).frames) == 8


def test_max_frames_caps_the_count(videos):
    frames = list(sample_frames(videos["mp4"], VideoSampling(every_seconds=0.1, max_frames=5)))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]


def test_more_targets_than_frames_gives_each_frame_once(videos):
    sample = sample_video(videos["mp4"], VideoSampling(frames_per_video=100, max_frames=100))
    indices = [f.index for f in sample.frames]
    assert indices == sorted(set(indices)) and len(indices) == 30
    assert not sample.partial


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_video_sampling_lands_on_the_right_frames(videos, backend):
    # Targets 7.5 s apart: PyAV seeks between them; the frames must still be the right ones.
    sample = sample_video(videos["long"], VideoSampling(frames_per_video=4), backend)
    # Targets 3.75, 11.25, ...: the nearest frame, the earlier one on a tie.
    assert [f.timestamp_s for f in sample.frames] == [3.7, 11.2, 18.7, 26.2]
    for f in sample.frames:
        assert abs(brightness_index(f.image) - expected_level(f.index)) <= 3


def test_long_gaps_are_crossed_by_seeking(videos, monkeypatch):
    import ffaa.video as video

    calls = []
    real_seek = video._seek
    monkeypatch.setattr(video, "_seek", lambda *a: calls.append(a) or real_seek(*a))
    sample = sample_video(videos["long"], VideoSampling(frames_per_video=4))
    assert len(calls) == 3  # before 11.2 s, 18.7 s and 26.2 s; 3.7 s is decoded into
    assert [f.index for f in sample.frames] == [37, 112, 187, 262]


def test_raw_stream_duration_is_measured_from_packets(tmp_path):
    # A raw H.264 stream states no duration and no timestamps (FFmpeg assumes 25 fps).
    path = makers.write_video(tmp_path / "raw.h264", makers.counter_frames(30), container="h264")
    info = probe_video(path)
    assert info.duration_s == pytest.approx(30 / 25) and info.frame_count == 30
    assert len(sample_video(path, VideoSampling(frames_per_video=4)).frames) == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_is_applied_like_a_player(videos, backend):
    sample = sample_video(videos["rotated"], VideoSampling(frames_per_video=1), backend)
    assert sample.info.rotation == 90 and (sample.info.width, sample.info.height) == (64, 96)
    pixels = np.asarray(sample.frames[0].image)
    assert pixels.shape == (96, 64, 3)
    # The white mark stored top-left ends bottom-left after a quarter turn counter-clockwise.
    assert pixels[-12:-4, 2:6].mean() > 200 and pixels[2:6, 2:6].mean() < 200


def test_stopping_early_releases_the_file(videos):
    with sample_frames(videos["mp4"], VideoSampling(every_seconds=0.5)) as sampler:
        first = next(sampler)
    assert first.index == 0
    assert list(sampler) == []


# -- damaged and wrong inputs ----------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_video_yields_what_decodes_and_says_partial(videos, backend):
    sampler = sample_frames(videos["truncated"], VideoSampling(every_seconds=0.5), backend)
    frames = list(sampler)
    assert 1 <= len(frames) < 6
    assert sampler.partial is True and "stream ended" in sampler.error
    sample = sample_video(videos["truncated"], VideoSampling(every_seconds=0.5), backend)
    assert sample.partial and len(sample.frames) == len(frames)


@pytest.mark.parametrize("backend", BACKENDS)
def test_video_without_a_decodable_frame(videos, tmp_path, backend):
    path = makers.truncated(tmp_path / "stub.mp4", videos["faststart"], 0.1)  # index, no data
    sampler = sample_frames(path, backend=backend)
    assert list(sampler) == [] and sampler.partial and "no frame could be decoded" in sampler.error
    with pytest.raises(InputError, match="stub.mp4: no usable frame"):
        sample_video(path, backend=backend)


def test_corrupt_packets_skip_damaged_frames(videos):
    sample = sample_video(videos["corrupt"], VideoSampling(every_seconds=0.5))
    assert sample.partial and sample.damaged_skipped > 0
    assert "damaged" in sample.error
    for f in sample.frames:  # what is returned is clean
        assert abs(brightness_index(f.image) - expected_level(f.index)) <= 3


def test_truncated_mp4_without_its_index_is_an_input_error(videos):
    with pytest.raises(InputError, match="not a readable video"):
        sample_frames(videos["no_index"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_length_file(tmp_path, backend):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        sample_frames(path, backend=backend)
    with pytest.raises(InputError, match="empty file"):
        probe_video(path, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_named_mp4(tmp_path, backend):
    path = tmp_path / "clip.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(InputError, match=r"clip\.mp4: not a readable video"):
        sample_frames(path, backend=backend)


def test_image_named_mp4(tmp_path):
    path = makers.save(Image.new("RGB", (32, 32)), tmp_path / "clip.mp4", "PNG")
    with pytest.raises(InputError, match="is an image, not a video"):
        sample_frames(path)


def test_audio_only_file(tmp_path):
    path = tmp_path / "sound.mp4"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    with pytest.raises(InputError, match="has no video stream"):
        sample_frames(path)


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        sample_frames(tmp_path / "gone.mp4")
    with pytest.raises(InputError, match="is a directory"):
        sample_frames(tmp_path)


def test_sampling_settings_are_validated():
    with pytest.raises(ValueError, match="not both"):
        VideoSampling(every_seconds=1.0, frames_per_video=3)
    with pytest.raises(ValueError):
        VideoSampling(every_seconds=0)
    with pytest.raises(ValueError):
        VideoSampling(frames_per_video=0)
    with pytest.raises(ValueError):
        VideoSampling(max_frames=0)
    with pytest.raises(ValueError, match="not both"):
        VideoSampling(frames_per_video=3, times=(0.0,))
    with pytest.raises(ValueError, match="increasing"):
        VideoSampling(times=(1.0, 0.5))


def test_plan_targets():
    assert list(plan_targets(VideoSampling(times=(0.0, 0.04, 2.0)), 1.0)) == [0.0, 0.04]
    assert list(plan_targets(VideoSampling(every_seconds=1.5), 4.0)) == [0.0, 1.5, 3.0]
    assert list(plan_targets(VideoSampling(frames_per_video=2), 4.0)) == [1.0, 3.0]
    assert list(plan_targets(VideoSampling(frames_per_video=5), None)) == [0.0]


def test_every_infinite_seconds_takes_the_first_frame_only(videos):
    assert list(plan_targets(VideoSampling(every_seconds=float("inf")), 3.0)) == [0.0]
    sample = sample_video(videos["mp4"], VideoSampling(every_seconds=float("inf")))
    assert [f.index for f in sample.frames] == [0] and not sample.partial


# -- faces in frames -------------------------------------------------------------------------


def test_face_is_found_in_sampled_frames(tmp_path):
    pytest.importorskip("dlib")
    data = pytest.importorskip("skimage.data")
    from ffaa.faces import crop_faces

    face = np.asarray(Image.fromarray(data.astronaut()).crop((130, 30, 270, 190)))
    path = makers.write_video(tmp_path / "face.mp4", makers.face_frames(face, 20), fps=10)
    sample = sample_video(path, VideoSampling(frames_per_video=3))
    assert len(sample.frames) == 3
    for frame in sample.frames:
        (crop,) = crop_faces(frame.image)
        assert crop.image.size == (336, 336)
