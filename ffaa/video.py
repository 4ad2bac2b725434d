"""Video probing and frame sampling, with PyAV (preferred) or OpenCV.

Frames are picked by time, not by index: `VideoSampling(every_seconds=1.0)` takes the frames
at 0 s, 1 s, 2 s, ... and `VideoSampling(frames_per_video=8)` takes the frames at the middle of
eight equal slices of the video. Each target takes the frame nearest to it (the earlier one
on a tie); a frame is never returned twice, and `max_frames` caps the total.

Videos from the wild are often damaged. Sampling never raises on a decoding problem halfway:
it yields every frame it could decode and then records `partial=True` and the reason on the
sampler (or on the `VideoSample` that `sample_video` returns). A file that is not a video at
all, is empty, or has no video stream is an InputError before any frame is read.

PyAV honours the rotation stored by phones (display matrix) so faces come out upright, and it
seeks over long gaps between sampled frames instead of decoding everything in between.
OpenCV, used when PyAV is not installed, rotates too but always decodes sequentially.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

from PIL import Image

from .errors import InputError, MissingDependencyError
from .lazy import require
from .media import sniff_kind

Backend = Literal["auto", "pyav", "opencv"]
SEEK_GAP_S = 4.0  # seek rather than decode through gaps longer than this (typical GOP: 1-10 s)


@dataclass(frozen=True)
class VideoSampling:
    """Which frames to take: every N seconds, N frames spread evenly, or the frames nearest to
    given times (seconds, increasing; runs of consecutive frames for clip detectors); at most
    `max_frames`.

    Give at most one of `every_seconds`, `frames_per_video` and `times`; with none, 8 frames are
    spread evenly over the video.
    """

    every_seconds: float | None = None
    frames_per_video: int | None = None
    max_frames: int = 64
    times: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.every_seconds, self.frames_per_video, self.times)]
        if sum(given) > 1:
            raise ValueError("give one of every_seconds, frames_per_video and times, not both or all")
        if self.times is not None and any(b < a for a, b in zip(self.times, self.times[1:])):
            raise ValueError("times must be in increasing order")
        if self.every_seconds is not None and not self.every_seconds > 0:
            raise ValueError("every_seconds must be positive")
        if self.frames_per_video is not None and self.frames_per_video < 1:
            raise ValueError("frames_per_video must be at least 1")
        if self.max_frames < 1:
            raise ValueError("max_frames must be at least 1")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream (None where it does not say).

    width and height are as displayed, after `rotation` (degrees counter-clockwise).
    """

    path: str
    duration_s: float | None
    fps: float | None
    frame_count: int | None
    width: int
    height: int
    codec: str
    container: str
    rotation: int
    backend: str


@dataclass(frozen=True)
class VideoFrame:
    """One sampled frame. `index` is the frame number at the average frame rate."""

    index: int
    timestamp_s: float
    image: Image.Image


@dataclass(frozen=True)
class VideoSample:
    """All sampled frames of a video.

    partial: fewer frames than planned, because decoding stopped early or damaged frames had
      to be skipped; `error` says which. `damaged_skipped` counts decoded frames passed over
      because a decoding error had corrupted them (their pixels carry concealment artefacts
      that a forgery detector could mistake for manipulation).
    """

    info: VideoInfo
    frames: tuple[VideoFrame, ...]
    partial: bool
    error: str | None
    damaged_skipped: int = 0


# -- public API ------------------------------------------------------------------------------


def probe_video(path: str | Path, backend: Backend = "auto") -> VideoInfo:
    """Container facts of the video at `path`; InputError if it is not a readable video."""
    path = Path(path)
    _check_file(path)
    if _pick_backend(backend) == "pyav":
        return _pyav_probe(path)
    capture = _open_cv2(path)
    try:
        return _cv2_info(path, capture)
    finally:
        capture.release()


