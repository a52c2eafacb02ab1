"""End-to-end time of a whole job through mmbal against a plain PyTorch script doing the same.

The job is the README demo: ``tools/train.py configs/concat/concat_r18_avdigits.py``
(train, validate every epoch, keep the best checkpoint on val; ``tools/train.py``
then tests that checkpoint itself). The baseline is ``benchmarks/plain_avdigits.py``
(same files, same preprocessing, same model classes and schedule; no Runner; the
weights in torch's default memory layout unless ``--plain-channels-last``, while mmbal's
demo model config holds them channels-last). By
default (``--plain-data preload``) the plain script computes every sample once and
trains from memory, the fastest way to write it for a set this small; ``stream``
recomputes every sample in its loader workers every epoch.
Each run of each path is a fresh process; runs alternate the order (mmbal then
plain, plain then mmbal, ...), so drift in the machine's load affects both alike.

Per path it prints the median over runs of the wall time and of the CPU time
(user + sys of the child and of the worker processes it waited for, from
``os.wait4``), their mmbal/plain ratios, the median iteration time (the mean
iteration time of each 20-iteration window that mmbal's log reports, computed the
same way by the plain script) and every run's test accuracy.

Settings:

* ``demo``: AV-Digits as shipped (``data/avdigits``), ``--epochs`` default 10.
* ``crema-tiny``: the papers' CREMA-D job (``configs/concat/concat_r18_crema.py``:
  width-64 ResNet18s, 1x257x188 spectrograms, 3x1x224x224 frames, batch 64, the
  loader with its 2 workers) on a synthetic layout of ``--clips`` clips at CREMA-D's
  real sizes, written by ``tools/data/crema_d/benchmark.py``'s ``make_layout``;
  val and test are the first half of those clips. One step takes seconds on a CPU.

Example::

    python benchmarks/end_to_end.py --runs 3 --threads 1
    python benchmarks/end_to_end.py --setting crema-tiny --runs 1 --epochs 1 --threads 1
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import os.path as osp
import shutil
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PATHS = ('mmbal', 'plain')
SETTINGS: Dict[str, dict] = {
    'demo': dict(config='configs/concat/concat_r18_avdigits.py', dataset='avdigits',
                 epochs=10),
    'crema-tiny': dict(config='configs/concat/concat_r18_crema.py', dataset='crema-d',
                       epochs=1),
}


def make_crema_layout(root: str, clips: int) -> str:
    """A CREMA-D layout of ``clips`` synthetic clips (train: all, val and test: the first
    half), written with ``tools/data/crema_d/benchmark.py``'s ``make_layout``."""
    spec = importlib.util.spec_from_file_location(
        'crema_d_benchmark', osp.join(REPO_ROOT, 'tools', 'data', 'crema_d', 'benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_layout(root, clips)
    splits = osp.join(root, 'splits', 'reference')
    with open(osp.join(splits, 'train.csv')) as f:
        rows = f.readlines()
    for split in ('val', 'test'):
        with open(osp.join(splits, f'{split}.csv'), 'w') as f:
            f.writelines(rows[:max(1, len(rows) // 2)])
    return root


def commands(path: str, setting: dict, epochs: int, threads: int, work_dir: str,
             data_root: Optional[str], preload: bool = True,
             plain_channels_last: bool = False) -> List[str]:
    """The child's command line for ``path`` ('mmbal' or 'plain')."""
    if path == 'mmbal':
        cmd = [sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'),
               osp.join(REPO_ROOT, setting['config']), '--work-dir', work_dir,
               '--cfg-options', f'train_cfg.max_epochs={epochs}']
    else:
        cmd = [sys.executable, osp.join(REPO_ROOT, 'benchmarks', 'plain_avdigits.py'),
               '--dataset', setting['dataset'], '--epochs', str(epochs), '--work-dir', work_dir,
               '--threads', str(threads), '--out', osp.join(work_dir, 'result.json')]
        cmd += ['--preload'] if preload else []
        cmd += ['--channels-last'] if plain_channels_last else []
    return cmd + (['--data-root', data_root] if data_root else [])


def run_child(cmd: Sequence[str], threads: int, log_path: str) -> dict:
    """Run ``cmd`` to its end; wall time, and user + sys CPU time from ``os.wait4``."""
    env = dict(os.environ)
    if threads > 0:
        env['OMP_NUM_THREADS'] = str(threads)
    else:
        env.pop('OMP_NUM_THREADS', None)
    with open(log_path, 'w') as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen.wait
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} exited with {proc.returncode}; see {log_path}')
    return dict(wall=wall, cpu=usage.ru_utime + usage.ru_stime)


def mmbal_result(work_dir: str) -> dict:
    """Test accuracy (``test_results.json``) and the logged windows' iteration times
    (the train lines of ``vis_data/scalars.json``) of a ``tools/train.py`` run."""
    with open(osp.join(work_dir, 'test_results.json')) as f:
        accuracy = json.load(f)['test']['accuracy/fused']
    windows = []
    for scalars in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(scalars) as f:
            windows += [rec['time'] for rec in map(json.loads, f) if 'loss' in rec]
    return dict(test_accuracy=accuracy, iter_windows=windows)


def plain_result(work_dir: str) -> dict:
    with open(osp.join(work_dir, 'result.json')) as f:
        return json.load(f)


def summarize(runs: Dict[str, List[dict]]) -> dict:
    """Per path: medians over runs of wall and CPU time, the median logged-window
    iteration time over all runs, the test accuracies; and the mmbal/plain ratios."""
    out = {}
    for path, results in runs.items():
        windows = [w for r in results for w in r['iter_windows']]
        out[path] = dict(runs=len(results),
                         wall=statistics.median(r['wall'] for r in results),
                         cpu=statistics.median(r['cpu'] for r in results),
                         iteration=statistics.median(windows) if windows else None,
                         test_accuracy=[r['test_accuracy'] for r in results])
    mmbal, plain = out['mmbal'], out['plain']
    out['ratio'] = {key: (mmbal[key] / plain[key] if mmbal[key] and plain[key] else None)
                    for key in ('wall', 'cpu', 'iteration')}
    return out


def markdown_table(summary: dict) -> str:
    """The summary as a markdown table (times in s, iteration in ms, accuracies in %)."""
    def num(value: Optional[float], scale: float = 1.0, digits: int = 1) -> str:
        return '-' if value is None else f'{value * scale:.{digits}f}'

    lines = ['| path | runs | median wall (s) | median CPU user+sys (s) | median iteration (ms) '
             '| test accuracy per run (%) |', '|---|---:|---:|---:|---:|---|']
    for path in PATHS:
        row = summary[path]
        accs = ', '.join(f'{a:.2f}' for a in row['test_accuracy'])
        lines.append(f'| {path} | {row["runs"]} | {num(row["wall"])} | {num(row["cpu"])} '
                     f'| {num(row["iteration"], 1000)} | {accs} |')
    ratio = summary['ratio']
    lines.append(f'| mmbal / plain | | {num(ratio["wall"], digits=3)} '
                 f'| {num(ratio["cpu"], digits=3)} | {num(ratio["iteration"], digits=3)} | |')
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--setting', choices=sorted(SETTINGS), default='demo')
    parser.add_argument('--runs', type=int, default=3, help='runs of each path (alternating)')
    parser.add_argument('--epochs', type=int,
                        help='epochs of every run (default: demo 10, crema-tiny 1)')
    parser.add_argument('--threads', type=int, default=0,
                        help='OMP_NUM_THREADS of both children (0: unset, torch\'s default)')
    parser.add_argument('--clips', type=int, default=24, help='crema-tiny: clips in the layout')
    parser.add_argument('--work-dir', default='work_dirs/benchmarks/end_to_end',
                        help='work dirs and logs of every run (replaced)')
    parser.add_argument('--plain-data', choices=('preload', 'stream'), default='preload',
                        help='the plain script computes every sample once and trains from '
                             'memory (preload, default), or in loader workers every epoch')
    parser.add_argument('--plain-channels-last', action='store_true',
                        help='the plain script\'s ResNet18 weights in the channels-last layout '
                             '(mmbal\'s demo model config sets it); default: torch\'s default '
                             'layout, as a plain script has it')
    parser.add_argument('--out', help='write the runs and the summary as JSON here')
    args = parser.parse_args(argv)
    args.epochs = args.epochs or SETTINGS[args.setting]['epochs']
    for name in ('runs', 'epochs', 'clips'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} {getattr(args, name)}: expected an integer >= 1')
    if args.threads < 0:
        parser.error(f'--threads {args.threads}: expected an integer >= 0')
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    setting = SETTINGS[args.setting]
    root = osp.abspath(osp.join(args.work_dir, args.setting))
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    data_root = (make_crema_layout(osp.join(root, 'layout'), args.clips)
                 if args.setting == 'crema-tiny' else None)
    print(f'load average before: {os.getloadavg()}', flush=True)
    runs: Dict[str, List[dict]] = {path: [] for path in PATHS}
    for index in range(args.runs):
        for path in (PATHS if index % 2 == 0 else PATHS[::-1]):
            work_dir = osp.join(root, f'{path}_{index}')
            cmd = commands(path, setting, args.epochs, args.threads, work_dir, data_root,
                           preload=args.plain_data == 'preload',
                           plain_channels_last=args.plain_channels_last)
            os.makedirs(work_dir)
            timing = run_child(cmd, args.threads, osp.join(work_dir, 'stdout.log'))
            result = mmbal_result(work_dir) if path == 'mmbal' else plain_result(work_dir)
            runs[path].append(dict(timing, **result))
            print(f'run {index} {path}: wall {timing["wall"]:.1f} s, CPU {timing["cpu"]:.1f} s, '
                  f'test accuracy {result["test_accuracy"]:.2f} %', flush=True)
    summary = summarize(runs)
    print(f'load average after: {os.getloadavg()}')
    print(markdown_table(summary))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(args=vars(args), runs=runs, summary=summary), f, indent=2)
    return summary


if __name__ == '__main__':
    main()
