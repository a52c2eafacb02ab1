"""tools/dist_train.sh and dist_test.sh: which Python they run, and the message when it has
no torch. Fake interpreters stand in for the real ones, so nothing is trained here."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ('dist_train.sh', 'dist_test.sh')


def no_torch_python(path: Path) -> Path:
    """An interpreter without torch: this Python without its site-packages (-S)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    path.chmod(0o755)
    return path


def recording_python(path: Path, log: Path) -> Path:
    """An interpreter that 'has torch' and records every call instead of running it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "$0 $*" >> {log}\n')
    path.chmod(0o755)
    return path


def copy_repo_tools(root: Path) -> Path:
    """The two scripts and their helper in a repository of their own at ``root``."""
    (root / 'tools').mkdir(parents=True)
    for name in (*SCRIPTS, 'dist_env.sh'):
        shutil.copy(ROOT / 'tools' / name, root / 'tools' / name)
    return root


def run(script: Path, args, **env):
    full = {k: v for k, v in os.environ.items() if k not in ('PYTHON', 'VIRTUAL_ENV')}
    full.update(env)
    return subprocess.run(['bash', str(script), *args], env=full, capture_output=True,
                          text=True, timeout=60, cwd=script.parent.parent)


ARGS = {'dist_train.sh': ['cfg.py', '2', '--work-dir', 'w'],
        'dist_test.sh': ['cfg.py', 'ckpt.pth', '2', '--out', 'm.json']}


@pytest.mark.parametrize('script', SCRIPTS)
def test_python_without_torch_is_named_with_the_fix(tmp_path, script):
    fake = no_torch_python(tmp_path / 'bin' / 'python')
    proc = run(ROOT / 'tools' / script, ARGS[script], PYTHON=str(fake))
    assert proc.returncode == 1
    assert proc.stderr == (
        f"{script}: '{fake}' (from PYTHON) cannot import torch.\n"
        'Set PYTHON=/path/to/python of the environment that has torch and mmbal, or '
        'activate that venv (. .venv/bin/activate).\n')


def test_activated_venv_then_repo_venv_then_python3(tmp_path):
    repo = copy_repo_tools(tmp_path / 'repo')
    script = repo / 'tools' / 'dist_train.sh'
    # The repository's .venv when no venv is active and PYTHON is unset.
    repo_python = no_torch_python(repo / '.venv' / 'bin' / 'python')
    proc = run(script, ARGS['dist_train.sh'])
    assert proc.returncode == 1
    assert f"'{repo_python}' (from the repository's .venv)" in proc.stderr
    # An activated venv comes before the repository's.
    active = no_torch_python(tmp_path / 'active' / 'bin' / 'python')
    proc = run(script, ARGS['dist_train.sh'], VIRTUAL_ENV=str(tmp_path / 'active'))
    assert f"'{active}' (from the activated venv (VIRTUAL_ENV))" in proc.stderr
    # PYTHON comes first.
    chosen = no_torch_python(tmp_path / 'chosen' / 'python')
    proc = run(script, ARGS['dist_train.sh'], VIRTUAL_ENV=str(tmp_path / 'active'),
               PYTHON=str(chosen))
    assert f"'{chosen}' (from PYTHON)" in proc.stderr
    # Neither: python3 from PATH.
    shutil.rmtree(repo / '.venv')
    no_torch_python(tmp_path / 'path' / 'python3')
    proc = run(script, ARGS['dist_train.sh'],
               PATH=f"{tmp_path / 'path'}{os.pathsep}{os.environ['PATH']}")
    assert "'python3' (from PATH) cannot import torch" in proc.stderr


@pytest.mark.parametrize('script, entry, tail', [
    ('dist_train.sh', 'train.py', 'cfg.py --launcher pytorch --work-dir w'),
    ('dist_test.sh', 'test.py', 'cfg.py ckpt.pth --launcher pytorch --out m.json'),
])
def test_chosen_python_runs_torchrun(tmp_path, script, entry, tail):
    repo = copy_repo_tools(tmp_path / 'repo')
    log = tmp_path / 'calls.log'
    python = recording_python(tmp_path / 'venv' / 'bin' / 'python', log)
    proc = run(repo / 'tools' / script, ARGS[script], VIRTUAL_ENV=str(tmp_path / 'venv'),
               PORT='29999')
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().splitlines() == [
        f'{python} -c import torch',
        f'{python} -m torch.distributed.run --nnodes=1 --node_rank=0 '
        f'--master_addr=127.0.0.1 --nproc_per_node=2 --master_port=29999 '
        f'{repo}/tools/{entry} {tail}']
