"""Split files, seeded validation/actor splits and the manifest of a preprocessing run."""
from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import os
import random
import sys
from collections import Counter, defaultdict
from typing import Any, Hashable, Iterable, Sequence

from .runner import RunResult


# ------------------------------------------------------------------- files
def file_sha1(path: str) -> str:
    """Hex sha1 of a file's bytes."""
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8', newline='') as f:
        f.write(text)
    os.replace(tmp, path)


def read_rows(path: str, delimiter: str = ',', min_fields: int = 1,
              header: Sequence[str] | None = None) -> list[tuple[int, list[str]]]:
    """Rows of a delimited text file as ``(line number, fields)``; blank lines skipped.

    Args:
        path: The file (a UTF-8 byte-order mark is ignored, as in OGM-GE's csv files).
        delimiter: Field separator.
        min_fields: Rows with fewer fields raise ``ValueError`` naming file and line.
        header: If given, the first row must equal it and is skipped.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path!r} not found')
    with open(path, encoding='utf-8-sig', newline='') as f:
        rows = list(csv.reader(f, delimiter=delimiter))
    out = []
    for line_no, fields in enumerate(rows, start=1):
        fields = [x.strip() for x in fields]
        if not any(fields):
            continue
        if header is not None and not out and line_no == 1:
            if [h.lower() for h in fields] != [h.lower() for h in header]:
                raise ValueError(f'{path!r} line 1 is {delimiter.join(fields)!r}; expected '
                                 f'the header {delimiter.join(header)!r}')
            continue
        if len(fields) < min_fields:
            raise ValueError(f'{path!r} line {line_no}: {delimiter.join(fields)!r} has '
                             f'{len(fields)} field(s); expected at least {min_fields}')
        out.append((line_no, fields))
    return out


def format_rows(rows: Iterable[Sequence[Any]], delimiter: str = ',') -> str:
    """Rows as delimited text (csv quoting where a field needs it), ``\\n`` line ends."""
    buf = io.StringIO()
    if delimiter == ',':
        writer = csv.writer(buf, lineterminator='\n')
        writer.writerows([[str(x) for x in row] for row in rows])
    else:  # AVE's '&' files never quote
        for row in rows:
            buf.write(delimiter.join(str(x) for x in row) + '\n')
    return buf.getvalue()


# ------------------------------------------------------------------ splits
def carve_validation(keys: Sequence[Hashable], labels: Sequence[Hashable], fraction: float,
                     seed: int) -> set:
    """Pick a class-stratified validation subset of ``keys``, fixed by ``seed``.

    Per class with n members: ``round(fraction * n)`` keys, but at least 1 and
    at most n - 1 when n >= 2 (none when n == 1), drawn with
    ``random.Random(f'{seed}:{class}')`` from the class's keys in sorted order, so
    the result depends only on the seed and the set of (key, label) pairs, not
    on the file order.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f'validation fraction must be in [0, 1), got {fraction}')
    if len(keys) != len(labels):
        raise ValueError('keys and labels differ in length')
    by_class: dict[Hashable, list] = defaultdict(list)
    for k, y in zip(keys, labels):
        by_class[y].append(k)
    val: set = set()
    if fraction == 0:
        return val
    for y in sorted(by_class, key=str):
        members = sorted(set(by_class[y]), key=str)
        n = len(members)
        if n < 2:
            continue
        k = min(max(1, round(fraction * n)), n - 1)
        val.update(random.Random(f'{seed}:{y}').sample(members, k))
    return val


def split_groups(groups: Iterable[Hashable], val_fraction: float, test_fraction: float,
                 seed: int) -> tuple[list, list, list]:
    """Split distinct groups (e.g. actors) into train/val/test, fixed by ``seed``.

    The sorted groups are shuffled with ``random.Random(seed)``; the first
    ``max(1, round(test_fraction * G))`` go to test, the next
    ``max(1, round(val_fraction * G))`` to val, the rest to train (each list sorted).
    """
    uniq = sorted(set(groups), key=str)
    n_test = max(1, round(test_fraction * len(uniq)))
    n_val = max(1, round(val_fraction * len(uniq)))
    if len(uniq) < n_test + n_val + 1:
        raise ValueError(f'{len(uniq)} groups cannot be split into train/val/test with '
                         f'{n_val} val and {n_test} test groups')
    order = list(uniq)
    random.Random(seed).shuffle(order)
    test = sorted(order[:n_test], key=str)
    val = sorted(order[n_test:n_test + n_val], key=str)
    train = sorted(order[n_test + n_val:], key=str)
    return train, val, test


