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

``--preset NAME`` reruns one paper table (``configs/presets/NAME.yml``: its configs and
seeds); the table then has the paper's column beside ours, read from the configs'
metafiles. ``--paper SOURCE`` adds that column to any list of configs. ``--dry-run`` lists
the runs and, for a preset with a measured step time, estimates the device-hours; it trains
nothing.

Example::

    python tools/benchmark.py configs/concat/concat_r18_avdigits.py \
        configs/unimodal/audio-only_r18_avdigits.py --seeds 0 1 2 \
        --extra-split test_human --work-dir work_dirs/bench_default
    python tools/benchmark.py --preset avdigits --dry-run
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

from mmbal.utils.metafiles import (MMBAL, PROTOCOLS, Metafiles, MetafileError, Preset,
                                   load_preset, preset_path)
from mmbal.utils.progress import Progress, RunJournal, accuracy_summary

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Benchmark configs over seeds')
    parser.add_argument('configs', nargs='*', help='config files (or --preset)')
    parser.add_argument('--seeds', nargs='+', type=int, default=None,
                        help='default: the preset\'s seeds, else 0 1 2')
    parser.add_argument('--work-dir', default=None,
                        help='default: work_dirs/preset_<name> with --preset, else '
                        'work_dirs/benchmark')
    parser.add_argument('--preset', help='rerun the paper table configs/presets/PRESET.yml')
    parser.add_argument('--paper', metavar='SOURCE',
                        help='add the numbers SOURCE (a metafile collection, or mmbal) gives '
                        'for each config on its dataset beside ours (default with --preset: '
                        'the preset\'s source)')
    parser.add_argument('--dry-run', action='store_true',
                        help='list the runs (and estimate device-hours for a preset); train '
                        'nothing')
    parser.add_argument('--extra-split', nargs='*', default=[],
                        help='also test the val-selected checkpoint on these splits')
    parser.add_argument('--cfg-options', nargs='*', default=[],
                        help='key=value overrides passed to every run')
    parser.add_argument('--title', default=None,
                        help='default: the preset\'s title, else Benchmark')
    parser.add_argument('--retry-failed', action='store_true',
                        help='run again the runs that failed in an earlier session (by '
                        'default they are reported and left as they are)')
    args = parser.parse_args()
    if not args.configs and not args.preset:
        parser.error('give config files or --preset NAME')
    if args.configs and args.preset:
        parser.error('give config files or --preset NAME, not both')
    return args


def resolve(args: argparse.Namespace) -> Tuple[Optional[Preset], Optional[Metafiles]]:
    """Fill the configs, seeds, work dir and title from ``--preset`` (or the defaults).

    Returns the preset and the metafiles (None when neither --preset nor --paper is given).
    """
    preset = metafiles = None
    if args.preset or args.paper:
        metafiles = Metafiles(ROOT)
    if args.preset:
        preset = load_preset(preset_path(args.preset, ROOT), metafiles)
        args.configs = [str(ROOT / r.config) for r in preset.runs]
        args.paper = args.paper or preset.source
    if args.paper:
        metafiles.check_source(args.paper, '--paper')
    args.seeds = args.seeds or (list(preset.seeds) if preset else [0, 1, 2])
    args.work_dir = args.work_dir or (f'work_dirs/preset_{preset.name}' if preset
                                      else 'work_dirs/benchmark')
    args.title = args.title or (preset.title if preset else 'Benchmark')
    return preset, metafiles


def repo_path(config: str) -> str:
    """``config`` relative to the repository root (how the metafiles name it)."""
    path = Path(config).resolve()
    return path.relative_to(ROOT).as_posix() if ROOT in path.parents else str(path)


def paper_column(configs: List[str], source: str, metafiles: Metafiles,
                 dataset: Optional[str] = None) -> Dict[str, Tuple[float, Optional[float]]]:
    """``{run name: (accuracy, macro-F1 or None)}`` that ``source`` gives for the configs.

    The dataset is the preset's, or else each config's training data in its metafile;
    configs without such a number are left out.
    """
    column = {}
    for config in configs:
        model = metafiles.model(repo_path(config))
        result = model and model.result(source, dataset or model.training_data)
        if result is not None:
            column[run_name(config)] = (result.accuracy, result.f1)
    return column


def paper_label(source: str) -> str:
    return 'expected (mmbal, measured)' if source == MMBAL else f'{source} paper'


def caveat(source: str) -> str:
    protocol = 'val-selected' if source == MMBAL else 'test-selected'
    return f'{paper_label(source)}: {PROTOCOLS[protocol]}.'


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


