"""UCF101: the official split lists; raw ``.avi`` -> RGB frames + optical flow (two-stream layout).

Inputs::

    UCF-101/<Class>/v_<Class>_gXX_cYY.avi
    ucfTrainTestlist/classInd.txt           "<index> <Class>", index 1..101
    ucfTrainTestlist/trainlist0N.txt        "<Class>/v_..._gXX_cYY.avi <index>"
    ucfTrainTestlist/testlist0N.txt         "<Class>/v_..._gXX_cYY.avi"

Output (data root = ``out``), the common pre-extracted layout plus our split files::

    jpegs_256/<video>/frame000001.jpg ...       RGB, every frame, shorter side 256
    tvl1_flow/u/<video>/frame000001.jpg ...     flow of frames (i, i+1), x component
    tvl1_flow/v/<video>/frame000001.jpg ...     y component (N - 1 flow frames for N frames)
    classes.txt                                 line i = class of label i (classInd order)
    splits/split{N}/{train,val,test}.txt        rows "<video>,<label>" (label 0-based)
    manifest.json, clips.jsonl

The flow folder keeps the name ``tvl1_flow`` whatever the method, so one reader
reads downloaded and our own data; the manifest's ``flow.method`` says which was
used. Flow is quantised as :mod:`.flow` describes.

Validation: UCF101 ships no val split. Val is carved from each official train
list by whole groups (``gXX``: clips of one group share actor and scene, and the
official splits keep groups apart): per class, ``val_fraction`` of its train
groups, drawn with :func:`~.splits.carve_validation` and ``seed``.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .common import RunOptions, Split, finish
from .flow import DEFAULT_BOUND, flow_estimator, quantize_flow, resolve_method
from .media import (BrokenInputError, _check_length, _declared_seconds, _remove, _require_file,
                    tmp_name)
from .splits import atomic_write_text, carve_validation, format_rows, read_rows

SPLIT_IDS = (1, 2, 3)
VIDEO_PATTERN = re.compile(r'^v_([A-Za-z]+)_g(\d+)_c(\d+)$')
FRAME_NAME = 'frame{:06d}.jpg'
RGB_DIR = 'jpegs_256'
FLOW_DIR = 'tvl1_flow'
FORMAT_VERSION = 1
RAW_LAYOUT = ('a directory holding UCF-101/<Class>/v_<Class>_gXX_cYY.avi and '
              'ucfTrainTestlist/ (classInd.txt, trainlist0N.txt, testlist0N.txt)')


# ------------------------------------------------------------ official lists
@dataclass(frozen=True)
class ListRow:
    """One row of an official list: the video, its class index (0-based) and where it came from."""

    video: str
    label: int
    group: str
    source: str
    line: int


def read_class_index(path: str) -> tuple[str, ...]:
    """Class names of ``classInd.txt`` (``"<index> <name>"``, indices 1, 2, ... in order)."""
    names = []
    for line, fields in read_rows(path, delimiter=' ', min_fields=2):
        if fields[0] != str(len(names) + 1):
            raise ValueError(f'{path!r} line {line}: index {fields[0]!r}; expected '
                             f'{len(names) + 1} (rows "<index> <Class>" numbered from 1)')
        names.append(fields[1])
    if not names:
        raise ValueError(f'{path!r} holds no class')
    return tuple(names)


def read_split_list(path: str, classes: Sequence[str], labelled: bool) -> list[ListRow]:
    """Rows of ``trainlist0N.txt`` (``labelled``: ``"<Class>/<video>.avi <index>"``) or
    ``testlist0N.txt`` (``"<Class>/<video>.avi"``); the label is checked against the folder."""
    rows = []
    for line, fields in read_rows(path, delimiter=' ', min_fields=2 if labelled else 1):
        rel = fields[0]
        folder, _, name = rel.rpartition('/')
        video, ext = os.path.splitext(name)
        where = f'{path!r} line {line}'
        if folder not in classes:
            raise ValueError(f'{where}: class folder {folder!r} of {rel!r} is not in '
                             f'classInd.txt ({len(classes)} classes)')
        label = classes.index(folder)
        if labelled and fields[1] != str(label + 1):
            raise ValueError(f'{where}: label {fields[1]!r} contradicts the class folder '
                             f'{folder!r} (index {label + 1} in classInd.txt)')
        m = VIDEO_PATTERN.match(video)
        if ext.lower() != '.avi' or m is None:
            raise ValueError(f'{where}: {rel!r} is not <Class>/v_<Class>_gXX_cYY.avi')
        rows.append(ListRow(video, label, f'{folder}/g{m.group(2)}', path, line))
    return rows


def official_splits(list_dir: str, split_ids: Sequence[int] = SPLIT_IDS,
                    val_fraction: float = 0.1, seed: int = 0
                    ) -> tuple[tuple[str, ...], dict[str, list[ListRow]], dict[str, str]]:
    """Read the official lists and carve val by groups.

    Returns:
        (classes, ``{'split1/train': rows, 'split1/val': ..., ...}``, ``{file name: path}``
        of the list files read).
    """
    class_file = os.path.join(list_dir, 'classInd.txt')
    if not os.path.isfile(class_file):
        raise FileNotFoundError(f'{class_file!r} not found: expected the official '
                                'ucfTrainTestlist directory (classInd.txt, trainlist0N.txt, '
                                'testlist0N.txt)')
    classes = read_class_index(class_file)
    lists = {'classInd.txt': class_file}
    parts: dict[str, list[ListRow]] = {}
    for n in split_ids:
        if n not in SPLIT_IDS:
            raise ValueError(f'UCF101 split {n!r} does not exist; expected one of {SPLIT_IDS}')
        train_path = os.path.join(list_dir, f'trainlist{n:02d}.txt')
        test_path = os.path.join(list_dir, f'testlist{n:02d}.txt')
        for p in (train_path, test_path):
            if not os.path.isfile(p):
                raise FileNotFoundError(f'{p!r} not found: split {n} needs trainlist{n:02d}.txt '
                                        f'and testlist{n:02d}.txt')
            lists[os.path.basename(p)] = p
        train = read_split_list(train_path, classes, labelled=True)
        test = read_split_list(test_path, classes, labelled=False)
        _check_disjoint(train, test)
        groups = sorted({(r.group, r.label) for r in train})
        val_groups = carve_validation([g for g, _ in groups], [y for _, y in groups],
                                      val_fraction, seed)
        parts[f'split{n}/train'] = [r for r in train if r.group not in val_groups]
        parts[f'split{n}/val'] = [r for r in train if r.group in val_groups]
        parts[f'split{n}/test'] = test
    return classes, parts, lists


def _check_disjoint(train: list[ListRow], test: list[ListRow]) -> None:
    for rows in (train, test):
        seen: dict[str, ListRow] = {}
        for r in rows:
            if r.video in seen:
                first = seen[r.video]
                raise ValueError(f'{r.source!r} line {r.line}: {r.video} is listed again '
                                 f'(first on line {first.line}); expected each video once')
            seen[r.video] = r
    shared = {r.video for r in train} & {r.video for r in test}
    if shared:
        raise ValueError(f'{train[0].source!r} and {test[0].source!r} share '
                         f'{len(shared)} videos, e.g. {sorted(shared)[:3]}; expected disjoint '
                         'official train and test lists')


def split_path(out_root: str, name: str) -> str:
    """``splits/<name>.txt`` under ``out_root`` (``name`` e.g. ``'split1/val'``)."""
    return os.path.join(out_root, 'splits', f'{name}.txt')


def write_split_file(out_root: str, name: str, rows: Sequence[tuple[str, int]]) -> str:
    """Write ``(video, label)`` rows as ``splits/<name>.txt``; return its path."""
    path = split_path(out_root, name)
    atomic_write_text(path, format_rows(rows))
    return path


def write_classes(out_root: str, classes: Sequence[str]) -> None:
    """``classes.txt``: line i names label i."""
    atomic_write_text(os.path.join(out_root, 'classes.txt'), ''.join(c + '\n' for c in classes))


def write_official_splits(list_dir: str, out_root: str, split_ids: Sequence[int] = SPLIT_IDS,
                          val_fraction: float = 0.1, seed: int = 0) -> dict[str, int]:
    """Split files for an already extracted layout (downloaded ``jpegs_256``/``tvl1_flow``).

    Returns:
        ``{'split1/train': rows, ...}`` counts.
    """
    classes, parts, _ = official_splits(list_dir, split_ids, val_fraction, seed)
    write_classes(out_root, classes)
    for name, rows in parts.items():
        write_split_file(out_root, name, [(r.video, r.label) for r in rows])
    return {name: len(rows) for name, rows in parts.items()}


# -------------------------------------------------------------- per clip
@dataclass(frozen=True)
class UCF101Job:
    """One video to convert into RGB frames and flow.

    Args:
        clip_id: The video name (``v_<Class>_gXX_cYY``).
        video: The ``.avi``.
        rgb_dir, flow_u_dir, flow_v_dir: Output folders.
        flow_method: ``'tvl1'`` or ``'farneback'`` (resolved in the main process).
        bound: Flow clipping bound in pixels (quantisation).
        short_side: Resize frames so the shorter side has this many pixels; 0 keeps them.
        jpeg_quality: OpenCV JPEG quality.
    """

    clip_id: str
    video: str
    rgb_dir: str
    flow_u_dir: str
    flow_v_dir: str
    flow_method: str
    bound: float = DEFAULT_BOUND
    short_side: int = 256
    jpeg_quality: int = 95

    @property
    def inputs(self) -> list[str]:
        """Input files this clip reads."""
        return [self.video]

    @property
    def output_paths(self) -> list[str]:
        """The three folders a finished clip leaves."""
        return [self.rgb_dir, self.flow_u_dir, self.flow_v_dir]


def _declared_frames(video: str) -> tuple[float | None, float]:
    """(seconds the container declares, frame rate), read from the header with PyAV."""
    import av
    try:
        with av.open(video) as container:
            if not container.streams.video:
                raise BrokenInputError(f'{video!r} has no video stream')
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            if stream.frames:  # AVI headers state the frame count
                return stream.frames / rate, rate
            return _declared_seconds(container, stream), rate
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise BrokenInputError(f'cannot open video {video!r}: {err}') from err


def _decode_frames(video: str, short_side: int):
    """Yield the RGB frames (H, W, 3) of ``video`` with decord, resized to ``short_side``.

    A video decoding to fewer frames than its header declares (beyond the slack of
    :func:`~.media._check_length`) is truncated: :class:`BrokenInputError`.
    """
    import cv2
    import decord
    declared, rate = _declared_frames(video)
    try:
        reader = decord.VideoReader(video, ctx=decord.cpu(0))
        total = len(reader)
    except Exception as err:  # decord raises its own DECORDError, RuntimeError, ...
        raise BrokenInputError(f'cannot open video {video!r} with decord '
                               f'({type(err).__name__}: {err})') from err
    _check_length(video, 'video', total / rate, declared)
    if total < 2:
        raise BrokenInputError(f'{video!r} holds {total} frame(s); flow needs at least 2')
    for start in range(0, total, 32):
        try:
            batch = reader.get_batch(list(range(start, min(total, start + 32)))).asnumpy()
        except Exception as err:
            raise BrokenInputError(f'decoding {video!r} failed at frame {start} of {total} '
                                   f'({type(err).__name__}: {err})') from err
        for img in batch:
            if short_side:
                h, w = img.shape[:2]
                scale = short_side / min(h, w)
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
                img = cv2.resize(img, size, interpolation=interp)
            yield img


def process_ucf101_clip(job: UCF101Job) -> dict:
    """Convert one video; return its record (counts, checksums, flow method).

    Raises:
        BrokenInputError: The video is missing or cannot be decoded; nothing is left behind.
    """
    import cv2
    _require_file(job.video, 'video')
    estimate = flow_estimator(job.flow_method)
    finals = job.output_paths
    tmps = [tmp_name(p) for p in finals]
    for t in tmps:
        _remove(t)
        os.makedirs(t)
    rgb_tmp, u_tmp, v_tmp = tmps
    digests = [hashlib.sha1(), hashlib.sha1()]
    quality = [cv2.IMWRITE_JPEG_QUALITY, job.jpeg_quality]

    def write(folder: str, index: int, img: np.ndarray, digest) -> None:
        ok, buf = cv2.imencode('.jpg', img, quality)
        if not ok:
            raise RuntimeError(f'OpenCV could not encode frame {index} of {job.video!r}')
        name = FRAME_NAME.format(index)
        data = buf.tobytes()
        with open(os.path.join(folder, name), 'wb') as f:
            f.write(data)
        digest.update(name.encode() + b'\0' + data)

    frames = 0
    try:
        prev = None
        for rgb in _decode_frames(job.video, job.short_side):
            frames += 1
            write(rgb_tmp, frames, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), digests[0])
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            if prev is not None:
                u, v = quantize_flow(estimate(prev, grey), job.bound)
                write(u_tmp, frames - 1, u, digests[1])
                write(v_tmp, frames - 1, v, digests[1])
            prev = grey
        for t, final in zip(tmps, finals):
            _remove(final)
            os.makedirs(os.path.dirname(final) or '.', exist_ok=True)
            os.replace(t, final)
    except BaseException:
        for t in tmps:
            _remove(t)
        raise
    return dict(id=job.clip_id, input_bytes=os.path.getsize(job.video), num_frames=frames,
                num_flow_frames=frames - 1, frames_sha1=digests[0].hexdigest(),
                flow_sha1=digests[1].hexdigest(), flow_method=job.flow_method)


# ------------------------------------------------------------------- run
def preprocess_ucf101(raw_root: str, out_root: str, list_dir: str | None = None,
                      split_ids: Sequence[int] = SPLIT_IDS, flow_method: str = 'auto',
                      bound: float = DEFAULT_BOUND, short_side: int = 256,
                      jpeg_quality: int = 95, val_fraction: float = 0.1, seed: int = 0,
                      opts: RunOptions | None = None) -> dict:
    """Convert the listed UCF101 videos and write the split files; return the manifest.

    Args:
        raw_root: Directory with ``UCF-101/`` (and ``ucfTrainTestlist/`` unless ``list_dir``).
        out_root: Output data root.
        list_dir: Directory of the official lists; None: ``raw_root/ucfTrainTestlist``.
        split_ids: Official splits to write (all three by default).
        flow_method: ``'auto'`` (TV-L1 where OpenCV has it, else Farneback), ``'tvl1'``
            or ``'farneback'``.
        bound: Flow clipping bound of the JPEG quantisation, in pixels.
        short_side: Shorter side of the written frames (256: the layout's name); 0 keeps
            the source size (UCF101's 320x240).
        val_fraction, seed: The group-wise val carve.
        opts: Run options.
    """
    import decord
    opts = opts or RunOptions()
    if opts.spec_cache_dir:
        raise ValueError(f'UCF101 has no audio, so there is no spectrogram cache to fill; got '
                         f'spec_cache_dir={opts.spec_cache_dir!r} (leave it None)')
    if jpeg_quality < 1 or jpeg_quality > 100:
        raise ValueError(f'jpeg_quality must be in [1, 100], got {jpeg_quality}')
    if short_side < 0:
        raise ValueError(f'short_side must be >= 0, got {short_side}')
    video_root = os.path.join(raw_root, 'UCF-101')
    if not os.path.isdir(video_root):
        raise FileNotFoundError(f'{video_root!r} not found: expected {RAW_LAYOUT}')
    method = resolve_method(flow_method)
    classes, parts, lists = official_splits(list_dir or os.path.join(raw_root, 'ucfTrainTestlist'),
                                            split_ids, val_fraction, seed)
    videos: dict[str, str] = {}
    for rows in parts.values():
        for r in rows:
            videos.setdefault(r.video, os.path.join(video_root, classes[r.label],
                                                    f'{r.video}.avi'))
    jobs = [UCF101Job(clip_id=vid, video=path, rgb_dir=os.path.join(out_root, RGB_DIR, vid),
                      flow_u_dir=os.path.join(out_root, FLOW_DIR, 'u', vid),
                      flow_v_dir=os.path.join(out_root, FLOW_DIR, 'v', vid),
                      flow_method=method, bound=bound, short_side=short_side,
                      jpeg_quality=jpeg_quality) for vid, path in sorted(videos.items())]
    splits = [Split(name, [(r.video, r.label, [r.video, r.label], r.source, r.line)
                           for r in rows]) for name, rows in parts.items()]

    def write_split(name: str, rows: list, records: dict) -> str:
        return write_split_file(out_root, name, [fields for _, _, fields in rows])

    write_classes(out_root, classes)
    flow = dict(method=method, bound=bound, quantisation=(
        'u, v clipped to [-bound, bound] px, q = round((f + bound) * 255 / (2 * bound))'))
    settings = dict(dataset='ucf101', format_version=FORMAT_VERSION, flow=flow,
                    short_side=short_side, jpeg_quality=jpeg_quality, frame_name=FRAME_NAME)
    opts.log(f'UCF101: {len(jobs)} videos, {len(classes)} classes, flow method {method}')
    extra = dict(classes=list(classes), flow=flow, frame_decoder=f'decord {decord.__version__}',
                 split_settings=dict(seed=seed, val_fraction=val_fraction, val_by='group',
                                     splits=list(split_ids)))
    return finish(out_root, 'ucf101', settings, jobs, splits, write_split, lists, opts,
                  default_preset='', extra=extra, process=process_ucf101_clip)


__all__ = ['preprocess_ucf101', 'process_ucf101_clip', 'UCF101Job', 'official_splits',
           'write_official_splits', 'read_class_index', 'read_split_list', 'ListRow',
           'SPLIT_IDS', 'FRAME_NAME', 'RGB_DIR', 'FLOW_DIR']