def sample_frames(
    path: str | Path, sampling: VideoSampling | None = None, backend: Backend = "auto"
) -> FrameSampler:
    """An iterator of sampled frames; after it ends, its `partial` and `error` say how it went.

    The file is opened (and refused with an InputError) here, before the first frame.
    """
    return FrameSampler(Path(path), sampling or VideoSampling(), _pick_backend(backend))


def sample_video(
    path: str | Path, sampling: VideoSampling | None = None, backend: Backend = "auto"
) -> VideoSample:
    """All sampled frames at once. A video of which no frame decodes is an InputError."""
    sampler = sample_frames(path, sampling, backend)
    frames = tuple(sampler)
    if not frames:
        raise InputError(f"{path}: no usable frame ({sampler.error or 'empty video stream'})")
    return VideoSample(sampler.info, frames, sampler.partial, sampler.error, sampler.damaged_skipped)


class FrameSampler:
    """Iterates over sampled frames once; `partial`/`error` are final when iteration ends."""

    def __init__(self, path: Path, sampling: VideoSampling, backend: str):
        _check_file(path)
        self.path, self.sampling = path, sampling
        self.partial = False
        self.error: str | None = None
        self.damaged_skipped = 0
        if backend == "pyav":
            self.info = _pyav_probe(path)
            self._container = _open_pyav(path)
            self._frames = self._pyav_frames()
        else:
            self._capture = _open_cv2(path)
            self.info = _cv2_info(path, self._capture)
            self._frames = self._cv2_frames()

    def __iter__(self) -> Iterator[VideoFrame]:
        return self

    def __next__(self) -> VideoFrame:
        return next(self._frames)

    def close(self) -> None:
        """Stop early and release the file (also done when iteration ends)."""
        self._frames.close()
        if hasattr(self, "_container"):
            self._container.close()
        else:
            self._capture.release()

    def __enter__(self) -> FrameSampler:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- shared logic ----------------------------------------------------------------------

    def _targets(self) -> Iterator[float]:
        """Target times in seconds from the video start, in increasing order."""
        return itertools.islice(plan_targets(self.sampling, self.info.duration_s), self.sampling.max_frames)

    def _finish(self, targets_left: bool, last_time: float | None, error: str | None) -> None:
        """Say whether frames are missing: an error, an early end, or damaged frames skipped."""
        if error:
            self.partial, self.error = True, error
            return
        if not targets_left:
            return
        end = self.info.duration_s
        slack = max(0.25, 2.0 / self.info.fps) if self.info.fps else 0.25
        if last_time is None:
            self.partial, self.error = True, "no frame could be decoded (file truncated or corrupt?)"
        elif end is not None and last_time < end - slack:
            self.partial = True
            self.error = f"stream ended at {last_time:.2f} s of {end:.2f} s (file truncated?)"
        elif self.damaged_skipped:
            self.partial = True
            self.error = f"{self.damaged_skipped} frames damaged by decoding errors were skipped"

    def _frame(self, image: Image.Image, t: float, count: int) -> VideoFrame:
        index = round(t * self.info.fps) if self.info.fps else count
        return VideoFrame(index, round(t, 4), image)

    # -- PyAV ------------------------------------------------------------------------------

    def _pyav_frames(self) -> Iterator[VideoFrame]:
        av = _pyav()
        container, stream = self._container, self._container.streams.video[0]
        start, half = _stream_start(stream), _half_frame(self.info.fps)
        targets, count, last, error, sought = self._targets(), 0, None, None, None
        target = next(targets, None)
        try:
            decoded = _decode_pyav(av, container, stream)
            while target is not None:
                frame, damaged = next(decoded, (None, False))
                if frame is None:
                    break
                t = _frame_time(frame, start, count, self.info.fps)
                count, last = count + 1, t
                if t + half < target:
                    if target - t > SEEK_GAP_S and sought != target and frame.pts is not None:
                        sought = target  # once per target: a far keyframe must not loop
                        if _seek(container, stream, start + target - 1.0):
                            decoded = _decode_pyav(av, container, stream)
                    continue
                if damaged:
                    self.damaged_skipped += 1
                    continue
                yield self._frame(_upright(frame), t, count - 1)
                while target is not None and target <= t + half:
                    target = next(targets, None)
        except Exception as exc:  # noqa: BLE001 - damaged input must end the sample, never the caller
            error = f"decoding stopped after {last or 0:.2f} s: {_short(exc)}"
        finally:
            container.close()
        self._finish(target is not None, last, error)

    # -- OpenCV ----------------------------------------------------------------------------

    def _cv2_frames(self) -> Iterator[VideoFrame]:
        cv2 = _opencv()
        capture = self._capture
        targets, count, last, error = self._targets(), 0, None, None
        target = next(targets, None)
        try:
            while target is not None and capture.grab():
                t = _cv2_time(capture, count, self.info.fps)
                count, last = count + 1, t
                if t + _half_frame(self.info.fps) < target:
                    continue
                ok, bgr = capture.retrieve()
                if not ok:
                    break
                yield self._frame(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)), t, count - 1)
                while target is not None and target <= t + _half_frame(self.info.fps):
                    target = next(targets, None)
        except Exception as exc:  # noqa: BLE001 - as above: end the sample, not the caller
            error = f"decoding stopped after {last or 0:.2f} s: {_short(exc)}"
        finally:
            capture.release()
        self._finish(target is not None, last, error)


