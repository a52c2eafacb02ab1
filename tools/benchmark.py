"""Run a matrix of configs x seeds and tabulate the val-selected test metrics.

Each run trains with ``tools/train.py`` (model selection on val, then the test
split), in ``<work-dir>/<name>/seed<k>``. A finished run (its
``test_results.json`` exists) is not run again, so an interrupted benchmark
continues where it stopped. ``--extra-split`` also scores the val-selected
checkpoint on other splits (e.g. AV-Digits' ``test_human``).

Example::

    python tools/benchmark.py configs/concat/concat_r18_avdigits.py \
        configs/unimodal/audio-only_r18_avdigits.py --seeds 0 1 2 \
        --extra-split test_human --work-dir work_dirs/bench_default
"""
import argparse
import csv
import json
import os.path as osp
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Benchmark configs over seeds')
    parser.add_argument('configs', nargs='+', help='config files')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--work-dir', default='work_dirs/benchmark')
    parser.add_argument('--extra-split', nargs='*', default=[],
                        help='also test the val-selected checkpoint on these splits')
    parser.add_argument('--cfg-options', nargs='*', default=[],
                        help='key=value overrides passed to every run')
    parser.add_argument('--title', default='Benchmark')
    return parser.parse_args()


def run_name(config: str) -> str:
    return osp.splitext(osp.basename(config))[0]


def run_one(config: str, seed: int, work_dir: Path, options: List[str],
            extra_splits: List[str]) -> None:
    """Train + test one (config, seed) unless its results already exist."""
    done = work_dir / 'test_results.json'
    if not done.exists():
        start = time.time()
        cmd = [sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir),
               '--cfg-options', f'randomness.seed={seed}', *options]
        log = work_dir / 'benchmark_stdout.log'
        work_dir.mkdir(parents=True, exist_ok=True)
        with open(log, 'w') as f:
            code = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        if code != 0:
            raise RuntimeError(f'{" ".join(cmd)} failed with code {code}; see {log}')
        (work_dir / 'wall_time.json').write_text(json.dumps({'seconds': time.time() - start}))
    if not done.exists():
        raise RuntimeError(f'{config} (seed {seed}) finished without writing {done}')
    record = read_json(done)
    for split in extra_splits:
        out = work_dir / f'test_{split}.json'
        if out.exists():
            continue
        cmd = [sys.executable, 'tools/test.py', config, checkpoint_of(record, done),
               '--work-dir', str(work_dir / f'test_{split}'), '--out', str(out),
               '--cfg-options', f'test_dataloader.dataset.split={split}', *options]
        code = subprocess.call(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
        if code != 0:
            raise RuntimeError(f'{" ".join(cmd)} failed with code {code}')


def read_json(path: Path) -> object:
    """The content of a JSON file of a run, parsed as data; errors name the file."""
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f'{path} is not valid JSON ({err})') from err


def checkpoint_of(record: object, path: Path) -> str:
    """The val-selected checkpoint named by ``test_results.json``, as an absolute path.

    Relative paths are read from the repository root (where the runs execute); an
    absolute path can never be mistaken for an option of ``tools/test.py``.
    """
    ckpt = record.get('checkpoint') if isinstance(record, dict) else None
    if not isinstance(ckpt, str) or not ckpt:
        raise ValueError(f'{path}: "checkpoint" must be the path of the val-selected '
                         f'checkpoint (a non-empty string), got {ckpt!r}; --extra-split '
                         f'needs it (train with save_best)')
    return str(ROOT / ckpt)


def metrics_of(value: object, path: Path) -> Dict[str, float]:
    """``value`` checked to be ``{metric name: number}``; errors name the file and key."""
    if not isinstance(value, dict):
        raise ValueError(f'{path}: expected metrics as {{name: number}}, got '
                         f'{type(value).__name__}')
    for key, number in value.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ValueError(f'{path}: metric {key!r} must be a number, got {number!r}')
    return {key: float(number) for key, number in value.items()}


