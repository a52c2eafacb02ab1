"""Multi-process setup that also works on CPU-only machines (gloo), with a bounded timeout.

torchrun (``--launcher pytorch``) gives each process torch.distributed's variables
(``RANK``, ``WORLD_SIZE``, ...); srun (``--launcher slurm``) gives its own (``SLURM_PROCID``,
...), which :func:`setup_slurm_env` translates, so both launchers then start the same way.
"""
import datetime
import os
import shutil
import subprocess
from typing import Dict, Optional

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log

# Seconds a collective waits for the other ranks before it fails, when the config gives no
# ``env_cfg.dist_cfg.timeout``. PyTorch's default is 30 min for gloo; 10 min (PyTorch's
# NCCL default) still leaves a slow rank-0 checkpoint save or an uneven validation shard
# ample room, and ends a job whose rank hangs three times sooner.
DEFAULT_TIMEOUT = 600
# What srun sets for every task and --launcher slurm cannot do without.
SLURM_VARS = ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST')
# torch.distributed's default rendezvous port (MMEngine's too, for slurm).
DEFAULT_PORT = 29500


def fill_dist_cfg(cfg: Config) -> dict:
    """Give ``cfg.env_cfg.dist_cfg`` a timeout (``DEFAULT_TIMEOUT`` when unset) and return it.

    The timeout is in seconds, as MMEngine's ``init_dist`` (which the Runner calls with
    ``env_cfg.dist_cfg`` on GPU machines) and :func:`setup_cpu_distributed` expect.
    """
    env_cfg = dict(cfg.get('env_cfg') or {})
    dist_cfg = dict(env_cfg.get('dist_cfg') or {})
    timeout = dist_cfg.setdefault('timeout', DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f'env_cfg.dist_cfg.timeout must be a positive number of seconds, '
                         f'got {timeout!r} (config: {cfg.filename})')
    cfg.env_cfg = dict(env_cfg, dist_cfg=dist_cfg)
    return dist_cfg


def setup_cpu_distributed(cfg: Config) -> None:
    """Start a process group for torchrun (or srun, after :func:`setup_slurm_env`) on a machine
    without CUDA, as ``env_cfg.dist_cfg`` says.

    MMEngine's own ``init_dist`` calls ``torch.cuda.set_device`` and fails on
    CPU; once a group exists the Runner skips it. The config's backend is used if
    it runs on CPU tensors, else gloo (the default runtime names nccl, for GPUs);
    the timeout (seconds) and the other ``dist_cfg`` keys go to
    ``init_process_group``. DDP on CPU needs ``device_ids=None``, which is a
    config key, not a Runner argument; the other keys of the config's
    ``model_wrapper_cfg`` are kept.
    """
    if torch.cuda.is_available() or dist.is_initialized():
        return
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
               if k not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher pytorch needs the torchrun environment; {missing} '
                           f'are not set (use tools/dist_train.sh)')
    dist_cfg = fill_dist_cfg(cfg)
    backend = dist_cfg.get('backend', 'gloo')
    if 'cpu' not in dist.Backend.backend_capability.get(backend, ()):
        print_log(f'env_cfg.dist_cfg.backend={backend!r} does not run on CPU; using gloo',
                  logger='current')
        backend = 'gloo'
    kwargs = {k: v for k, v in dist_cfg.items() if k not in ('backend', 'timeout')}
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=dist_cfg['timeout']),
                            **kwargs)
    cfg.env_cfg.dist_cfg = dict(dist_cfg, backend=backend)  # what ran, in the dumped config
    # Keep the config's wrapper options (e.g. find_unused_parameters=True, which sub-step
    # methods need); only the device list is forced.
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'))
    cfg.model_wrapper_cfg = dict(wrapper, device_ids=None)


def _slurm_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f'--launcher slurm: {name}={value!r} is not an integer') from None


def _first_host(node_list: str) -> str:
    """The first host of a slurm node list (``node[01-04]`` -> ``node01``), by ``scontrol``."""
    if shutil.which('scontrol') is None:
        raise RuntimeError(f'--launcher slurm: scontrol is not on PATH; it names the master '
                           f'host of SLURM_NODELIST={node_list!r}. Run on a node of the slurm '
                           f'cluster (tools/slurm_train.sh) or set MASTER_ADDR')
    proc = subprocess.run(['scontrol', 'show', 'hostnames', node_list], capture_output=True,
                          text=True)
    hosts = proc.stdout.split()
    if proc.returncode != 0 or not hosts:
        raise RuntimeError(f'--launcher slurm: `scontrol show hostnames {node_list}` gave no '
                           f'host (exit status {proc.returncode}): {proc.stderr.strip()}')
    return hosts[0]


def slurm_dist_env(port: Optional[int] = None) -> Dict[str, str]:
    """torch.distributed's variables for this srun task, from srun's.

    ``RANK`` and ``WORLD_SIZE`` are ``SLURM_PROCID`` and ``SLURM_NTASKS``;
    ``LOCAL_RANK`` is ``SLURM_LOCALID`` (else the rank modulo the GPU count,
    as MMEngine does); ``MASTER_ADDR`` is kept if set, else the first host of
    ``SLURM_NODELIST``; ``MASTER_PORT`` is ``port``, else the environment's,
    else 29500 (MMEngine's order).
    """
    missing = [k for k in SLURM_VARS if not os.environ.get(k)]
    if missing:
        raise RuntimeError(f'--launcher slurm needs the variables srun sets for each task; '
                           f'{", ".join(missing)} {"is" if len(missing) == 1 else "are"} not '
                           f'set: start the job with srun (tools/slurm_train.sh, '
                           f'tools/slurm_test.sh)')
    rank, world = _slurm_int('SLURM_PROCID'), _slurm_int('SLURM_NTASKS')
    if 'SLURM_LOCALID' in os.environ:
        local_rank = _slurm_int('SLURM_LOCALID')
    else:
        local_rank = rank % max(torch.cuda.device_count(), 1)
    addr = os.environ.get('MASTER_ADDR') or _first_host(os.environ['SLURM_NODELIST'])
    port = port if port is not None else os.environ.get('MASTER_PORT', DEFAULT_PORT)
    return dict(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local_rank),
                MASTER_ADDR=addr, MASTER_PORT=str(port))


def setup_slurm_env(cfg: Config) -> None:
    """Set torch.distributed's variables from srun's (:func:`slurm_dist_env`).

    ``env_cfg.dist_cfg.port`` (MMEngine's slurm option) becomes ``MASTER_PORT``
    and leaves ``dist_cfg``, whose other keys go to ``init_process_group``.
    After this, MMEngine's ``init_dist('slurm')`` (GPU) and
    :func:`setup_cpu_distributed` (CPU) start the group from these variables.
    """
    fill_dist_cfg(cfg)
    port = cfg.env_cfg.dist_cfg.pop('port', None)
    os.environ.update(slurm_dist_env(port))


def end_distributed() -> None:
    """Destroy the default process group, if one was started.

    Without it the interpreter exits with gloo's threads still running, and a rank
    now and then aborts at exit (``terminate called without an active exception``,
    exit code -6) after its work is done, which fails the whole torchrun job.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
