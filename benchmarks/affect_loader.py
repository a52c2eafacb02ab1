#!/usr/bin/env python
"""Samples per second of the affect loader on a MOSI-sized MultiBench pickle.

Writes a synthetic pickle in MultiBench's schema (``train``/``valid``/``test`` of
``vision``/``audio``/``text`` ``(N, T, D)`` float32 arrays front-padded to ``T``, ``labels``,
``id``; MOSI's sizes by default: 1284 training utterances, T = 50, D = 35 / 74 / 300, each
sample 10..50 real steps), or reads a real one with ``--pickle``, and times:

- ``build``: ``AffectDataset`` of the train split (the restricted unpickling of the whole
  file, padding removal, label checks), against a plain ``pickle.load`` of the same file;
- ``in-process``: ``dataset[i]`` over every sample (the packing);
- ``DataLoader``: the base config's loader (``sequence_collate``, batch ``--batch-size``)
  with each ``--workers`` count; with workers (persistent, as in the configs) two passes, the
  first including the workers' start-up.

Example::

    OMP_NUM_THREADS=1 python benchmarks/affect_loader.py --workers 0 2
"""
from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
from mmengine.registry import init_default_scope
from torch.utils.data import DataLoader

from mmbal.datasets import AffectDataset
from mmbal.structures.padded_sequence import sequence_collate

MODALITIES = ('audio', 'visual', 'text')
DIMS = {'vision': 35, 'audio': 74, 'text': 300}  # MultiBench's mosi_raw.pkl / mosei_raw.pkl


def synthetic_split(n: int, steps: int, seed: int) -> dict:
    """``n`` samples front-padded to ``steps``, each with 10..steps real steps."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(10, steps + 1, size=n)
    split = {}
    for key, dim in DIMS.items():
        arr = np.zeros((n, steps, dim), dtype=np.float32)
        for i, length in enumerate(lengths):
            arr[i, steps - length:] = rng.standard_normal((length, dim)) + 2.0
        split[key] = arr
    split['labels'] = rng.uniform(-3, 3, size=(n, 1, 1))
    split['id'] = np.array([f'utt{i}' for i in range(n)])
    return split


def write_pickle(path: Path, train: int, steps: int) -> Path:
    data = {'train': synthetic_split(train, steps, 0), 'valid': synthetic_split(8, steps, 1),
            'test': synthetic_split(8, steps, 2)}
    path.write_bytes(pickle.dumps(data, protocol=4))
    return path


def build(path: Path) -> AffectDataset:
    pipeline = [dict(type='PackMultimodalInputs', modalities=MODALITIES, sequences=MODALITIES)]
    return AffectDataset('mosi', 'train', str(path), modalities=MODALITIES, pipeline=pipeline,
                         empty_text='drop', nonfinite='zero', sample_cache=dict(mode='off'))


def measure(path: Path, workers: Sequence[int], batch_size: int) -> list[tuple[str, float, int]]:
    """``(what, seconds, samples)`` rows."""
    rows = []
    start = time.perf_counter()
    with open(path, 'rb') as f:
        pickle.load(f)
    rows.append(('plain pickle.load of the file (reference)', time.perf_counter() - start, 0))
    start = time.perf_counter()
    dataset = build(path)
    rows.append(('build: safe unpickling + padding removal', time.perf_counter() - start,
                 len(dataset)))
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    rows.append(('in-process dataset[i]', time.perf_counter() - start, len(dataset)))
    for n in workers:
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=n, shuffle=True,
                            persistent_workers=n > 0,
                            collate_fn=partial(sequence_collate, sequences=MODALITIES))
        for epoch in ('pass 1, worker start-up included', 'pass 2') if n else ('one pass', ):
            start = time.perf_counter()
            count = sum(len(batch['data_samples']['gt_label']) for batch in loader)
            rows.append((f'DataLoader, {n} workers, batch {batch_size}, {epoch}',
                         time.perf_counter() - start, count))
    return rows


def markdown(rows: Sequence[tuple[str, float, int]]) -> str:
    lines = ['| what | seconds | samples/s |', '|---|---:|---:|']
    for what, seconds, samples in rows:
        rate = f'{samples / seconds:.0f}' if samples else '-'
        lines.append(f'| {what} | {seconds:.3f} | {rate} |')
    return '\n'.join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--pickle', help='time this MultiBench pickle instead of a synthetic one')
    parser.add_argument('--train', type=int, default=1284, help='synthetic training samples')
    parser.add_argument('--steps', type=int, default=50, help='synthetic padded length T')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--workers', type=int, nargs='+', default=[0, 2])
    args = parser.parse_args(argv)
    for name in ('train', 'steps', 'batch_size'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.steps < 10:
        parser.error('--steps must be >= 10 (samples have 10..T real steps)')
    return args


def main(argv: Sequence[str] | None = None) -> list[tuple[str, float, int]]:
    args = parse_args(argv)
    init_default_scope('mmbal')
    with tempfile.TemporaryDirectory() as tmp:
        path = (Path(args.pickle) if args.pickle
                else write_pickle(Path(tmp) / 'mosi_synthetic.pkl', args.train, args.steps))
        rows = measure(path, args.workers, args.batch_size)
    print(markdown(rows))
    return rows


if __name__ == '__main__':
    main()
