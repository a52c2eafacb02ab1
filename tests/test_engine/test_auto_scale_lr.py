"""Training starts by logging the world size and the effective batch; ``auto_scale_lr``
(``tools/train.py --auto-scale-lr``) scales the lr as MMEngine does, from the config's
``base_batch_size``."""
import logging
from pathlib import Path

import pytest
from kill_during_save import CONFIG, cache_pretty_text, tiny_cfg
from mmengine.config import Config

from mmbal.engine import build_runner


class Stop(Exception):
    """Raised where train() builds the schedulers: right after the lr is scaled."""


def stop(*args) -> None:
    raise Stop


@pytest.fixture(autouse=True)
def fast_runner(one_thread, monkeypatch):
    cache_pretty_text(monkeypatch.setattr)


def log_text(runner) -> str:
    return ''.join(Path(h.baseFilename).read_text() for h in runner.logger.handlers
                   if isinstance(h, logging.FileHandler))


def scaled_cfg(work_dir) -> Config:
    """The tiny AV-Digits config with its schedule's auto_scale_lr enabled."""
    cfg = tiny_cfg(str(work_dir), False)
    cfg.auto_scale_lr.enable = True
    return cfg


def start_training(cfg, monkeypatch, world_size: int = 1):
    """The runner of ``cfg`` after train() scaled its lr, as on ``world_size`` processes,
    and what it logged meanwhile."""
    runner = build_runner(cfg, str(CONFIG))
    runner._world_size = world_size  # as get_dist_info() gives under torchrun/srun
    monkeypatch.setattr(runner, 'build_param_scheduler', stop)
    before = len(log_text(runner))  # runners built in the same second share a log file
    with pytest.raises(Stop):
        runner.train()
    return runner, log_text(runner)[before:]


def test_auto_scale_lr_scales_as_mmengine_and_logs_the_effective_batch(tmp_path, monkeypatch):
    world_size = 2
    cfg = scaled_cfg(tmp_path)
    base_lr, batch = cfg.optim_wrapper.optimizer.lr, cfg.train_dataloader.batch_size
    base_batch = cfg.auto_scale_lr.base_batch_size  # the schedule's
    runner, log = start_training(cfg, monkeypatch, world_size)
    ratio = batch * world_size / base_batch
    assert runner.optim_wrapper.param_groups[0]['lr'] == pytest.approx(base_lr * ratio)
    assert (f'world size {world_size}: effective batch {batch * world_size} (train_dataloader.'
            f'batch_size {batch} x {world_size} processes x optim_wrapper.accumulative_counts '
            f'1)') in log
    assert (f'LR is set based on batch size of {base_batch} and the current batch size is '
            f'{batch * world_size}. Scaling the original LR by {ratio}.') in log


def test_without_the_flag_the_lr_stays_and_accumulation_counts_in_the_batch(
        tmp_path, monkeypatch):
    cfg = tiny_cfg(str(tmp_path), False)
    cfg.optim_wrapper.accumulative_counts = 3
    batch = cfg.train_dataloader.batch_size
    runner, log = start_training(cfg, monkeypatch, world_size=2)
    assert runner.optim_wrapper.param_groups[0]['lr'] == cfg.optim_wrapper.optimizer.lr
    assert (f'world size 2: effective batch {batch * 6} (train_dataloader.batch_size {batch} '
            f'x 2 processes x optim_wrapper.accumulative_counts 3)') in log
    assert 'LR is set based on' not in log


def test_auto_scale_lr_with_accumulation_warns_what_it_does_not_count(tmp_path, monkeypatch):
    cfg = scaled_cfg(tmp_path)
    cfg.optim_wrapper.accumulative_counts = 2
    _, log = start_training(cfg, monkeypatch)
    assert ('auto_scale_lr scales the lr by batch_size x world size only (MMEngine), not by '
            'optim_wrapper.accumulative_counts=2') in log


def test_auto_scale_lr_without_a_valid_base_batch_size_is_named(tmp_path, monkeypatch):
    runner = build_runner(tiny_cfg(str(tmp_path), False), str(CONFIG))
    monkeypatch.setattr(runner.train_loop, 'run', lambda: pytest.fail('training started'))
    batch = runner.train_dataloader.batch_size
    for bad in (dict(), dict(base_batch_size=0), dict(base_batch_size=True),
                dict(base_batch_size=64.0)):
        runner.auto_scale_lr = dict(bad, enable=True)
        with pytest.raises(ValueError, match=(
                rf'auto_scale_lr.base_batch_size must be a positive integer \(the batch size the '
                rf'lr was tuned for, on one process\), got {bad.get("base_batch_size")!r}; set '
                rf'it, e.g. auto_scale_lr = dict\(base_batch_size={batch}\) \(config: ')):
            runner.train()
