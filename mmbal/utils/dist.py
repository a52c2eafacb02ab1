"""Multi-process setup that also works on CPU-only machines (gloo), with a bounded timeout."""
import datetime
import os

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log

# Seconds a collective waits for the other ranks before it fails, when the config gives no
# ``env_cfg.dist_cfg.timeout``. PyTorch's default is 30 min for gloo; 10 min (PyTorch's
# NCCL default) still leaves a slow rank-0 checkpoint save or an uneven validation shard
# ample room, and ends a job whose rank hangs three times sooner.
DEFAULT_TIMEOUT = 600


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
    """Start a process group for torchrun on a machine without CUDA, as ``env_cfg.dist_cfg`` says.

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