def plan_targets(sampling: VideoSampling, duration_s: float | None) -> Iterator[float]:
    """The target times of `sampling` for a video of the given duration (None: unknown)."""
    if sampling.times is not None:
        yield from (t for t in sampling.times if duration_s is None or t < duration_s)
        return
    if sampling.every_seconds is not None:
        step = sampling.every_seconds
        for k in itertools.count():
            t = k * step if k else 0.0  # 0 * inf is nan, which no frame time would ever reach
            if duration_s is not None and t >= duration_s:
                return
            yield t
    count = sampling.frames_per_video or 8
    if duration_s is None:
        yield 0.0  # length unknown (and not measurable): only the first frame can be placed
        return
    for i in range(count):
        yield (i + 0.5) * duration_s / count


# -- helpers: files and backends -------------------------------------------------------------


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; pass a video file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    kind = sniff_kind(path)
    if kind == "image":
        raise InputError(f"{path}: is an image, not a video")


def _pick_backend(backend: Backend) -> str:
    if backend not in ("auto", "pyav", "opencv"):
        raise ValueError(f"unknown video backend {backend!r}; expected 'auto', 'pyav' or 'opencv'")
    if backend != "auto":
        return backend
    try:
        _pyav()
        return "pyav"
    except MissingDependencyError as no_av:
        try:
            _opencv()
        except MissingDependencyError:
            raise no_av from None  # the preferred backend's extra is the one to suggest
        return "opencv"


# The two optional backends, imported on first use: importing this module stays light, and a
# missing one is a MissingDependencyError that names the extra to install.


def _pyav() -> ModuleType:
    return require("av", "video", "video sampling")


def _opencv() -> ModuleType:
    return require("cv2", "faces", "video sampling")


def _open_pyav(path: Path):
    av = _pyav()
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except PermissionError as exc:
        raise InputError(f"{path}: permission denied; check the file's read permission") from exc
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable video ({_short(exc)})") from exc
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container


def _pyav_probe(path: Path) -> VideoInfo:
    """Container facts, plus the rotation of the first frame and, when the container does not
    state the duration, the duration measured from the packet timestamps."""
    container = _open_pyav(path)
    try:
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else None
        duration = _stated_duration(container, stream)
        rotation = _first_frame_rotation(container, stream)
        if duration is None:
            duration = _measured_duration(path, fps)
        frames = stream.frames or (round(duration * fps) if duration and fps else None)
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation % 180:
            width, height = height, width
        return VideoInfo(
            path=str(path),
            duration_s=duration,
            fps=fps,
            frame_count=frames,
            width=width,
            height=height,
            codec=stream.codec_context.name,
            container=container.format.name,
            rotation=rotation,
            backend="pyav",
        )
    finally:
        container.close()


