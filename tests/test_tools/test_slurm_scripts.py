"""tools/slurm_train.sh and slurm_test.sh: the srun command they build (a fake srun records it)
and the Python they choose (tools/dist_env.sh, as the dist_*.sh scripts)."""
import os
from pathlib import Path

import pytest

from .test_dist_scripts import ROOT, no_torch_python, recording_python, run

SRUN = ('-p gpu --job-name=job --gres=gpu:{per_node} --ntasks={tasks} '
        '--ntasks-per-node={per_node} --cpus-per-task={cpus} --kill-on-bad-exit=1 {extra}')
ARGS = {'slurm_train.sh': (['gpu', 'job', 'cfg.py', 'w', '--amp'],
                           'train.py cfg.py --work-dir=w --launcher=slurm --amp'),
        'slurm_test.sh': (['gpu', 'job', 'cfg.py', 'ckpt.pth', '--out', 'm.json'],
                          'test.py cfg.py ckpt.pth --launcher=slurm --out m.json')}


def fake_srun(bin_dir: Path, log: Path) -> None:
    srun = bin_dir / 'srun'
    srun.parent.mkdir(parents=True, exist_ok=True)
    srun.write_text(f'#!/bin/sh\necho "srun $*" >> {log}\n')
    srun.chmod(0o755)


@pytest.mark.parametrize('script', sorted(ARGS))
@pytest.mark.parametrize('env, shape', [
    ({}, dict(tasks=1, per_node=1, cpus=5, extra='')),
    ({'GPUS': '16', 'CPUS_PER_TASK': '2', 'SRUN_ARGS': '--time=1:00 --mem=8G'},
     dict(tasks=16, per_node=8, cpus=2, extra='--time=1:00 --mem=8G ')),
])
def test_srun_runs_the_tool_with_the_slurm_launcher(tmp_path, script, env, shape):
    log = tmp_path / 'calls.log'
    python = recording_python(tmp_path / 'venv' / 'bin' / 'python', log)
    fake_srun(tmp_path / 'bin', log)
    args, tail = ARGS[script]
    proc = run(ROOT / 'tools' / script, args, PYTHON=str(python), **env,
               PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().splitlines() == [
        f'{python} -c import torch',
        f'srun {SRUN.format(**shape)}{python} -u {ROOT}/tools/{tail}']


@pytest.mark.parametrize('script', sorted(ARGS))
def test_python_without_torch_stops_before_srun(tmp_path, script):
    log = tmp_path / 'calls.log'
    fake_srun(tmp_path / 'bin', log)
    fake = no_torch_python(tmp_path / 'venv' / 'bin' / 'python')
    proc = run(ROOT / 'tools' / script, ARGS[script][0], PYTHON=str(fake),
               PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{script}: '{fake}' (from PYTHON) cannot import torch.")
    assert not log.exists()
