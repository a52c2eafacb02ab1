"""Helpers for end-to-end runs of the tools on a small slice of AV-Digits."""
import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = 'configs/concat/concat_r18_avdigits.py'

# A narrow model on a slice of each split, deterministic, one log entry per iteration.
# The test slice has an odd size so a 2-process run pads its last batch.
SMALL = [
    'model.encoders.audio.base_channels=8', 'model.encoders.visual.base_channels=8',
    'train_dataloader.dataset.indices=192', 'val_dataloader.dataset.indices=64',
    'test_dataloader.dataset.indices=101',
    'train_dataloader.batch_size=32', 'val_dataloader.batch_size=32',
    'test_dataloader.batch_size=32',
    'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
    'test_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
    'val_dataloader.persistent_workers=False', 'test_dataloader.persistent_workers=False',
    'randomness.seed=0', 'randomness.deterministic=True',
    'default_hooks.logger.interval=1', 'log_processor.window_size=1',
]


def load_tool(path: str):
    """Import a script of ``tools/`` from its path (``tools`` is not a package)."""
    spec = importlib.util.spec_from_file_location(
        'mmbal_tool_' + Path(path).stem, ROOT / 'tools' / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args, **env):
    """Run a command from the repo root; fail with its output if it fails."""
    return run_concurrently([args], **env)[0]


def run_concurrently(commands, **env):
    """Run commands side by side (one thread each: the CI machine has 2 cores)."""
    full_env = {**os.environ, 'OMP_NUM_THREADS': '1', **env}

    def one(args):
        return subprocess.run(args, cwd=ROOT, env=full_env, capture_output=True, text=True,
                              timeout=600)

    with ThreadPoolExecutor(len(commands)) as pool:
        procs = list(pool.map(one, commands))
    for args, proc in zip(commands, procs):
        if proc.returncode != 0:
            pytest.fail(f'{args} failed with code {proc.returncode}:\n{proc.stdout[-3000:]}\n'
                        f'{proc.stderr[-5000:]}')
    return procs


def train(work_dir, *options, launcher_args=()):
    return run([sys.executable, 'tools/train.py', CONFIG, '--work-dir', str(work_dir),
                *launcher_args, '--cfg-options', *SMALL, *options])


def train_losses(work_dir):
    """``{(epoch, iter): loss}`` from every scalars.json under a work dir."""
    losses = {}
    for path in sorted(Path(work_dir).glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if 'loss' in rec:
                losses[(rec['epoch'], rec['iter'])] = rec['loss']
    return losses
