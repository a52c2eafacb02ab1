"""Kinetics-Sounds: clips + OGM-GE's ``my_train.txt``/``my_test.txt`` -> frames, wavs, splits.

Input rows are ``<clip>,<num_frames>,<label>`` (e.g. ``--4-0ihtnBU_000058_000068,10,4``);
the clip is looked up as ``<videos>/<clip>.mp4`` or anywhere below ``<videos>``
(per-class subfolders work too). Output (data root = ``out``)::

    visual/<clip>/frame_00001.jpg, ...     1-based, 1 fps by default (mid-second frames)
    audio/<clip>.wav                       mono PCM16 16 kHz
    splits/{train,val,test}.txt            same row format, num_frames = frames written
    manifest.json, clips.jsonl
"""
from __future__ import annotations

import os
from typing import Any

from .common import RunOptions, Split, finish, make_settings
from .media import ClipJob, FrameSpec
from .splits import atomic_write_text, carve_validation, format_rows, read_rows

VIDEO_EXTS = ('.mp4', '.mkv', '.webm', '.avi')


def index_videos(videos_dir: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Map each video's stem to its path below ``videos_dir``; also return stems found twice."""
    if not os.path.isdir(videos_dir):
        raise FileNotFoundError(f'videos directory {videos_dir!r} not found')
    found: dict[str, list[str]] = {}
    for folder, _, names in os.walk(videos_dir):
        for n in names:
            stem, ext = os.path.splitext(n)
            if ext.lower() in VIDEO_EXTS and not n.startswith('.'):
                found.setdefault(stem, []).append(os.path.join(folder, n))
    index = {k: sorted(v)[0] for k, v in found.items()}
    dups = {k: sorted(v) for k, v in found.items() if len(v) > 1}
    return index, dups


def _read_list(path: str) -> list[tuple[int, str, int]]:
    rows = []
    for line, f in read_rows(path, min_fields=3):
        try:
            label = int(f[2])
        except ValueError:
            raise ValueError(f'{path!r} line {line}: label {f[2]!r} is not an integer; '
                             'expected rows <clip>,<num_frames>,<label>') from None
        rows.append((line, f[0], label))
    return rows


def preprocess_kinetics_sounds(videos_dir: str, train_list: str, test_list: str,
                               out_root: str, fps: int = 1, phase: float = 0.5,
                               sample_rate: int | None = 16000, jpeg_quality: int = 95,
                               short_side: int = 0, val_fraction: float = 0.1, seed: int = 0,
                               opts: RunOptions | None = None) -> dict:
    """Convert Kinetics-Sounds clips and write split files; return the manifest.

    ``phase=0.5`` and the ``frame_%05d.jpg`` names follow OGM-GE's
    ``video2frame-1fps.py``; the val split is carved per label from
    ``my_train.txt`` with ``seed``.
    """
    opts = opts or RunOptions()
    index, dups = index_videos(videos_dir)
    excluded: list[dict] = []
    lists = {'my_train.txt': train_list, 'my_test.txt': test_list}
    parsed = {}
    seen: dict[str, tuple[str, int]] = {}
    for name, path in (('train', train_list), ('test', test_list)):
        rows = []
        for line, clip, label in _read_list(path):
            if clip in seen:
                excluded.append(dict(file=path, line=line, id=clip, split=name, reason=(
                    f'{clip}: duplicate of {seen[clip][0]!r} line {seen[clip][1]}')))
                continue
            seen[clip] = (path, line)
            rows.append((line, clip, label))
        parsed[name] = rows
    val_ids = carve_validation([r[1] for r in parsed['train']], [r[2] for r in parsed['train']],
                               val_fraction, seed)
    parts = {'train': [r for r in parsed['train'] if r[1] not in val_ids],
             'val': [r for r in parsed['train'] if r[1] in val_ids],
             'test': parsed['test']}

    frames = FrameSpec(fps=fps, phase=phase, name_format='frame_{:05d}.jpg', start_index=1,
                       jpeg_quality=jpeg_quality, short_side=short_side)
    jobs = []
    for clip in sorted(seen):
        if clip in dups:
            opts.log(f'{clip}: found more than once {dups[clip]}; using {index[clip]}')
        jobs.append(ClipJob(clip_id=clip,
                            video=index.get(clip, os.path.join(videos_dir, f'{clip}.mp4')),
                            frames_dir=os.path.join(out_root, 'visual', clip),
                            audio_out=os.path.join(out_root, 'audio', f'{clip}.wav'),
                            frames=frames, sample_rate=sample_rate))
    splits = [Split(name, [(clip, label, [clip, None, label],
                            train_list if name != 'test' else test_list, line)
                           for line, clip, label in rows]) for name, rows in parts.items()]

    def write_split(name: str, rows: list, records: dict) -> str:
        path = os.path.join(out_root, 'splits', f'{name}.txt')
        atomic_write_text(path, format_rows((clip, records[clip]['num_frames'], label)
                                            for clip, label, _ in rows))
        return path

    settings = make_settings('kinetics-sounds', frames, sample_rate)
    extra: dict[str, Any] = dict(
        classes=sorted({label for rows in parsed.values() for _, _, label in rows}),
        split_settings=dict(seed=seed, val_fraction=val_fraction),
        duplicate_videos=dups)
    return finish(out_root, 'kinetics-sounds', settings, jobs, splits, write_split, lists,
                  opts, default_preset='ave-ks', excluded=excluded, extra=extra)


__all__ = ['preprocess_kinetics_sounds', 'index_videos']
