"""Plot the scalar curves logged by ``tools/train.py`` runs into one PNG.

Each work dir holds ``<timestamp>/vis_data/scalars.json`` (one JSON object per
line) per launch; the launches of a resumed run are merged, later ones
overriding the values of the same step. Training lines (they carry ``epoch``
and ``iter``) are plotted against the iteration, validation lines against the
epoch. A key is a name or an ``fnmatch`` pattern (``accuracy/*``,
``balance/pdmp/*``), optionally qualified as ``train:KEY`` or ``val:KEY`` for
names logged in both phases (``time``, ``data_time``).

Example::

    python tools/analysis/plot_curves.py work_dirs/concat work_dirs/pdmp \
        --keys accuracy/fused loss 'balance/pdmp/*' --smooth 5 --out curves.png
"""
from __future__ import annotations

import argparse
import json
import math
import os.path as osp
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

PHASES = ('train', 'val')
# Bookkeeping fields of a record, not curves.
INDEX_KEYS = frozenset({'epoch', 'iter', 'step'})
DEFAULT_KEYS = ('val:accuracy/*',)

Series = Dict[float, float]          # step -> value
RunScalars = Dict[str, Dict[str, Series]]  # phase -> key -> series


def scalar_files(work_dir: str | Path) -> List[Path]:
    """The ``scalars.json`` files of a work dir, oldest launch first."""
    work_dir = Path(work_dir)
    files = sorted(work_dir.glob('*/vis_data/scalars.json'), key=lambda p: p.parts[-3])
    if not files:
        why = 'does not exist' if not work_dir.exists() else \
            'has no <timestamp>/vis_data/scalars.json'
        raise FileNotFoundError(f'work dir {str(work_dir)!r} {why}; is it a tools/train.py '
                                'work dir?')
    return files


def record_phase(record: dict) -> str:
    """``'train'`` for a training-iteration record, ``'val'`` for a validation one."""
    return 'train' if 'epoch' in record or 'iter' in record else 'val'


def load_scalars(work_dir: str | Path) -> RunScalars:
    """Load and merge every launch of a work dir into ``{phase: {key: {step: value}}}``.

    Launches are read in timestamp order and later values replace earlier ones
    of the same step; each series is returned sorted by step, keys in the
    order they were first logged.
    """
    scalars: RunScalars = {phase: {} for phase in PHASES}
    for path in scalar_files(work_dir):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f'{path}:{lineno}: not a JSON object ({e})') from e
            if not isinstance(record, dict):
                raise ValueError(f'{path}:{lineno}: not a JSON object (a '
                                 f'{type(record).__name__})')
            if 'step' not in record:
                continue
            if isinstance(record['step'], bool) or not isinstance(record['step'], (int, float)):
                raise ValueError(f'{path}:{lineno}: "step" must be a number, got '
                                 f'{record["step"]!r}')
            phase = scalars[record_phase(record)]
            for key, value in record.items():
                if key in INDEX_KEYS or isinstance(value, bool) or \
                        not isinstance(value, (int, float)):
                    continue
                phase.setdefault(key, {})[record['step']] = float(value)
    return {phase: {key: dict(sorted(series.items())) for key, series in keys.items()}
            for phase, keys in scalars.items()}


def split_key(key: str) -> Tuple[Tuple[str, ...], str]:
    """``'val:accuracy/*'`` -> ``(('val',), 'accuracy/*')``; unqualified -> both phases."""
    phase, sep, name = key.partition(':')
    if sep and phase in PHASES:
        return (phase,), name
    return PHASES, key


def available_keys(runs: Sequence[RunScalars]) -> List[Tuple[str, str]]:
    """Every ``(phase, key)`` logged by any run, in first-logged order."""
    seen: Dict[Tuple[str, str], None] = {}
    for run in runs:
        for phase in PHASES:
            for key in run[phase]:
                seen.setdefault((phase, key), None)
    return list(seen)


