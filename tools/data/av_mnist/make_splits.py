"""Carve AV-MNIST's validation split from its training arrays, once, and store it.

Writes ``<data_root>/splits/val_indices.npy``: the sorted int64 row indices of
``train_labels.npy`` held out for validation. :class:`mmbal.datasets.AVMNISTDataset`
reads it for ``split='val'`` and uses the other rows for ``split='train'``, so
every method trained on this data root sees the same split.

Usage::

    python tools/data/av_mnist/make_splits.py data/av-mnist               # 5,000 rows, seed 0
    python tools/data/av_mnist/make_splits.py data/av-mnist --num-val 6000 --seed 1 --force
    python tools/data/av_mnist/make_splits.py data/av-mnist --last   # MultiBench: rows 55,000..59,999

Random choice: ``np.random.default_rng(seed).permutation(N)[:num_val]``, sorted.
An existing file is kept unless it holds the same indices or ``--force`` is given.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import tempfile

import numpy as np

VAL_FILE = osp.join('splits', 'val_indices.npy')


def choose_val_indices(num_train: int, num_val: int, seed: int = 0,
                       last: bool = False) -> np.ndarray:
    """Sorted int64 indices of the ``num_val`` held-out rows out of ``num_train``."""
    if not 0 < num_val < num_train:
        raise ValueError(f'num_val must be in [1, {num_train - 1}] for {num_train} training '
                         f'rows, got {num_val}')
    if last:
        return np.arange(num_train - num_val, num_train, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(num_train)[:num_val]).astype(np.int64)


def num_train_rows(data_root: str) -> int:
    """Number of rows of ``train_labels.npy`` (memory-mapped, not read)."""
    path = osp.join(data_root, 'train_labels.npy')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path!r} not found: expected the AV-MNIST layout '
                                '(image/, audio/, train_labels.npy, test_labels.npy)')
    try:
        labels = np.load(path, mmap_mode='r', allow_pickle=False)
    except Exception as err:
        raise ValueError(f'Could not read {path!r} as a .npy array ({err})') from err
    if labels.ndim != 1:
        raise ValueError(f'{path!r} has shape {labels.shape}; expected N labels')
    return int(labels.shape[0])


def write_val_indices(data_root: str, indices: np.ndarray, force: bool = False) -> str:
    """Write ``splits/val_indices.npy`` atomically; refuse to replace different indices."""
    path = osp.join(data_root, VAL_FILE)
    if osp.exists(path) and not force:
        old = np.load(path, allow_pickle=False)
        if old.shape == indices.shape and np.array_equal(old, indices):
            return path
        raise FileExistsError(f'{path!r} exists and holds other indices; pass --force to '
                              'replace it (results on the old split are then not comparable)')
    os.makedirs(osp.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=osp.dirname(path), prefix='.tmp-', suffix='.npy')
    try:
        with os.fdopen(fd, 'wb') as f:
            np.save(f, indices, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('data_root', help='AV-MNIST directory (holds train_labels.npy)')
    parser.add_argument('--num-val', type=int, default=5000,
                        help='rows held out for validation (default 5000, as MultiBench)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random choice')
    parser.add_argument('--last', action='store_true',
                        help="hold out the last rows (MultiBench's choice) instead")
    parser.add_argument('--force', action='store_true', help='replace an existing file')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    num_train = num_train_rows(args.data_root)
    indices = choose_val_indices(num_train, args.num_val, args.seed, args.last)
    path = write_val_indices(args.data_root, indices, args.force)
    how = 'last rows' if args.last else f'seed {args.seed}'
    print(f'{path}: {len(indices)} of {num_train} training rows held out for validation '
          f'({how}); train keeps {num_train - len(indices)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
