"""CREMA-D: ``AudioWAV/<id>.wav`` + ``VideoFlash/<id>.flv`` -> OGM-GE's layout plus our splits.

Output (data root = ``out``)::

    audio/<id>.wav                         mono PCM16, the input's rate (16 kHz) by default
    visual/Image-{fps:02d}-FPS/<id>/00000.jpg, 00001.jpg, ...
    train.csv, test.csv                    OGM-GE's reference split, copied verbatim
    splits/reference/{train,val,test}.csv  val carved from the reference train
    splits/actor/{train,val,test}.csv      actor-disjoint, fixed seed
    manifest.json, clips.jsonl

Split rows are ``<id>,<EMO>`` without header, like OGM-GE's files.
"""
from __future__ import annotations

import os
import re
import shutil
from typing import Any

from .common import RunOptions, Split, finish, make_settings
from .media import ClipJob, FrameSpec
from .splits import atomic_write_text, carve_validation, format_rows, read_rows, split_groups

CLASSES = ('NEU', 'HAP', 'SAD', 'FEA', 'DIS', 'ANG')
#: ``<actor>_<sentence>_<emotion>_<level>``, e.g. ``1041_TIE_NEU_XX``.
ID_PATTERN = re.compile(r'^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$')
RAW_LAYOUT = ('a CREMA-D directory holding AudioWAV/<id>.wav and VideoFlash/<id>.flv '
              '(and optionally OGM-GE\'s train.csv/test.csv)')


def actor_of(clip_id: str) -> str:
    """Actor id: the first field of a clip id."""
    return clip_id.split('_', 1)[0]


def _stems(folder: str, ext: str) -> set[str]:
    return {os.path.splitext(n)[0] for n in os.listdir(folder)
            if n.lower().endswith(ext) and not n.startswith('.')}


def _read_reference(path: str) -> list[tuple[int, str, str]]:
    """``(line, id, EMO)`` rows of an OGM-GE csv, checked against the id's own emotion."""
    rows = []
    for line, fields in read_rows(path, min_fields=2):
        cid, emo = fields[0], fields[1]
        m = ID_PATTERN.match(cid)
        if m is None:
            raise ValueError(f'{path!r} line {line}: clip id {cid!r} is not '
                             '<actor>_<sentence>_<emotion>_<level> (e.g. 1041_TIE_NEU_XX)')
        if emo not in CLASSES:
            raise ValueError(f'{path!r} line {line}: emotion {emo!r} is not one of {CLASSES}')
        if m.group(3) != emo:
            raise ValueError(f'{path!r} line {line}: label {emo!r} contradicts the clip id '
                             f'{cid!r}')
        rows.append((line, cid, emo))
    return rows


