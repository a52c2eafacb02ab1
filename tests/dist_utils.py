"""Run one function per rank in a fresh gloo process group (the DDP tests, on CPU)."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port free on localhost now (for a process group or torchrun)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, step, args: tuple) -> None:
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)
    from mmengine.registry import init_default_scope
    init_default_scope('mmbal')
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=world)
    try:
        step(rank, world, *args)
    finally:
        dist.destroy_process_group()


def run_gloo(step, *args, world: int = 2) -> None:
    """``step(rank, world, *args)`` in ``world`` spawned processes; ``step`` is module-level."""
    mp.spawn(_worker, args=(world, free_port(), step, args), nprocs=world, join=True)
