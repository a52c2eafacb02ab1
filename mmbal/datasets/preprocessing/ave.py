"""AVE: ``AVE/<id>.mp4`` + ``Annotations.txt`` + official train/val/test lists -> our layout.

Output (data root = ``out``)::

    audio/<id>.wav                               mono PCM16 16 kHz (ffmpeg -ac 1 -ar 16000)
    visual/Image-{fps:02d}-FPS/<id>/00000.jpg, ...
    classes.txt                                  sorted categories of the lists read
    splits/{train,val,test}.txt                  the official lists (same '&' format)
    manifest.json, clips.jsonl

AVE ships an official validation list, so nothing is carved.
"""
from __future__ import annotations

import os
from typing import Any

from .common import RunOptions, Split, finish, make_settings
from .media import ClipJob, FrameSpec
from .splits import atomic_write_text, format_rows, read_rows

HEADER = ('Category', 'VideoID', 'Quality', 'StartTime', 'EndTime')
SET_FILES = {'train': 'trainSet.txt', 'val': 'valSet.txt', 'test': 'testSet.txt'}
RAW_LAYOUT = ('an AVE directory holding AVE/<id>.mp4, Annotations.txt (header '
              'Category&VideoID&Quality&StartTime&EndTime) and trainSet.txt, valSet.txt, '
              'testSet.txt (same format, no header)')


def read_ave_list(path: str, header: bool) -> list[tuple[int, list[str]]]:
    """Rows of an AVE '&' list; a header row is required (``header``) or tolerated."""
    rows = read_rows(path, delimiter='&', min_fields=5)
    if rows and [f.lower() for f in rows[0][1][:5]] == [h.lower() for h in HEADER]:
        return rows[1:]
    if header:
        raise ValueError(f'{path!r} line 1 is not the header {"&".join(HEADER)!r}')
    return rows


def preprocess_ave(raw_root: str, out_root: str, fps: int = 1, phase: float = 0.5,
                   sample_rate: int | None = 16000, jpeg_quality: int = 95,
                   short_side: int = 0, opts: RunOptions | None = None) -> dict:
    """Convert AVE and write its split files; return the manifest.

    Args:
        raw_root: Directory with ``AVE/``, ``Annotations.txt`` and the three lists.
        out_root: Output data root.
        fps: Frames per second kept (10 frames for a 10 s clip at 1 fps).
        phase: 0.5 takes the frame in the middle of each second, as OGM-GE's
            AVE frame script did.
        sample_rate: Output rate; 16 kHz as OGM-GE's ``ffmpeg -ar 16000``.
        opts: Run options.
    """
    opts = opts or RunOptions()
    video_dir = os.path.join(raw_root, 'AVE')
    ann_path = os.path.join(raw_root, 'Annotations.txt')
    if not os.path.isdir(video_dir):
        raise FileNotFoundError(f'{video_dir!r} not found: expected {RAW_LAYOUT}')
    set_paths = {s: os.path.join(raw_root, f) for s, f in SET_FILES.items()}
    for p in [ann_path, *set_paths.values()]:
        if not os.path.isfile(p):
            raise FileNotFoundError(f'{p!r} not found: expected {RAW_LAYOUT}')

    annotations = read_ave_list(ann_path, header=True)
    ann_label = {}
    for line, f in annotations:
        ann_label.setdefault(f[1], (f[0], line))
    excluded: list[dict] = []
    seen: dict[str, tuple[str, str, int]] = {}  # id -> (split, file, line)
    splits: list[Split] = []
    categories = {f[0] for _, f in annotations}
    for name, path in set_paths.items():
        split = Split(name)
        for line, f in read_ave_list(path, header=False):
            cat, vid = f[0], f[1]
            categories.add(cat)
            if vid in ann_label and ann_label[vid][0] != cat:
                excluded.append(dict(file=path, line=line, id=vid, split=name, reason=(
                    f'{vid}: category {cat!r} contradicts {ann_path!r} line '
                    f'{ann_label[vid][1]} ({ann_label[vid][0]!r})')))
                continue
            if vid in seen:
                s0, p0, l0 = seen[vid]
                excluded.append(dict(file=path, line=line, id=vid, split=name, reason=(
                    f'{vid}: duplicate of {p0!r} line {l0} ({s0}); kept there')))
                continue
            seen[vid] = (name, path, line)
            split.rows.append((vid, cat, f[:5], path, line))
        splits.append(split)
    classes = sorted(categories)

    frames = FrameSpec(fps=fps, phase=phase, name_format='{:05d}.jpg', start_index=0,
                       jpeg_quality=jpeg_quality, short_side=short_side)
    frame_root = os.path.join(out_root, 'visual', f'Image-{fps:02d}-FPS')
    ids = sorted(set(seen) | set(ann_label))
    jobs = [ClipJob(clip_id=vid, video=os.path.join(video_dir, f'{vid}.mp4'),
                    frames_dir=os.path.join(frame_root, vid),
                    audio_out=os.path.join(out_root, 'audio', f'{vid}.wav'),
                    frames=frames, sample_rate=sample_rate) for vid in ids]

    def write_split(name: str, rows: list, records: dict) -> str:
        path = os.path.join(out_root, 'splits', f'{name}.txt')
        atomic_write_text(path, format_rows((fields for _, _, fields in rows), delimiter='&'))
        return path

    atomic_write_text(os.path.join(out_root, 'classes.txt'), ''.join(c + '\n' for c in classes))
    opts.log(f'AVE: {len(classes)} categories in the lists read')
    settings = make_settings('ave', frames, sample_rate)
    extra: dict[str, Any] = dict(classes=classes)
    lists = {'Annotations.txt': ann_path, **{SET_FILES[s]: p for s, p in set_paths.items()}}
    return finish(out_root, 'ave', settings, jobs, splits, write_split, lists, opts,
                  default_preset='ave-ks', excluded=excluded, extra=extra)


__all__ = ['preprocess_ave', 'read_ave_list', 'HEADER', 'SET_FILES']