def preprocess_crema_d(raw_root: str, out_root: str, fps: int = 1, phase: float = 0.0,
                       sample_rate: int | None = None, jpeg_quality: int = 95,
                       short_side: int = 0, reference_dir: str | None = None,
                       val_fraction: float = 0.1, actor_val_fraction: float = 0.1,
                       actor_test_fraction: float = 0.1, seed: int = 0,
                       opts: RunOptions | None = None) -> dict:
    """Convert CREMA-D and write its split files; return the manifest.

    Args:
        raw_root: Directory with ``AudioWAV/`` and ``VideoFlash/``.
        out_root: Output data root.
        fps: Frames per second kept (``Image-{fps:02d}-FPS``).
        phase: Frame grid offset (see :class:`FrameSpec`); 0 as OGM-GE's script.
        sample_rate: None keeps AudioWAV's rate (16 kHz): the reference loader
            reads AudioWAV itself and resamples to 22.05 kHz at load time.
        reference_dir: Directory with OGM-GE's ``train.csv``/``test.csv``; None
            looks in ``raw_root``. Without them no ``reference`` split is written.
        val_fraction: Per-class fraction of the reference train carved out as val.
        actor_val_fraction, actor_test_fraction: Fractions of the actors in the
            actor split's val and test.
        seed: Seed of both carves.
        opts: Run options.
    """
    opts = opts or RunOptions()
    log = opts.log
    audio_dir = os.path.join(raw_root, 'AudioWAV')
    video_dir = os.path.join(raw_root, 'VideoFlash')
    for d in (audio_dir, video_dir):
        if not os.path.isdir(d):
            raise FileNotFoundError(f'{d!r} not found: expected {RAW_LAYOUT}')

    ref_dir = reference_dir or raw_root
    ref_files = {s: os.path.join(ref_dir, f'{s}.csv') for s in ('train', 'test')}
    have_ref = all(os.path.isfile(p) for p in ref_files.values())
    if reference_dir and not have_ref:
        raise FileNotFoundError(f'reference split files {list(ref_files.values())} not found; '
                                "expected OGM-GE's data/CREMAD/train.csv and test.csv")
    reference = {s: _read_reference(p) for s, p in ref_files.items()} if have_ref else {}

    ids = _stems(audio_dir, '.wav') | _stems(video_dir, '.flv')
    for rows in reference.values():
        ids.update(cid for _, cid, _ in rows)
    excluded: list[dict] = []
    valid = []
    for cid in sorted(ids):
        m = ID_PATTERN.match(cid)
        if m is None or m.group(3) not in CLASSES:
            excluded.append(dict(file=raw_root, line=0, id=cid, split=None,
                                 reason=f'{cid}: file name is not <actor>_<sentence>_<emotion>'
                                 f'_<level> with an emotion in {CLASSES}; not converted'))
        else:
            valid.append(cid)

    frames = FrameSpec(fps=fps, phase=phase, name_format='{:05d}.jpg', start_index=0,
                       jpeg_quality=jpeg_quality, short_side=short_side)
    frame_root = os.path.join(out_root, 'visual', f'Image-{fps:02d}-FPS')
    jobs = [ClipJob(clip_id=cid, video=os.path.join(video_dir, f'{cid}.flv'),
                    frames_dir=os.path.join(frame_root, cid),
                    audio_out=os.path.join(out_root, 'audio', f'{cid}.wav'),
                    audio_source=os.path.join(audio_dir, f'{cid}.wav'),
                    frames=frames, sample_rate=sample_rate) for cid in valid]

    splits: list[Split] = []
    split_dir = os.path.join(out_root, 'splits')
    if have_ref:
        train_rows = reference['train']
        val_ids = carve_validation([r[1] for r in train_rows], [r[2] for r in train_rows],
                                   val_fraction, seed)
        src = {'train': ref_files['train'], 'test': ref_files['test']}
        parts = {'train': [r for r in train_rows if r[1] not in val_ids],
                 'val': [r for r in train_rows if r[1] in val_ids],
                 'test': reference['test']}
        for name, rows in parts.items():
            file = src['test' if name == 'test' else 'train']
            splits.append(Split(f'reference/{name}', [(cid, emo, [cid, emo], file, line)
                                                      for line, cid, emo in rows]))
    else:
        log(f'no OGM-GE train.csv/test.csv in {ref_dir!r}: the reference split is not '
            'written (pass --reference-dir); the actor split is')
    train_a, val_a, test_a = split_groups({actor_of(c) for c in valid}, actor_val_fraction,
                                          actor_test_fraction, seed)
    actor_split = {a: 'train' for a in train_a}
    actor_split.update({a: 'val' for a in val_a})
    actor_split.update({a: 'test' for a in test_a})
    for name in ('train', 'val', 'test'):
        splits.append(Split(f'actor/{name}', [
            (cid, ID_PATTERN.match(cid).group(3), [cid, ID_PATTERN.match(cid).group(3)],
             raw_root, 0) for cid in valid if actor_split[actor_of(cid)] == name]))

    def write_split(name: str, rows: list, records: dict) -> str:
        path = os.path.join(split_dir, f'{name}.csv')
        atomic_write_text(path, format_rows(fields for _, _, fields in rows))
        return path

    if have_ref:
        os.makedirs(out_root, exist_ok=True)
        for s, p in ref_files.items():
            if os.path.abspath(p) != os.path.abspath(os.path.join(out_root, f'{s}.csv')):
                shutil.copyfile(p, os.path.join(out_root, f'{s}.csv'))

    settings = make_settings('crema-d', frames, sample_rate)
    extra: dict[str, Any] = dict(
        classes=list(CLASSES),
        split_settings=dict(seed=seed, val_fraction=val_fraction,
                            actor_val_fraction=actor_val_fraction,
                            actor_test_fraction=actor_test_fraction,
                            reference=('OGM-GE train.csv/test.csv from ' + ref_dir) if have_ref
                            else None),
        actors=dict(train=train_a, val=val_a, test=test_a))
    lists = {f'reference:{s}.csv': p for s, p in ref_files.items() if have_ref}
    return finish(out_root, 'crema-d', settings, jobs, splits, write_split, lists, opts,
                  default_preset='crema-d', excluded=excluded, extra=extra)


__all__ = ['preprocess_crema_d', 'CLASSES', 'ID_PATTERN', 'actor_of']