def class_counts(labels: Iterable[Hashable]) -> dict[str, int]:
    """``{str(class): count}`` sorted by class."""
    counts = Counter(labels)
    return {str(k): counts[k] for k in sorted(counts, key=lambda c: (str(type(c)), c))}


# ---------------------------------------------------------------- manifest
def _versions() -> dict:
    import av
    import cv2
    import numpy as np
    import soundfile

    from mmbal import __version__
    return {'mmbal': __version__, 'python': sys.version.split()[0], 'av': av.__version__,
            'ffmpeg_libavcodec': '.'.join(map(str, av.library_versions.get('libavcodec', ()))),
            'opencv': cv2.__version__, 'soundfile': soundfile.__version__,
            'numpy': np.__version__}


CHECKSUMS_NOTE = (
    'sha1 of the outputs, per clip in clips.jsonl: audio_sha1 = sha1 of the wav file, '
    'frames_sha1 = sha1 over (name, NUL, jpg bytes) of the frames in order. They pin down '
    'the data that training reads (they change with the FFmpeg/OpenCV versions, listed '
    'under versions). Inputs are identified by their byte size (input_bytes) only: hashing '
    'hundreds of GB of raw video would cost a second full read. The annotation and split '
    'files are hashed under lists.')


def write_manifest(out_root: str, dataset: str, settings: dict, result: RunResult,
                   splits: dict[str, list[tuple[str, Any]]], lists: dict[str, str],
                   excluded_rows: list[dict] | None = None,
                   extra: dict | None = None) -> dict:
    """Write ``out_root/manifest.json`` and ``out_root/clips.jsonl``; return the manifest.

    Args:
        splits: Split name -> ``(clip id, label)`` rows written for it.
        lists: Name -> path of every annotation/split file read or written (hashed).
        excluded_rows: Rows of the input lists left out of a split file, with the reason.
    """
    broken_ids = {b['id'] for b in result.broken}
    broken = [dict(b) for b in result.broken]
    clips_lines = ''.join(json.dumps(result.records[c], sort_keys=True) + '\n'
                          for c in sorted(result.records))
    atomic_write_text(os.path.join(out_root, 'clips.jsonl'), clips_lines)
    manifest = {
        'dataset': dataset,
        'complete': result.remaining == 0 and not result.interrupted,
        'created': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'command': [os.path.basename(sys.argv[0])] + sys.argv[1:],
        'settings': settings,
        'versions': _versions(),
        'clips': {
            'done': len(result.records),
            'broken': len(broken_ids),
            'converted_this_run': result.processed,
            'done_by_earlier_runs': result.skipped,
            'not_yet_converted': result.remaining,
        },
        'splits': {name: {'total': len(rows), 'per_class': class_counts(y for _, y in rows)}
                   for name, rows in splits.items()},
        'broken': broken,
        'excluded_rows': list(excluded_rows or []),
        'checksums': {
            'algorithm': 'sha1',
            'what': CHECKSUMS_NOTE,
            'clips_jsonl_sha1': hashlib.sha1(clips_lines.encode()).hexdigest(),
            'lists': {name: file_sha1(path) for name, path in sorted(lists.items())
                      if os.path.isfile(path)},
        },
    }
    if extra:
        manifest.update(extra)
    atomic_write_text(os.path.join(out_root, 'manifest.json'),
                      json.dumps(manifest, indent=1, sort_keys=False) + '\n')
    return manifest


def report(manifest: dict, log=print) -> None:
    """Print the counts and every broken clip and excluded row of a manifest."""
    clips = manifest['clips']
    log(f"{manifest['dataset']}: {clips['done']} clip(s) done "
        f"({clips['converted_this_run']} converted now, {clips['done_by_earlier_runs']} earlier), "
        f"{clips['broken']} broken, {clips['not_yet_converted']} not yet converted")
    for name, info in manifest['splits'].items():
        log(f"  {name}: {info['total']} clips, {len(info['per_class'])} classes")
    if manifest['broken']:
        log(f"broken inputs ({len(manifest['broken'])}), left out of the split files:")
        for b in manifest['broken']:
            log(f"  {b['id']}: {b['reason']}")
    if manifest['excluded_rows']:
        log(f"rows left out of split files ({len(manifest['excluded_rows'])}):")
        for r in manifest['excluded_rows']:
            log(f"  {r['file']} line {r['line']}: {r['reason']}")


__all__ = ['file_sha1', 'atomic_write_text', 'read_rows', 'format_rows', 'carve_validation',
           'split_groups', 'class_counts', 'write_manifest', 'report', 'CHECKSUMS_NOTE']
