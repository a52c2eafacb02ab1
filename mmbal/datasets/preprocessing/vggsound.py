"""VGGSound: ``<ytid>_<start:06d>.mp4`` clips + ``vggsound.csv`` -> OGM-GE's layout plus splits.

``vggsound.csv`` rows are ``ytid,start,label,train|test`` (label a class name,
csv-quoted when it holds a comma). Output (data root = ``out``)::

    visual/Image-{fps:02d}-FPS/<ytid>_<start:06d>.mp4/00000.jpg, ...   (the dir keeps '.mp4')
    audio/<ytid>_<start:06d>.wav                                       mono PCM16 16 kHz
    splits/{train,val,test}.csv     vggsound.csv's rows verbatim (val rows keep 'train')
    manifest.json, clips.jsonl
"""
from __future__ import annotations

import os
from typing import Any

from .common import RunOptions, Split, finish, make_settings
from .kinetics_sounds import index_videos
from .media import ClipJob, FrameSpec
from .splits import atomic_write_text, carve_validation, format_rows, read_rows


def clip_name(ytid: str, start: int) -> str:
    """``<ytid>_<start:06d>``, the clip's file stem."""
    return f'{ytid}_{start:06d}'


def preprocess_vggsound(videos_dir: str, csv_path: str, out_root: str, fps: int = 1,
                        phase: float = 0.0, sample_rate: int | None = 16000,
                        jpeg_quality: int = 95, short_side: int = 0,
                        val_fraction: float = 0.1, seed: int = 0,
                        opts: RunOptions | None = None) -> dict:
    """Convert VGGSound clips and write split files; return the manifest.

    ``phase=0`` follows OGM-GE's ``video_preprocessing.py`` (the first frame of
    each second); the val split is carved per label from the train rows.
    """
    opts = opts or RunOptions()
    index, dups = index_videos(videos_dir)
    excluded: list[dict] = []
    parts: dict[str, list] = {'train': [], 'test': []}
    seen: dict[str, int] = {}
    for line, f in read_rows(csv_path, min_fields=4):
        ytid, start_text, label, split = f[0], f[1], f[2], f[3]
        try:
            start = int(start_text)
        except ValueError:
            raise ValueError(f'{csv_path!r} line {line}: start {start_text!r} is not an '
                             'integer; expected rows ytid,start,label,train|test') from None
        if split not in parts:
            raise ValueError(f'{csv_path!r} line {line}: split {split!r} is not train or test')
        clip = clip_name(ytid, start)
        if clip in seen:
            excluded.append(dict(file=csv_path, line=line, id=clip, split=split,
                                 reason=f'{clip}: duplicate of line {seen[clip]}'))
            continue
        seen[clip] = line
        parts[split].append((line, clip, label, [ytid, start_text, label, split]))
    train = parts['train']
    val_ids = carve_validation([r[1] for r in train], [r[2] for r in train], val_fraction, seed)
    named = {'train': [r for r in train if r[1] not in val_ids],
             'val': [r for r in train if r[1] in val_ids],
             'test': parts['test']}
    splits = [Split(name, [(clip, label, fields, csv_path, line)
                           for line, clip, label, fields in rows])
              for name, rows in named.items()]

    frames = FrameSpec(fps=fps, phase=phase, name_format='{:05d}.jpg', start_index=0,
                       jpeg_quality=jpeg_quality, short_side=short_side)
    frame_root = os.path.join(out_root, 'visual', f'Image-{fps:02d}-FPS')
    jobs = [ClipJob(clip_id=clip, video=index.get(clip, os.path.join(videos_dir, f'{clip}.mp4')),
                    frames_dir=os.path.join(frame_root, f'{clip}.mp4'),
                    audio_out=os.path.join(out_root, 'audio', f'{clip}.wav'),
                    frames=frames, sample_rate=sample_rate) for clip in sorted(seen)]

    def write_split(name: str, rows: list, records: dict) -> str:
        path = os.path.join(out_root, 'splits', f'{name}.csv')
        atomic_write_text(path, format_rows(fields for _, _, fields in rows))
        return path

    settings = make_settings('vggsound', frames, sample_rate)
    classes = sorted({r[2] for rows in parts.values() for r in rows})
    opts.log(f'VGGSound: {len(classes)} classes in {csv_path!r}')
    extra: dict[str, Any] = dict(classes=classes,
                                 split_settings=dict(seed=seed, val_fraction=val_fraction),
                                 duplicate_videos=dups)
    return finish(out_root, 'vggsound', settings, jobs, splits, write_split,
                  {'vggsound.csv': csv_path}, opts, default_preset='ave-ks',
                  excluded=excluded, extra=extra)


__all__ = ['preprocess_vggsound', 'clip_name']
