"""Confusion matrices of the fused output and of each modality branch, from a
predictions file (``tools/test.py ... --out preds.json --out-item preds``).

One PNG per output, ``confusion_<output>.png``: rows are the true classes,
columns the predicted ones; the colour is the share of the row (so classes of
different sizes compare), ``--include-values`` writes the counts in the cells.
Side by side, the matrices show which classes a weak branch confuses and
whether the fused model inherited them.

Example::

    python tools/analysis/confusion_matrix.py work_dirs/preds.json --out-dir work_dirs/cm
"""
import argparse
import os
import os.path as osp
from typing import Optional, Sequence

import numpy as np

from mmbal.evaluation import label_arrays, load_predictions
from mmbal.utils import new_figure


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Per-output confusion matrices')
    parser.add_argument('preds', help='predictions file of tools/test.py --out-item preds')
    parser.add_argument('--out-dir', required=True, help='directory for the PNGs')
    parser.add_argument('--include-values', action='store_true',
                        help='write the count in every cell')
    parser.add_argument('--cmap', default='viridis', help='matplotlib colour map')
    return parser.parse_args(argv)


def confusion(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(num_classes, num_classes)`` counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (gt, pred), 1)
    return matrix


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], title: str, path: str,
                   include_values: bool, cmap: str) -> None:
    """Save ``matrix`` as a PNG coloured by the share of each row."""
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    size = min(3 + 0.4 * len(classes), 40)
    fig = new_figure((size + 1.2, size), 'confusion_matrix.py')
    ax = fig.subplots()
    image = ax.imshow(share, cmap=cmap, vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, label='share of the true class')
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, [str(c) for c in classes], rotation=90 if len(classes) > 10 else 0)
    ax.set_yticks(ticks, [str(c) for c in classes])
    ax.set_xlabel('predicted class')
    ax.set_ylabel('true class')
    ax.set_title(title)
    if include_values:
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha='center', va='center', fontsize=7,
                    color='black' if share[i, j] > 0.5 else 'white')
    fig.savefig(path, dpi=80)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    doc = load_predictions(args.preds)
    _, gt, preds = label_arrays(doc)
    classes = doc['classes']
    os.makedirs(args.out_dir, exist_ok=True)
    print(f'{args.preds}: {len(gt)} samples, {len(classes)} classes')
    for output, pred in preds.items():
        matrix = confusion(gt, pred, len(classes))
        right = int(np.trace(matrix))
        path = osp.join(args.out_dir, f'confusion_{output}.png')
        plot_confusion(matrix, classes, f'{output}: {right}/{len(gt)} right', path,
                       args.include_values, args.cmap)
        print(f'{output:>8}: {100 * right / len(gt):6.2f}% right ({right}/{len(gt)}) -> {path}')


if __name__ == '__main__':
    main()
