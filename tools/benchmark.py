"""Run a matrix of configs x seeds and tabulate the val-selected test metrics.

Each run trains with ``tools/train.py`` (model selection on val, then the test
split), in ``<work-dir>/<name>/seed<k>``. A finished run (its
``test_results.json`` exists) is not run again, so an interrupted benchmark
continues where it stopped. ``--extra-split`` also scores the val-selected
checkpoint on other splits (e.g. AV-Digits' ``test_human``).

Every (config, seed) is run, whatever happened to the others. A run fails if
a subprocess exits nonzero, writes no ``test_results.json`` or writes a
non-finite metric. A line is printed when a run starts and when it ends
(``[3/6] mla_r18_avdigits seed 2: done in 11m02s, fused acc 97.30; ETA 22m
(3 runs to go)``), and ``<work-dir>/journal.jsonl`` records every start and
end (status, seconds, reason, log), so a rerun skips finished runs, reports
the earlier failures without running them again (``--retry-failed`` does) and
has an ETA from the first line. Only successful runs are aggregated; a config
with a failed seed gets no aggregate row, the failed runs are listed with their
logs, and the script exits with status 1.

Example::

    python tools/benchmark.py configs/concat/concat_r18_avdigits.py \
        configs/unimodal/audio-only_r18_avdigits.py --seeds 0 1 2 \
        --extra-split test_human --work-dir work_dirs/bench_default
"""
import argparse
import csv
import json
import math
import os.path as osp
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from mmbal.utils.progress import Progress, RunJournal, accuracy_summary

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
    parser.add_argument('--retry-failed', action='store_true',
                        help='run again the runs that failed in an earlier session (by '
                        'default they are reported and left as they are)')
    return parser.parse_args()


def run_name(config: str) -> str:
    return osp.splitext(osp.basename(config))[0]


class RunFailed(RuntimeError):
    """A run that produced no finite test metrics; ``log`` is where to look."""

    def __init__(self, message: str, log: Path) -> None:
        super().__init__(message)
        self.log = log


def run_one(config: str, seed: int, work_dir: Path, options: List[str],
            extra_splits: List[str]) -> Dict[str, float]:
    """Train + test one (config, seed) unless its results already exist; its test metrics.

    Raises:
        RunFailed: a subprocess exited nonzero, or a results file is missing,
            malformed or holds a non-finite metric.
        ValueError: ``test_results.json`` names no checkpoint for ``extra_splits``.
    """
    done = work_dir / 'test_results.json'
    log = work_dir / 'benchmark_stdout.log'
    if not done.exists():
        start = time.time()
        cmd = [sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir),
               '--cfg-options', f'randomness.seed={seed}', *options]
        work_dir.mkdir(parents=True, exist_ok=True)
        with open(log, 'w') as f:
            code = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        if code != 0:
            raise RunFailed(f'tools/train.py exited with code {code}{last_line(log)}', log)
        (work_dir / 'wall_time.json').write_text(json.dumps({'seconds': time.time() - start}))
    if not done.exists():
        raise RunFailed(f'tools/train.py finished without writing {done}', log)
    metrics = checked_metrics(work_dir, 'test', log)
    for split in extra_splits:
        out = work_dir / f'test_{split}.json'
        split_log = work_dir / f'test_{split}_stdout.log'
        if not out.exists():
            cmd = [sys.executable, 'tools/test.py', config, checkpoint_of(read_json(done), done),
                   '--work-dir', str(work_dir / f'test_{split}'), '--out', str(out),
                   '--cfg-options', f'test_dataloader.dataset.split={split}', *options]
            with open(split_log, 'w') as f:
                code = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
            if code != 0:
                raise RunFailed(f'tools/test.py on split {split!r} exited with code {code}'
                                f'{last_line(split_log)}', split_log)
        checked_metrics(work_dir, split, split_log)
    return metrics


def last_line(log: Path) -> str:
    """': <the log's last line>' (the error of a failed run), or ''."""
    lines = [line.strip() for line in log.read_text(errors='replace').splitlines()
             if line.strip()] if log.exists() else []
    return f': {lines[-1][:300]}' if lines else ''


def checked_metrics(work_dir: Path, split: str, log: Path) -> Optional[Dict[str, float]]:
    """The metrics of a run on ``split`` (None if not written); a bad file fails the run."""
    try:
        return load_metrics(work_dir, split)
    except ValueError as err:
        raise RunFailed(str(err), log) from err


def finished(work_dir: Path, extra_splits: List[str]) -> bool:
    """Whether every results file of the run exists (whether or not they are valid)."""
    return all((work_dir / name).exists() for name in
               ['test_results.json', *(f'test_{s}.json' for s in extra_splits)])


def discard_results(work_dir: Path, extra_splits: List[str]) -> None:
    """Move a failed run's results aside (``*.failed``), so that it is run again."""
    for name in ['test_results.json', *(f'test_{s}.json' for s in extra_splits)]:
        path = work_dir / name
        if path.exists():
            path.replace(path.with_name(name + '.failed'))


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
        if not math.isfinite(number):
            raise ValueError(f'{path}: metric {key!r} is {number} (not finite): the run '
                             f'diverged or evaluated a broken checkpoint')
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


def failure_report(failures: List[Tuple[str, int, str, Path]], names: List[str]) -> str:
    """The failed runs with their logs, and the configs left without an aggregate row."""
    lines = ['### Failed runs (not aggregated)', '', '| run | seed | reason | log |',
             '|---|---|---|---|']
    lines += [f'| {name} | {seed} | {reason} | {log} |' for name, seed, reason, log in failures]
    lines += ['', 'No aggregate row (a seed failed): ' + ', '.join(names)]
    return '\n'.join(lines) + '\n'