def _stated_duration(container, stream) -> float | None:
    if stream.duration and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def _first_frame_rotation(container, stream) -> int:
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                return _normal_degrees(frame.rotation)
    except Exception:  # noqa: BLE001 - an undecodable start shows up when sampling; the probe stays lenient
        pass
    return 0


def _measured_duration(path: Path, fps: float | None) -> float | None:
    """Read the packets without decoding them: the end of the last timestamp, or for a raw
    stream without timestamps the packet count over the frame rate. A fresh open, because
    raw streams cannot seek back."""
    end, packets = None, 0
    try:
        with _open_pyav(path) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                packets += 1 if packet.size else 0
                if packet.pts is not None and packet.time_base is not None:
                    stop = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                    end = stop if end is None else max(end, stop)
            start = _stream_start(stream)
    except Exception:  # noqa: BLE001 - unreadable tail: the duration stays unknown
        return None
    if end is not None:
        return end - start
    return packets / fps if packets and fps else None


def _decode_pyav(av, container, stream) -> Iterator[tuple[object, bool]]:
    """(frame, damaged) pairs. A packet that fails to decode is skipped and the frames after
    it count as damaged until the next clean keyframe: they are predicted from broken data."""
    damaged = False
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            damaged = True
            continue
        for frame in frames:
            if frame.is_corrupt:
                damaged = True
            elif frame.key_frame:
                damaged = False
            yield frame, damaged


def _seek(container, stream, seconds: float) -> bool:
    """Seek to the keyframe before `seconds`; False if the container cannot seek."""
    try:
        container.seek(max(0, int(seconds / stream.time_base)), stream=stream, backward=True)
        return True
    except Exception:  # noqa: BLE001 - an unseekable stream just keeps decoding sequentially
        return False


def _stream_start(stream) -> float:
    if stream.start_time is not None and stream.time_base is not None:
        return float(stream.start_time * stream.time_base)
    return 0.0


def _frame_time(frame, start: float, count: int, fps: float | None) -> float:
    if frame.time is not None:
        return max(0.0, frame.time - start)
    return count / fps if fps else float(count)


def _half_frame(fps: float | None) -> float:
    return 0.5 / fps if fps else 1e-3


def _upright(frame) -> Image.Image:
    """The frame as RGB, rotated as the display matrix says (as players show it)."""
    image = frame.to_image()
    turn = _TURNS.get(_normal_degrees(frame.rotation))
    return image.transpose(turn) if turn is not None else image


# Pillow's ROTATE_* turn counter-clockwise, like the display-matrix angle.
_TURNS = {90: Image.Transpose.ROTATE_90, -90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180}


def _normal_degrees(degrees: float) -> int:
    """An angle as an int in (-180, 180]."""
    value = round(degrees) % 360
    return value - 360 if value > 180 else value


def _open_cv2(path: Path):
    cv2 = _opencv()
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"{path}: not a readable video")
    return capture


def _cv2_info(path: Path, capture) -> VideoInfo:
    cv2 = _opencv()
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps > 0 else None
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    count = count if count > 0 else None  # raw streams report nonsense
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC))
    codec = "".join(chr((fourcc >> 8 * i) & 0xFF) for i in range(4)).strip("\x00 ") or "unknown"
    return VideoInfo(
        path=str(path),
        duration_s=count / fps if count and fps else None,
        fps=fps,
        frame_count=count,
        width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        codec=codec.lower(),
        container=path.suffix.lstrip(".").lower() or "unknown",
        rotation=_normal_degrees(-capture.get(cv2.CAP_PROP_ORIENTATION_META)),  # cv2: clockwise
        backend="opencv",
    )


def _cv2_time(capture, count: int, fps: float | None) -> float:
    cv2 = _opencv()
    msec = capture.get(cv2.CAP_PROP_POS_MSEC)
    if msec > 0 or count == 0:
        return max(0.0, msec / 1000.0)
    return count / fps if fps else float(count)  # some containers report no position


def _short(exc: Exception) -> str:
    text = str(exc).split(": '", 1)[0]
    return text[:160] or type(exc).__name__