def load_metrics(work_dir: Path, split: str) -> Optional[Dict[str, float]]:
    """The test metrics of a run on ``split``, or None if it has none yet."""
    if split == 'test':
        path = work_dir / 'test_results.json'
        if not path.exists():
            return None
        record = read_json(path)
        if not isinstance(record, dict) or 'test' not in record:
            raise ValueError(f'{path}: expected an object with a "test" key (the metrics)')
        return metrics_of(record['test'], path)
    path = work_dir / f'test_{split}.json'
    return metrics_of(read_json(path), path) if path.exists() else None


def wall_seconds(path: Path) -> float:
    """The ``seconds`` of a run's ``wall_time.json``; errors name the file."""
    record = read_json(path)
    seconds = record.get('seconds') if isinstance(record, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f'{path}: "seconds" must be a number, got {seconds!r}')
    return float(seconds)


def summarise(rows: Dict[str, List[Dict[str, float]]]) -> List[dict]:
    """Mean and sample std (ddof=1) over seeds of every metric of every run name."""
    table = []
    for name, runs in rows.items():
        keys = sorted({k for r in runs for k in r})
        entry = {'name': name, 'seeds': len(runs)}
        for k in keys:
            values = np.array([r[k] for r in runs if k in r], dtype=float)
            entry[k] = (values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0)
        table.append(entry)
    return table


COLUMNS = ('fused', 'audio', 'visual')


def markdown(table: List[dict], title: str) -> str:
    outputs = [c for c in COLUMNS if any(f'accuracy/{c}' in t for t in table)]
    outputs += sorted({k.split('/', 1)[1] for t in table for k in t
                       if k.startswith('accuracy/')} - set(outputs))
    head = '| run | seeds | ' + ' | '.join(f'{o} acc / F1' for o in outputs) + ' |'
    lines = [f'### {title}', '', head, '|' + '---|' * (len(outputs) + 2)]
    for t in table:
        cells = []
        for o in outputs:
            if f'accuracy/{o}' in t:
                (am, asd), (fm, fsd) = t[f'accuracy/{o}'], t[f'f1/{o}']
                cells.append(f'{am:.2f} ± {asd:.2f} / {fm:.2f} ± {fsd:.2f}')
            else:
                cells.append('—')
        lines.append(f'| {t["name"]} | {t["seeds"]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def main() -> None:
    args = parse_args()
    # The runs execute from the repository root: make every path absolute first.
    root = Path(args.work_dir).resolve()
    args.configs = [osp.abspath(c) for c in args.configs]
    for config in args.configs:
        for seed in args.seeds:
            run_one(config, seed, root / run_name(config) / f'seed{seed}', args.cfg_options,
                    args.extra_split)
    report, csv_rows = [], []
    for split in ['test', *args.extra_split]:
        rows: Dict[str, List[Dict[str, float]]] = {}
        for config in args.configs:
            for seed in args.seeds:
                metrics = load_metrics(root / run_name(config) / f'seed{seed}', split)
                if metrics is not None:
                    rows.setdefault(run_name(config), []).append(metrics)
                    csv_rows.append({'split': split, 'run': run_name(config), 'seed': seed,
                                     **metrics})
        report.append(markdown(summarise(rows), f'{args.title}: {split} split'))
    times = []
    for config in args.configs:
        secs = [wall_seconds(p)
                for p in (root / run_name(config)).glob('seed*/wall_time.json')]
        if secs:
            times.append(f'| {run_name(config)} | {np.mean(secs):.0f} |')
    if times:
        report.append('| run | wall time per run (s, mean) |\n|---|---|\n' + '\n'.join(times) + '\n')
    (root / 'results.md').write_text('\n'.join(report))
    fields = sorted({k for r in csv_rows for k in r} - {'split', 'run', 'seed'})
    with open(root / 'results.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=['split', 'run', 'seed', *fields])
        writer.writeheader()
        writer.writerows(csv_rows)
    print('\n'.join(report))


if __name__ == '__main__':
    main()