def run_key(config: str, seed: int) -> str:
    """The journal's name of a run."""
    return f'{run_name(config)}/seed{seed}'


def initial_state(config: str, seed: int, work_dir: Path, args: argparse.Namespace,
                  last: dict) -> tuple:
    """``('finished', metrics)``, ``('failed', reason, log)`` (not run again) or ``('todo', )``.

    ``last`` is the run's latest journal line (``{}`` if none).
    """
    if finished(work_dir, args.extra_split):
        try:  # every results file exists: this only reads and checks them
            return 'finished', run_one(config, seed, work_dir, args.cfg_options,
                                       args.extra_split)
        except RunFailed as err:
            if not args.retry_failed:
                return 'failed', str(err), err.log
            discard_results(work_dir, args.extra_split)
    elif last.get('event') == 'end' and last.get('status') == 'failed' and \
            not args.retry_failed:
        return 'failed', last.get('reason'), last.get('log')
    return ('todo', )


def write_report(root: Path, args: argparse.Namespace, runs: List[Tuple[str, int]],
                 results: Dict[Tuple[str, int], Dict[str, float]],
                 failures: List[Tuple[str, int, str, Path]]) -> str:
    """results.md and results.csv: successful runs only, no row for a config with a failure."""
    failed_names = sorted({name for name, *_ in failures})
    report, csv_rows = [], []
    for split in ['test', *args.extra_split]:
        rows: Dict[str, List[Dict[str, float]]] = {}
        for config, seed in runs:
            if (config, seed) not in results:
                continue
            metrics = load_metrics(root / run_name(config) / f'seed{seed}', split)
            csv_rows.append({'split': split, 'run': run_name(config), 'seed': seed, **metrics})
            if run_name(config) not in failed_names:
                rows.setdefault(run_name(config), []).append(metrics)
        report.append(markdown(summarise(rows), f'{args.title}: {split} split'))
    times = []
    for config in args.configs:
        if run_name(config) in failed_names:
            continue
        secs = [wall_seconds(p)
                for p in (root / run_name(config)).glob('seed*/wall_time.json')]
        if secs:
            times.append(f'| {run_name(config)} | {np.mean(secs):.0f} |')
    if times:
        report.append('| run | wall time per run (s, mean) |\n|---|---|\n'
                      + '\n'.join(times) + '\n')
    if failures:
        report.append(failure_report(failures, failed_names))
    (root / 'results.md').write_text('\n'.join(report))
    fields = sorted({k for r in csv_rows for k in r} - {'split', 'run', 'seed'})
    with open(root / 'results.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=['split', 'run', 'seed', *fields])
        writer.writeheader()
        writer.writerows(csv_rows)
    return '\n'.join(report)


def main() -> None:
    args = parse_args()
    # The runs execute from the repository root: make every path absolute first.
    root = Path(args.work_dir).resolve()
    args.configs = [osp.abspath(c) for c in args.configs]
    journal = RunJournal(root / 'journal.jsonl')
    earlier = journal.last()
    runs = [(config, seed) for config in args.configs for seed in args.seeds]
    dirs = [root / run_name(config) / f'seed{seed}' for config, seed in runs]
    states = [initial_state(config, seed, work_dir, args, earlier.get(run_key(config, seed), {}))
              for (config, seed), work_dir in zip(runs, dirs)]
    todo = [state[0] == 'todo' for state in states]
    progress = Progress([f'{run_name(c)} seed {s}' for c, s in runs],
                        groups=[run_name(c) for c, _ in runs], todo=todo,
                        history=journal.durations())
    print(f'benchmark: {len(runs)} runs, {sum(todo)} to run; journal {journal.path}',
          flush=True)

    results: Dict[Tuple[str, int], Dict[str, float]] = {}
    failures: List[Tuple[str, int, str, Path]] = []
    for index, ((config, seed), work_dir, state) in enumerate(zip(runs, dirs, states)):
        name, key = run_name(config), run_key(config, seed)
        if state[0] == 'finished':
            results[config, seed] = state[1]
            progress.note(index, f'finished earlier, {accuracy_summary(state[1])}')
            continue
        if state[0] == 'failed':
            failures.append((name, seed, state[1], state[2]))
            progress.note(index, f'FAILED earlier ({state[1]}; log {state[2]}); not run '
                          f'again without --retry-failed')
            continue
        interrupted = earlier.get(key, {}).get('event') == 'start'
        progress.start(index, f'log {work_dir / "benchmark_stdout.log"}'
                       + (' (interrupted earlier: running again)' if interrupted else ''))
        journal.start(key, group=name)
        start = time.time()
        try:
            results[config, seed] = run_one(config, seed, work_dir, args.cfg_options,
                                            args.extra_split)
        except (RunFailed, ValueError) as err:  # ValueError: results name no checkpoint
            seconds = time.time() - start
            log = err.log if isinstance(err, RunFailed) else work_dir / 'benchmark_stdout.log'
            failures.append((name, seed, str(err), log))
            journal.end(key, 'failed', seconds, group=name, reason=str(err), log=str(log))
            progress.end(index, seconds, False, f'{err}; log {log}')
            continue
        seconds = time.time() - start
        journal.end(key, 'done', seconds, group=name)
        progress.end(index, seconds, True, accuracy_summary(results[config, seed]))

    print(write_report(root, args, runs, results, failures), flush=True)
    if failures:
        raise SystemExit(f'benchmark.py: {len(failures)} of {len(runs)} runs failed '
                         f'({", ".join(f"{n} seed {s}" for n, s, *_ in failures)}); no '
                         f'aggregate row for {", ".join(sorted({n for n, *_ in failures}))}')


if __name__ == '__main__':
    main()
