"""Multi-process setup that also works on CPU-only machines (gloo)."""
import os

import torch
import torch.distributed as dist
from mmengine.config import Config


def setup_cpu_distributed(cfg: Config) -> None:
    """Start a gloo process group for torchrun on a machine without CUDA.

    MMEngine's own ``init_dist`` calls ``torch.cuda.set_device`` and fails on
    CPU; once a group exists the Runner skips it. DDP on CPU needs
    ``device_ids=None``, which is a config key, not a Runner argument; the other keys of
    the config's ``model_wrapper_cfg`` are kept.
    """
    if torch.cuda.is_available() or dist.is_initialized():
        return
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
               if k not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher pytorch needs the torchrun environment; {missing} '
                           f'are not set (use tools/dist_train.sh)')
    dist.init_process_group('gloo')
    cfg.env_cfg = dict(cfg.get('env_cfg', {}), dist_cfg=dict(backend='gloo'))
    # Keep the config's wrapper options (e.g. find_unused_parameters=True, which sub-step
    # methods need); only the device list is forced.
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'))
    cfg.model_wrapper_cfg = dict(wrapper, device_ids=None)