def resolve_keys(keys: Sequence[str], runs: Sequence[RunScalars]) -> List[Tuple[str, str]]:
    """Expand names and patterns to the ``(phase, key)`` curves to plot.

    Raises ``ValueError`` naming a key no run logged, with the keys that exist.
    """
    available = available_keys(runs)
    resolved: Dict[Tuple[str, str], None] = {}
    for key in keys:
        phases, pattern = split_key(key)
        matches = [(p, k) for p, k in available if p in phases and fnmatchcase(k, pattern)]
        if not matches:
            listing = '; '.join(
                f'{p}: ' + (', '.join(k for q, k in available if q == p) or '(none)')
                for p in PHASES)
            raise ValueError(f'key {key!r} was not logged by any run. Logged keys -- {listing}')
        for match in matches:
            resolved.setdefault(match, None)
    return list(resolved)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (shorter at the start)."""
    if window <= 1 or len(values) == 0:
        return values
    csum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (csum[idx] - csum[start]) / (idx - start)


def default_labels(work_dirs: Sequence[str | Path]) -> List[str]:
    """Work-dir names, as paths relative to their common parent when that tells them apart."""
    paths = [Path(w) for w in work_dirs]
    if len(paths) == 1:
        return [paths[0].resolve().name or str(paths[0])]
    resolved = [str(p.resolve()) for p in paths]
    common = osp.commonpath(resolved)
    labels = [osp.relpath(r, common) for r in resolved]
    if '.' in labels or len(set(labels)) < len(labels):
        return [str(p) for p in paths]
    return labels


def plot_curves(work_dirs: Sequence[str | Path], out: str | Path,
                keys: Sequence[str] = DEFAULT_KEYS, labels: Optional[Sequence[str]] = None,
                smooth_window: int = 1, ncols: int = 3) -> Path:
    """Render one subplot per key, one line per work dir, to the PNG ``out``.

    ``smooth_window`` smooths the training curves only (validation has one point
    per epoch).
    """
    if labels is None:
        labels = default_labels(work_dirs)
    elif len(labels) != len(work_dirs):
        raise ValueError(f'{len(labels)} labels for {len(work_dirs)} work dirs')
    runs = [load_scalars(w) for w in work_dirs]
    curves = resolve_keys(keys, runs)
    names = [k for _, k in curves]

    # Agg canvas on a bare Figure: no pyplot state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, len(curves)))
    nrows = math.ceil(len(curves) / ncols)
    fig = Figure(figsize=(5.5 * ncols, 3.8 * nrows), layout='constrained')
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (phase, key) in zip(axes, curves):
        for run, label in zip(runs, labels):
            series = run[phase].get(key)
            if not series:
                continue
            x = np.fromiter(series.keys(), dtype=float)
            y = np.fromiter(series.values(), dtype=float)
            if phase == 'train':
                y = smooth(y, smooth_window)
            style = {'marker': 'o', 'markersize': 3} if phase == 'val' else {}
            ax.plot(x, y, label=label, linewidth=1.2, **style)
        ax.set_title(f'{key} ({phase})' if names.count(key) > 1 else key)
        ax.set_xlabel('iteration' if phase == 'train' else 'epoch')
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize='small')
    for ax in axes[len(curves):]:
        ax.set_visible(False)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Plot the curves of tools/train.py runs')
    parser.add_argument('work_dirs', nargs='+', metavar='WORK_DIR')
    parser.add_argument('--keys', nargs='+', default=list(DEFAULT_KEYS),
                        help='names or fnmatch patterns, optionally train:KEY / val:KEY '
                             '(default: val:accuracy/*)')
    parser.add_argument('--out', default='curves.png', help='output PNG')
    parser.add_argument('--labels', nargs='+', help='legend labels, one per work dir')
    parser.add_argument('--smooth', type=int, default=1, metavar='N',
                        help='trailing moving average over N logged points of the '
                             'training curves')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    try:
        out = plot_curves(args.work_dirs, args.out, args.keys, args.labels, args.smooth)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'plot_curves: error: {e}') from e
    print(f'saved {out}')


if __name__ == '__main__':
    main()
