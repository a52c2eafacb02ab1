"""setup_cpu_distributed keeps the config's DDP wrapper options on a CPU machine and starts the
group as ``env_cfg.dist_cfg`` says, with a bounded timeout: a hung rank ends the job."""
import datetime
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from dist_utils import free_port
from mmengine.config import Config
from mmengine.runner import Runner

import mmbal.utils.dist as cpu_dist
from mmbal.engine import build_runner
from mmbal.registry import RUNNERS

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = str(ROOT / 'configs/_base_/default_runtime.py')


def _fake_torchrun(monkeypatch) -> dict:
    """torchrun's environment on a CPU machine; returns what init_process_group receives."""
    seen = {}
    monkeypatch.setattr(cpu_dist.torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(cpu_dist.dist, 'is_initialized', lambda: False)
    monkeypatch.setattr(cpu_dist.dist, 'init_process_group',
                        lambda backend, **kw: seen.update(kw, backend=backend))
    for key, value in (('RANK', '0'), ('WORLD_SIZE', '2'), ('MASTER_ADDR', '127.0.0.1'),
                       ('MASTER_PORT', '29500')):
        monkeypatch.setenv(key, value)
    return seen


def test_find_unused_parameters_survives_the_gloo_setup(monkeypatch):
    _fake_torchrun(monkeypatch)
    cfg = Config(dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel',
                                             find_unused_parameters=True)))
    cpu_dist.setup_cpu_distributed(cfg)
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel',
                                         find_unused_parameters=True, device_ids=None)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'


def test_default_wrapper_without_a_config_entry(monkeypatch):
    _fake_torchrun(monkeypatch)
    cfg = Config(dict())
    cpu_dist.setup_cpu_distributed(cfg)
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel', device_ids=None)


def test_the_config_timeout_and_backend_start_the_group(monkeypatch):
    seen = _fake_torchrun(monkeypatch)
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='gloo', timeout=5))))
    cpu_dist.setup_cpu_distributed(cfg)
    assert seen == dict(backend='gloo', timeout=datetime.timedelta(seconds=5))


def test_the_default_runtime_on_cpu_uses_gloo_with_its_timeout(monkeypatch):
    """default_runtime names nccl (GPU machines); on CPU the group is gloo, same timeout."""
    seen = _fake_torchrun(monkeypatch)
    cfg = Config.fromfile(RUNTIME)
    cpu_dist.setup_cpu_distributed(cfg)
    assert seen == dict(backend='gloo', timeout=datetime.timedelta(seconds=600))
    assert cfg.env_cfg.dist_cfg == dict(backend='gloo', timeout=600)  # what ran


def test_a_config_without_timeout_gets_the_bounded_default(monkeypatch):
    seen = _fake_torchrun(monkeypatch)
    cpu_dist.setup_cpu_distributed(Config(dict(env_cfg=dict(dist_cfg=dict(backend='gloo')))))
    assert seen['timeout'] == datetime.timedelta(seconds=cpu_dist.DEFAULT_TIMEOUT)


@pytest.mark.parametrize('timeout', ['600', 0, -5, True])
def test_a_bad_timeout_is_an_error(monkeypatch, timeout):
    _fake_torchrun(monkeypatch)
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='gloo', timeout=timeout))))
    with pytest.raises(ValueError, match=f'env_cfg.dist_cfg.timeout must be a positive number '
                                         f'of seconds, got {timeout!r}'):
        cpu_dist.setup_cpu_distributed(cfg)


def test_on_gpu_mmengine_passes_the_config_timeout_to_the_group(monkeypatch):
    """GPU machines: MMEngine's Runner.setup_env -> init_dist gets default_runtime's dist_cfg."""
    import mmengine.runner.runner as mm_runner

    class Started(Exception):
        pass

    seen = {}

    def init_process_group(backend, **kwargs):
        seen.update(kwargs, backend=backend)
        raise Started

    monkeypatch.setattr(mm_runner, 'set_multi_processing', lambda **kw: None)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda device: None)
    monkeypatch.setattr(torch.distributed, 'init_process_group', init_process_group)
    for key in ('RANK', 'LOCAL_RANK'):
        monkeypatch.setenv(key, '0')
    monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(Started):
        Runner.setup_env(SimpleNamespace(distributed=True, launcher='pytorch'),
                         Config.fromfile(RUNTIME).env_cfg)
    assert seen == dict(backend='nccl', timeout=datetime.timedelta(seconds=600))


def test_build_runner_bounds_the_timeout_for_every_launcher(monkeypatch, tmp_path):
    """mpi (and GPU torchrun and srun) go through MMEngine's init_dist with env_cfg.dist_cfg
    (slurm's own setup: test_slurm.py)."""
    monkeypatch.setattr(RUNNERS, 'build', lambda cfg: cfg)  # the config the runner gets
    cfg = Config(dict(runner_type='MMBalRunner', work_dir=str(tmp_path),
                      env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    built = build_runner(cfg, 'x.py', launcher='mpi')
    assert built.env_cfg.dist_cfg == dict(backend='nccl', timeout=cpu_dist.DEFAULT_TIMEOUT)


HUNG_RANK = '''
import sys, time
import torch, torch.distributed as dist
from mmengine.config import Config
from mmbal.utils import setup_cpu_distributed

setup_cpu_distributed(Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl',
                                                             timeout=float(sys.argv[1]))))))
if dist.get_rank() == 1:
    time.sleep(3600)  # hangs before the collective rank 0 enters
print(f'rank 0 enters all_reduce at {time.time()}', flush=True)
dist.all_reduce(torch.zeros(1))
'''


def test_a_hung_rank_ends_the_job_within_the_timeout(tmp_path):
    """Two torchrun ranks, rank 1 hangs: rank 0's collective fails after the config's timeout
    and torchrun stops the job (gloo's default would wait 30 min)."""
    timeout = 3
    script = tmp_path / 'hung_rank.py'
    script.write_text(textwrap.dedent(HUNG_RANK))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', str(free_port()), str(script), str(timeout)]
    env = {**os.environ, 'OMP_NUM_THREADS': '1',
           'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail('the job with a hung rank did not end within 120 s')
    ended = time.time()
    entered = float(out.split('rank 0 enters all_reduce at ')[1].split()[0])
    assert proc.returncode != 0
    assert f'Timed out waiting {timeout * 1000}ms' in out, out[-3000:]
    # Collective entered -> job over: the timeout, then torchrun stops the hung rank.
    assert timeout - 0.5 < ended - entered < timeout + 15, ended - entered


def test_end_distributed_destroys_the_group_and_is_a_no_op_without_one():
    cpu_dist.end_distributed()  # no group: nothing to do
    torch.distributed.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}',
                                         rank=0, world_size=1)
    assert torch.distributed.is_initialized()
    cpu_dist.end_distributed()
    assert not torch.distributed.is_initialized()
