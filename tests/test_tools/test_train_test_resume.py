"""End to end through tools/train.py and tools/test.py on AV-Digits (slow)."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmbal.registry import MODELS

from .e2e import CONFIG, ROOT, SMALL, run, train, train_losses


@pytest.mark.slow
def test_train_val_select_test_and_exact_resume(tmp_path):
    full, part = tmp_path / 'full', tmp_path / 'part'
    train(full, 'train_cfg.max_epochs=2')
    # --resume in a work dir without checkpoints: said plainly, trains from scratch.
    proc = train(part, 'train_cfg.max_epochs=1', launcher_args=('--resume',))
    assert f'no checkpoint in {part} to resume from: training from scratch' in proc.stdout
    # Train + val-selected test at the end, on the whole (odd-sized) test slice.
    record = json.loads((part / 'test_results.json').read_text())
    assert record['checkpoint'].endswith('best_accuracy_fused_epoch_1.pth')
    assert record['seed'] == 0
    assert set(record['test']) == {'accuracy/fused', 'f1/fused', 'accuracy/audio', 'f1/audio',
                                   'accuracy/visual', 'f1/visual'}
    # tools/test.py on the val-selected checkpoint reproduces the test numbers.
    out = tmp_path / 'metrics.json'
    run([sys.executable, 'tools/test.py', CONFIG, record['checkpoint'], '--work-dir',
         str(tmp_path / 'test'), '--out', str(out), '--cfg-options', *SMALL])
    assert json.loads(out.read_text()) == pytest.approx(record['test'], abs=1e-9)

    # Resuming from the epoch-1 checkpoint (val loop and save_best on) continues exactly.
    train(part, 'train_cfg.max_epochs=2',
          launcher_args=('--resume', str(part / 'epoch_1.pth'), '--no-test'))
    full_losses, part_losses = train_losses(full), train_losses(part)
    epoch2 = {k: v for k, v in full_losses.items() if k[0] == 2}
    assert len(epoch2) == 6  # 192 samples / batch 32
    assert {k: part_losses[k] for k in epoch2} == epoch2


def load_test_tool():
    spec = importlib.util.spec_from_file_location('mmbal_test_tool', ROOT / 'tools/test.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_strict_flag_sets_the_runner_and_refuses_a_runner_without_it():
    set_strict = load_test_tool().set_strict
    runner = SimpleNamespace(load_strict=True)
    set_strict(runner, 'false')
    assert runner.load_strict is False
    set_strict(runner, 'true')
    assert runner.load_strict is True
    with pytest.raises(ValueError, match="object loads checkpoints non-strictly; set "
                       "runner_type='MMBalRunner' in the config or pass --strict false"):
        set_strict(object(), 'true')
    set_strict(object(), 'false')  # MMEngine's non-strict load is what was asked for


def failing(*commands):
    """Run commands that must fail, side by side; their CompletedProcesses."""
    def one(args):
        return subprocess.run(args, cwd=ROOT, env={**os.environ, 'OMP_NUM_THREADS': '1'},
                              capture_output=True, text=True, timeout=600)

    with ThreadPoolExecutor(len(commands)) as pool:
        procs = list(pool.map(one, commands))
    for args, proc in zip(commands, procs):
        assert proc.returncode != 0, f'{args} succeeded:\n{proc.stdout[-3000:]}'
    return procs


@pytest.mark.slow
def test_another_models_checkpoint_and_a_missing_resume_path_are_errors(tmp_path):
    init_default_scope('mmbal')
    cfg = Config.fromfile(str(ROOT / CONFIG))
    cfg.model.encoders.audio.base_channels = 4  # SMALL tests width 8
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict(), 'meta': {}}, other)
    test_cmd = [sys.executable, 'tools/test.py', CONFIG, str(other), '--work-dir',
                str(tmp_path / 'test'), '--cfg-options', *SMALL]
    missing = tmp_path / 'work' / 'epoch_3.pth'
    test, resume = failing(test_cmd, [
        sys.executable, 'tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'work'),
        '--resume', str(missing), '--cfg-options', *SMALL])
    assert 'CheckpointMismatchError: checkpoint ' + str(other) in test.stderr
    assert re.search(r'shape mismatches: encoders.audio.\S+ \(4, 1, \d+, \d+\) in the file, '
                     r'\(8, 1, \d+, \d+\) in the model', test.stderr)
    assert f'FileNotFoundError: the checkpoint to resume from does not exist: {missing}' \
        in resume.stderr
    assert 'Epoch(train)' not in resume.stdout + resume.stderr
    # --strict false: MMEngine's warning, and the test runs on the matching tensors.
    run(test_cmd[:4] + ['--strict', 'false'] + test_cmd[4:])
