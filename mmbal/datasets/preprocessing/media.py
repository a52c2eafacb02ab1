"""Per-clip media conversion: video -> jpg frames at a fixed rate, audio -> mono PCM16 wav.

Everything goes through PyAV (FFmpeg's libraries), soundfile and OpenCV; no
``ffmpeg`` binary is needed. A clip's outputs appear atomically: frames are
written into a temporary sibling directory and renamed into place, the wav is
written to a temporary file and ``os.replace``-d. An input that cannot be
decoded completely (missing, not a media file, truncated, no stream) raises
:class:`BrokenInputError`, which the runner lists instead of stopping.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..transforms.media_checks import read_wav_header

#: A clip whose decoded length falls short of the length its container
#: declares by more than ``max(TRUNCATION_SLACK_S, TRUNCATION_SLACK_FRAC * declared)``
#: is reported as truncated.
TRUNCATION_SLACK_S = 0.5
TRUNCATION_SLACK_FRAC = 0.1


class BrokenInputError(Exception):
    """An input clip that is missing or cannot be decoded completely."""


@dataclass(frozen=True)
class FrameSpec:
    """How frames are sampled and written.

    Args:
        fps: Frames kept per second of video.
        phase: Offset of the sampling grid in frame periods: frame ``k`` is the
            first decoded frame at or after ``(k + phase) / fps`` seconds (half a
            source frame of tolerance). 0 keeps the frame that starts each second
            (OGM-GE's CREMA-D/VGGSound script), 0.5 the one in its middle (its
            AVE/Kinetics script).
        name_format: File name of frame ``i``, e.g. ``'{:05d}.jpg'``.
        start_index: Index of the first frame in ``name_format`` (0 or 1).
        jpeg_quality: OpenCV JPEG quality (OpenCV's default is 95).
        short_side: Resize so that the shorter side has this many pixels (keeps
            the aspect ratio); 0 keeps the source size.
    """

    fps: float = 1.0
    phase: float = 0.0
    name_format: str = '{:05d}.jpg'
    start_index: int = 0
    jpeg_quality: int = 95
    short_side: int = 0

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f'fps must be > 0, got {self.fps}')
        if not 0.0 <= self.phase < 1.0:
            raise ValueError(f'phase must be in [0, 1), got {self.phase}')
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f'jpeg_quality must be in [1, 100], got {self.jpeg_quality}')
        if self.short_side < 0:
            raise ValueError(f'short_side must be >= 0, got {self.short_side}')
        try:
            self.name_format.format(0)
        except (IndexError, KeyError, ValueError) as err:
            raise ValueError(f'name_format {self.name_format!r} does not format an '
                             f'int: {err}') from None


@dataclass(frozen=True)
class ClipJob:
    """One clip to convert.

    Args:
        clip_id: Identifier used in split files and the manifest.
        video: Input video (frames; also audio when ``audio_source`` is None).
        frames_dir: Output directory of the frames; None writes no frames.
        audio_out: Output wav; None writes no audio.
        audio_source: Input audio file; None reads the video's audio track.
        frames: Frame sampling and writing settings.
        sample_rate: Output sample rate in Hz; None keeps the input's rate.
    """

    clip_id: str
    video: str | None
    frames_dir: str | None
    audio_out: str | None
    audio_source: str | None = None
    frames: FrameSpec = FrameSpec()
    sample_rate: int | None = 16000

    @property
    def inputs(self) -> list[str]:
        """Input files this clip reads."""
        out = []
        if self.frames_dir is not None and self.video:
            out.append(self.video)
        if self.audio_out is not None:
            out.append(self.audio_source or self.video)
        return [p for p in dict.fromkeys(out) if p]

    @property
    def output_paths(self) -> list[str]:
        """Files and folders a finished clip leaves (the runner checks and cleans these)."""
        return [p for p in (self.frames_dir, self.audio_out) if p is not None]


# ----------------------------------------------------------------- helpers
def tmp_name(final: str) -> str:
    """Temporary sibling of ``final`` owned by this process (``.<name>.tmp-<pid>``)."""
    folder, name = os.path.split(final)
    return os.path.join(folder, f'.{name}.tmp-{os.getpid()}')


def is_tmp_name(name: str) -> bool:
    """Whether a directory entry is a leftover temporary output of :func:`tmp_name`."""
    return name.startswith('.') and '.tmp-' in name


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _require_file(path: str | None, what: str) -> str:
    if not path:
        raise BrokenInputError(f'no {what} given')
    if not os.path.isfile(path):
        raise BrokenInputError(f'missing {what} {path!r}')
    if os.path.getsize(path) == 0:
        raise BrokenInputError(f'empty {what} {path!r} (0 bytes)')
    return path


def _declared_seconds(container: Any, stream: Any) -> float | None:
    """Length the container declares for ``stream`` (stream header, else container)."""
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
        if seconds > 0:
            return seconds
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _check_length(path: str, what: str, decoded: float, declared: float | None) -> None:
    if declared is None:
        return
    slack = max(TRUNCATION_SLACK_S, TRUNCATION_SLACK_FRAC * declared)
    if decoded < declared - slack:
        raise BrokenInputError(
            f'truncated {what} in {path!r}: decoded {decoded:.2f} s of the {declared:.2f} s '
            'the container declares')


def check_wav_complete(path: str) -> None:
    """Raise :class:`BrokenInputError` if a RIFF/WAVE file is not one or holds fewer
    data bytes than its header declares (a truncated copy)."""
    header = read_wav_header(path)
    if header is None:
        raise BrokenInputError(f'{path!r} is not a RIFF/WAVE file')
    if header.data_offset is None:
        raise BrokenInputError(f'{path!r} has no data chunk (truncated header)')
    held = os.path.getsize(path) - header.data_offset
    if header.data_size is not None and held < header.data_size:
        raise BrokenInputError(f'truncated wav {path!r}: header declares {header.data_size} '
                               f'data bytes, the file holds {held}')


# ------------------------------------------------------------------ frames
def extract_frames(video: str, out_dir: str, spec: FrameSpec) -> tuple[int, str]:
    """Write frames of ``video`` sampled at ``spec.fps`` into ``out_dir``.

    Returns:
        (number of frames written, sha1 over the frame names and bytes in order).
    """
    import av
    import cv2

    _require_file(video, 'video')
    tmp = tmp_name(out_dir)
    _remove(tmp)
    os.makedirs(tmp)
    digest = hashlib.sha1()
    written = 0
    try:
        try:
            container = av.open(video)
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise BrokenInputError(f'cannot open video {video!r}: {err}') from err
        with container:
            if not container.streams.video:
                raise BrokenInputError(f'{video!r} has no video stream')
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            half = 0.5 / rate
            period = 1.0 / spec.fps
            t0 = None
            last = 0.0
            k = 0
            try:
                for i, frame in enumerate(container.decode(stream)):
                    t = frame.time if frame.time is not None else i / rate
                    if t0 is None:
                        t0 = t
                    rel = t - t0
                    last = max(last, rel)
                    if rel + half < (k + spec.phase) * period:
                        continue
                    img = frame.to_ndarray(format='bgr24')
                    if spec.short_side:
                        h, w = img.shape[:2]
                        scale = spec.short_side / min(h, w)
                        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                                         interpolation=cv2.INTER_AREA)
                    ok, buf = cv2.imencode('.jpg', img,
                                           [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])
                    if not ok:
                        raise RuntimeError(f'OpenCV could not encode frame {i} of {video!r}')
                    name = spec.name_format.format(spec.start_index + written)
                    data = buf.tobytes()
                    with open(os.path.join(tmp, name), 'wb') as f:
                        f.write(data)
                    digest.update(name.encode() + b'\0' + data)
                    written += 1
                    while rel + half >= (k + spec.phase) * period:
                        k += 1
            except av.error.FFmpegError as err:
                raise BrokenInputError(f'decoding video {video!r} failed after {last:.2f} s: '
                                       f'{err}') from err
            if t0 is None:
                raise BrokenInputError(f'{video!r} holds no decodable video frame')
            _check_length(video, 'video', last + 1.0 / rate,
                          _declared_seconds(container, stream))
        if written == 0:
            raise BrokenInputError(
                f'{video!r} is shorter ({last:.2f} s) than the first sampling time '
                f'{spec.phase / spec.fps:.2f} s')
        _remove(out_dir)
        os.makedirs(os.path.dirname(out_dir) or '.', exist_ok=True)
        os.replace(tmp, out_dir)
    except BaseException:
        _remove(tmp)
        raise
    return written, digest.hexdigest()


# ------------------------------------------------------------------- audio
def decode_audio(source: str, sample_rate: int | None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of ``source`` to mono int16 at ``sample_rate``.

    Downmix and resampling use FFmpeg's libswresample (as ``ffmpeg -ac 1 -ar``
    does, which is what the reference scripts ran). ``sample_rate=None`` keeps
    the stream's rate, and a mono PCM16 input then comes out bit-identical.
    """
    import av

    _require_file(source, 'audio source')
    if source.lower().endswith('.wav'):
        check_wav_complete(source)
    try:
        container = av.open(source)
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise BrokenInputError(f'cannot open audio source {source!r}: {err}') from err
    with container:
        if not container.streams.audio:
            raise BrokenInputError(f'{source!r} has no audio stream')
        stream = container.streams.audio[0]
        in_rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        if in_rate <= 0:
            raise BrokenInputError(f'{source!r}: audio stream reports no sample rate')
        rate = int(sample_rate or in_rate)
        resampler = av.AudioResampler(format='s16', layout='mono', rate=rate)
        chunks: list[np.ndarray] = []
        decoded = 0
        try:
            for frame in container.decode(stream):
                decoded += frame.samples
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as err:
            raise BrokenInputError(f'decoding audio of {source!r} failed after '
                                   f'{decoded / in_rate:.2f} s: {err}') from err
        if decoded == 0:
            raise BrokenInputError(f'{source!r} holds no decodable audio sample')
        _check_length(source, 'audio', decoded / in_rate, _declared_seconds(container, stream))
    wav = np.concatenate(chunks).astype(np.int16, copy=False)
    if wav.size == 0:
        raise BrokenInputError(f'{source!r}: resampling left 0 samples')
    return wav, rate


def write_wav(path: str, wav: np.ndarray, rate: int) -> str:
    """Write int16 mono ``wav`` as PCM16 atomically; return the file's sha1."""
    import soundfile as sf

    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tmp = tmp_name(path)
    try:
        sf.write(tmp, wav, rate, subtype='PCM_16', format='WAV')
        with open(tmp, 'rb') as f:
            sha1 = hashlib.sha1(f.read()).hexdigest()
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return sha1


# -------------------------------------------------------------------- clip
def process_clip(job: ClipJob) -> dict:
    """Convert one clip; return its record (counts and output checksums).

    Raises:
        BrokenInputError: An input is missing or cannot be decoded completely;
            no output of the clip is left behind.
    """
    record: dict[str, Any] = {'id': job.clip_id}
    for path in job.inputs:
        _require_file(path, 'input file')
    record['input_bytes'] = sum(os.path.getsize(p) for p in job.inputs)
    # Audio first: it is decoded in memory, so a broken track leaves no frames behind.
    wav = rate = None
    if job.audio_out is not None:
        wav, rate = decode_audio(job.audio_source or job.video, job.sample_rate)
    if job.frames_dir is not None:
        n, sha1 = extract_frames(job.video, job.frames_dir, job.frames)
        record.update(num_frames=n, frames_sha1=sha1)
    if wav is not None:
        record.update(num_samples=int(wav.size), sample_rate=int(rate),
                      audio_sha1=write_wav(job.audio_out, wav, rate))
    return record


def outputs_present(job: Any) -> bool:
    """Cheap check (one ``stat`` per output) that a finished clip's outputs are still there.

    ``job`` is a :class:`ClipJob` or any job with ``output_paths`` (e.g. UCF101's).
    """
    return all(os.path.exists(p) for p in job.output_paths)


__all__ = ['BrokenInputError', 'FrameSpec', 'ClipJob', 'extract_frames', 'decode_audio',
           'write_wav', 'process_clip', 'outputs_present', 'check_wav_complete',
           'tmp_name', 'is_tmp_name']