def markdown(table: List[dict], title: str,
             paper: Optional[Dict[str, Tuple[float, Optional[float]]]] = None,
             label: str = 'paper') -> str:
    """The mean ± std table; with ``paper``, a ``label`` column of its numbers beside fused."""
    outputs = [c for c in COLUMNS if any(f'accuracy/{c}' in t for t in table)]
    outputs += sorted({k.split('/', 1)[1] for t in table for k in t
                       if k.startswith('accuracy/')} - set(outputs))
    heads = [f'{o} acc / F1' for o in outputs]
    at = 1 if outputs and outputs[0] == 'fused' else 0
    if paper is not None:
        heads.insert(at, f'{label} acc / F1')
    lines = [f'### {title}', '', '| run | seeds | ' + ' | '.join(heads) + ' |',
             '|' + '---|' * (len(heads) + 2)]
    for t in table:
        cells = []
        for o in outputs:
            if f'accuracy/{o}' in t:
                (am, asd), (fm, fsd) = t[f'accuracy/{o}'], t[f'f1/{o}']
                cells.append(f'{am:.2f} ± {asd:.2f} / {fm:.2f} ± {fsd:.2f}')
            else:
                cells.append('—')
        if paper is not None:
            acc, f1 = paper.get(t['name'], (None, None))
            cells.insert(at, '—' if acc is None else
                         f'{acc:.2f} / {"—" if f1 is None else f"{f1:.2f}"}')
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
                 failures: List[Tuple[str, int, str, Path]],
                 paper: Optional[Dict[str, Tuple[float, Optional[float]]]] = None,
                 preset: Optional[Preset] = None) -> str:
    """results.md and results.csv: successful runs only, no row for a config with a failure.

    ``paper`` (``{run name: (acc, F1)}`` from ``--paper``/``--preset``) stands beside the
    test split's fused column, with the protocol caveat under the table.
    """
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
        if split == 'test' and paper is not None:
            report.append(markdown(summarise(rows), f'{args.title}: {split} split', paper,
                                   paper_label(args.paper)) + '\n' + caveat(args.paper) + '\n')
        else:
            report.append(markdown(summarise(rows), f'{args.title}: {split} split'))
    if preset is not None and preset.cannot_run:
        report.append(cannot_run(preset))
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


def cannot_run(preset: Preset) -> str:
    """The rows of the preset's paper table that mmbal cannot run yet, and why."""
    lines = [f'Rows of {preset.title} that mmbal cannot run yet:', '']
    lines += [f'- {row}: {reason}' for row, reason in preset.cannot_run]
    return '\n'.join(lines) + '\n'


def run_steps(config: str, train_samples: int) -> int:
    """Training iterations of one run: epochs x ceil(train samples / batch size)."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    epochs, batch = cfg.train_cfg.max_epochs, cfg.train_dataloader.batch_size
    return int(epochs) * math.ceil(train_samples / int(batch))


def dry_run(args: argparse.Namespace, preset: Optional[Preset]) -> str:
    """The runs a benchmark would make, and for a preset their estimated device-hours."""
    root = Path(args.work_dir)
    lines = [f'### {args.title}: dry run ({len(args.configs) * len(args.seeds)} runs, '
             f'seeds {" ".join(map(str, args.seeds))})', '']
    if preset is None:
        lines += [f'- {run_name(c)} seed {s}: {root / run_name(c) / f"seed{s}"}'
                  for c in args.configs for s in args.seeds]
        lines += ['', 'No device-hour estimate without --preset (no step time or dataset '
                  'size is known for a list of configs).']
        return '\n'.join(lines) + '\n'
    lines += [f'Expected column: {paper_label(args.paper)}, {preset.dataset}.', '']
    if preset.prerequisites:
        lines += ['Run first (not counted below):', '']
        lines += [f'    {c}' for c in preset.prerequisites] + ['']
    estimate = preset.step_ms is not None
    lines += ['| run | row | steps per seed | step (ms) | device-hours (all seeds) |',
              '|---|---|---:|---:|---:|']
    total_steps = total_hours = 0.0
    for run in preset.runs:
        steps = run_steps(str(ROOT / run.config), preset.train_samples)
        ms = run.step_ms if run.step_ms is not None else preset.step_ms
        hours = steps * len(args.seeds) * ms / 3.6e6 if estimate else None
        total_steps += steps * len(args.seeds)
        total_hours += hours or 0.0
        lines.append(f'| {run_name(run.config)} | {run.row} | {steps} | '
                     f'{"—" if ms is None else f"{ms:g}" + ("" if run.step_ms else " (default)")}'
                     f' | {"—" if hours is None else f"{hours:.2f}"} |')
    lines.append('')
    lines.append(f'Training steps, all runs: {total_steps:.0f} (train split of '
                 f'{preset.train_samples} samples: {preset.train_samples_from}).')
    if estimate:
        lines.append(f'Estimated device-hours: {total_hours:.1f} (training steps only: '
                     f'validation, test and start-up are not counted). Step times: '
                     f'{preset.step_time_from}.')
    else:
        lines.append('No device-hour estimate: benchmarks/README.md has no measured step '
                     f'time for the {preset.dataset} setting (benchmarks/step_time.py '
                     f'--setting paper measures one).')
    lines.append(f'Runs go to {root}/<run>/seed<k>.')
    if preset.cannot_run:
        lines += ['', cannot_run(preset)]
    return '\n'.join(lines) + '\n'


def main() -> None:
    args = parse_args()
    try:
        preset, metafiles = resolve(args)
    except MetafileError as err:
        raise SystemExit(f'benchmark.py: {err}') from err
    if args.dry_run:
        print(dry_run(args, preset), flush=True)
        return
    paper = (paper_column(args.configs, args.paper, metafiles,
                          preset.dataset if preset else None) if args.paper else None)
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

    print(write_report(root, args, runs, results, failures, paper, preset), flush=True)
    if failures:
        raise SystemExit(f'benchmark.py: {len(failures)} of {len(runs)} runs failed '
                         f'({", ".join(f"{n} seed {s}" for n, s, *_ in failures)}); no '
                         f'aggregate row for {", ".join(sorted({n for n, *_ in failures}))}')


if __name__ == '__main__':
    main()
