"""--launcher slurm: srun's variables become torch.distributed's, with named errors for what is
missing. A fake ``scontrol`` on PATH stands in for slurm's; the group is a 1-process gloo one."""
import datetime
import os
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import mmengine.runner.runner as mm_runner
import pytest
import torch.distributed as dist
from dist_utils import free_port
from mmengine.config import Config
from mmengine.runner import Runner

import mmbal.utils.dist as cpu_dist
from mmbal.engine import build_runner
from mmbal.registry import RUNNERS

DIST_VARS = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')
SRUN_TASK = dict(SLURM_PROCID='3', SLURM_NTASKS='8', SLURM_LOCALID='1',
                 SLURM_NODELIST='node[01-02]')


@pytest.fixture
def slurm_env(tmp_path, monkeypatch):
    """A clean environment (restored afterwards) with a fake ``scontrol`` first on PATH that
    records its arguments and prints the hosts of ``node[01-02]``; returns its log."""
    log = tmp_path / 'scontrol.log'
    scontrol = tmp_path / 'bin' / 'scontrol'
    scontrol.parent.mkdir()
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {log}\nprintf "node01\\nnode02\\n"\n')
    scontrol.chmod(0o755)
    with mock.patch.dict(os.environ):
        for key in (*DIST_VARS, *SRUN_TASK):
            os.environ.pop(key, None)
        os.environ['PATH'] = f'{scontrol.parent}{os.pathsep}{os.environ["PATH"]}'
        yield log


def test_srun_variables_become_torch_distributed_ones(slurm_env):
    os.environ.update(SRUN_TASK)
    assert cpu_dist.slurm_dist_env() == dict(RANK='3', WORLD_SIZE='8', LOCAL_RANK='1',
                                             MASTER_ADDR='node01', MASTER_PORT='29500')
    assert slurm_env.read_text() == 'show hostnames node[01-02]\n'


def test_master_address_and_port_from_the_environment_or_the_config(slurm_env):
    os.environ.update(SRUN_TASK, MASTER_ADDR='10.0.0.5', MASTER_PORT='29700')
    assert cpu_dist.slurm_dist_env()['MASTER_PORT'] == '29700'
    assert cpu_dist.slurm_dist_env(port=29800)['MASTER_PORT'] == '29800'  # dist_cfg.port
    assert cpu_dist.slurm_dist_env()['MASTER_ADDR'] == '10.0.0.5'
    assert not slurm_env.exists()  # MASTER_ADDR set: scontrol is not asked


@pytest.mark.parametrize('missing', [['SLURM_PROCID'], ['SLURM_PROCID', 'SLURM_NODELIST']])
def test_a_missing_srun_variable_is_named_with_the_fix(slurm_env, missing):
    os.environ.update({k: v for k, v in SRUN_TASK.items() if k not in missing})
    verb = 'is' if len(missing) == 1 else 'are'
    with pytest.raises(RuntimeError, match=(
            f'--launcher slurm needs the variables srun sets for each task; '
            rf'{", ".join(missing)} {verb} not set: start the job with srun \(tools/'
            r'slurm_train.sh, tools/slurm_test.sh\)')):
        cpu_dist.slurm_dist_env()


def test_a_non_integer_rank_is_named(slurm_env):
    os.environ.update(SRUN_TASK, SLURM_PROCID='x')
    with pytest.raises(ValueError, match="--launcher slurm: SLURM_PROCID='x' is not an integer"):
        cpu_dist.slurm_dist_env()


def test_without_scontrol_the_master_address_is_asked_for(slurm_env):
    os.environ.update(SRUN_TASK, PATH=str(slurm_env.parent / 'empty'))
    with pytest.raises(RuntimeError, match=r"scontrol is not on PATH; it names the master host "
                       r"of SLURM_NODELIST='node\[01-02\]'.* or set MASTER_ADDR"):
        cpu_dist.slurm_dist_env()


def test_a_failing_scontrol_is_reported(slurm_env):
    Path(slurm_env.parent / 'bin' / 'scontrol').write_text(
        '#!/bin/sh\necho "Invalid hostlist" >&2\nexit 1\n')
    os.environ.update(SRUN_TASK)
    with pytest.raises(RuntimeError, match=r'`scontrol show hostnames node\[01-02\]` gave no '
                       r'host \(exit status 1\): Invalid hostlist'):
        cpu_dist.slurm_dist_env()


def test_build_runner_with_slurm_outside_srun_names_the_variables(slurm_env, monkeypatch,
                                                                  tmp_path):
    """What tools/train.py --launcher slurm did here: KeyError: 'SLURM_PROCID' in MMEngine."""
    monkeypatch.setattr(RUNNERS, 'build', lambda cfg: pytest.fail('the runner was built'))
    cfg = Config(dict(runner_type='MMBalRunner', work_dir=str(tmp_path)))
    with pytest.raises(RuntimeError, match='SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST are '
                                           'not set: start the job with srun'):
        build_runner(cfg, 'x.py', launcher='slurm')


def test_one_srun_task_starts_a_gloo_group_on_cpu(slurm_env, monkeypatch):
    """setup_slurm_env then setup_cpu_distributed, as build_runner does on a CPU node."""
    monkeypatch.setattr(cpu_dist.torch.cuda, 'is_available', lambda: False)
    Path(slurm_env.parent / 'bin' / 'scontrol').write_text('#!/bin/sh\necho 127.0.0.1\n')
    os.environ.update(SLURM_PROCID='0', SLURM_NTASKS='1', SLURM_LOCALID='0',
                      SLURM_NODELIST='localnode')
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl', timeout=20,
                                                 port=free_port()))))
    port = cfg.env_cfg.dist_cfg.port
    cpu_dist.setup_slurm_env(cfg)
    try:
        cpu_dist.setup_cpu_distributed(cfg)
        assert (dist.get_rank(), dist.get_world_size(), dist.get_backend()) == (0, 1, 'gloo')
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert os.environ['MASTER_ADDR'] == '127.0.0.1' and os.environ['MASTER_PORT'] == str(port)
    assert cfg.env_cfg.dist_cfg == dict(backend='gloo', timeout=20)  # port went to MASTER_PORT


def test_on_gpu_mmengine_starts_the_group_from_the_same_variables(slurm_env, monkeypatch):
    """GPU nodes: the Runner's init_dist('slurm') reads srun's variables again; the group gets
    the config's backend and timeout, and the address and port set here."""
    class Started(Exception):
        pass

    seen = {}

    def init_process_group(backend, **kwargs):
        seen.update(kwargs, backend=backend, addr=os.environ['MASTER_ADDR'],
                    port=os.environ['MASTER_PORT'], rank=os.environ['RANK'])
        raise Started

    monkeypatch.setattr(mm_runner, 'set_multi_processing', lambda **kw: None)
    monkeypatch.setattr(cpu_dist.torch.cuda, 'set_device', lambda device: seen.update(dev=device))
    monkeypatch.setattr(dist, 'init_process_group', init_process_group)
    os.environ.update(SRUN_TASK)
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl', port=29811))))
    cpu_dist.setup_slurm_env(cfg)
    with pytest.raises(Started):
        Runner.setup_env(SimpleNamespace(distributed=True, launcher='slurm'), cfg.env_cfg)
    assert seen == dict(backend='nccl', timeout=datetime.timedelta(seconds=600), addr='node01',
                        port='29811', rank='3', dev=1)
