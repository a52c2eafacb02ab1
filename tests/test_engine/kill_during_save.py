"""Kill a training run at one file operation of its checkpoint saves, then resume it.

A child process (forked, so imports are warm) trains the tiny AV-Digits model
for two epochs with the default checkpoint hook (interval 1, max_keep_ckpts 1,
save_best) and a val metric that improves every epoch, so every epoch writes
``epoch_N.pth``, replaces the best checkpoint and rewrites ``epoch_N.pth``.
:class:`SaveTracer` sees every file operation in the work dir (the checkpoint
bytes written, each rename, each delete) and SIGKILLs the process at the one
it is told to: before it, or half-way through a write.
"""
import json
import multiprocessing
import os
import os.path as osp
import signal
from pathlib import Path
from typing import List, Optional, Tuple

# matplotlib, torch._dynamo and the mmbal packages are imported lazily by the visualizer,
# the optimizer and build_runner (~1 s each): imported here once, not in every child.
import matplotlib.pyplot  # noqa: F401
import torch
import torch._dynamo  # noqa: F401
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.logging import MessageHub

import mmbal.datasets  # noqa: F401
import mmbal.evaluation  # noqa: F401
import mmbal.models  # noqa: F401
from mmbal.engine import MMBalRunner, build_runner
from mmbal.registry import METRICS

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/concat/concat_r18_avdigits.py'
EPOCHS = 2
# What a 2-epoch run writes, renames and deletes, in order (tmp files are written by
# torch.save through LocalBackend.put and renamed into place; last_checkpoint likewise).
SAVE_SEQUENCE = [
    # epoch 1: the periodic checkpoint, the first best, the periodic one again (new best_ckpt)
    ('write', 'epoch_1.pth.tmp'), ('rename', 'epoch_1.pth'), ('rename', 'last_checkpoint'),
    ('write', 'best_accuracy_fused_epoch_1.pth.tmp'), ('rename', 'best_accuracy_fused_epoch_1.pth'),
    ('write', 'epoch_1.pth.tmp'), ('rename', 'epoch_1.pth'), ('rename', 'last_checkpoint'),
    # epoch 2: the old epoch_1 and the old best go only once their successors are in place
    ('write', 'epoch_2.pth.tmp'), ('rename', 'epoch_2.pth'), ('rename', 'last_checkpoint'),
    ('delete', 'epoch_1.pth'),
    ('write', 'best_accuracy_fused_epoch_2.pth.tmp'), ('rename', 'best_accuracy_fused_epoch_2.pth'),
    ('write', 'epoch_2.pth.tmp'), ('rename', 'epoch_2.pth'), ('rename', 'last_checkpoint'),
    ('delete', 'best_accuracy_fused_epoch_1.pth'),
]
# Kill points of one operation: before it starts; for a write, also after half the bytes.
POINTS = {'write': ('before', 'mid'), 'rename': ('before',), 'delete': ('before',)}


@METRICS.register_module(force=True)
class EpochNumber(BaseMetric):
    """``accuracy/fused`` = the epoch number: the best checkpoint changes every epoch."""

    def process(self, data_batch, data_samples) -> None:
        self.results.append(0)

    def compute_metrics(self, results) -> dict:
        return {'accuracy/fused': float(MessageHub.get_current_instance().get_info('epoch') + 1)}


def tiny_cfg(work_dir: str, resume: bool) -> Config:
    cfg = Config.fromfile(str(CONFIG))
    options = {'work_dir': work_dir, 'train_cfg.max_epochs': EPOCHS, 'resume': resume,
               'model.encoders.audio.base_channels': 4,
               'model.encoders.visual.base_channels': 4}
    for split in ('train', 'val', 'test'):
        options.update({
            f'{split}_dataloader.dataset.data_root': str(ROOT / 'data/avdigits'),
            f'{split}_dataloader.dataset.indices': 8, f'{split}_dataloader.batch_size': 8,
            f'{split}_dataloader.dataset.serialize_data': False,  # skips a gc.collect()
            f'{split}_dataloader.num_workers': 0,
            f'{split}_dataloader.persistent_workers': False})
    cfg.merge_from_dict(options)
    cfg.val_evaluator = dict(type='EpochNumber')
    return cfg


class SaveTracer:
    """Numbers the file operations in ``work_dir``; SIGKILLs at ``kill = (index, point)``.

    Operations: the checkpoint bytes MMEngine writes (``LocalBackend.put``), every
    ``os.replace`` and ``os.remove``. ``events`` lists ``(kind, file name)``.
    """

    def __init__(self, work_dir: str, kill: Optional[Tuple[int, str]] = None) -> None:
        self.work_dir, self.kill = osp.abspath(work_dir), kill
        self.events: List[Tuple[str, str]] = []

    def install(self, patch=setattr) -> None:
        """Wrap the three operations (``patch``: e.g. pytest's ``monkeypatch.setattr``)."""
        put, replace, remove = LocalBackend.put, os.replace, os.remove

        def traced_put(backend, obj, filepath):
            if self._at('write', filepath, 'mid'):
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                self._die()
            put(backend, obj, filepath)

        def traced_replace(src, dst, *args, **kwargs):
            self._at('rename', dst)
            replace(src, dst, *args, **kwargs)

        def traced_remove(path, *args, **kwargs):
            self._at('delete', path)
            remove(path, *args, **kwargs)

        patch(LocalBackend, 'put', traced_put)
        patch(os, 'replace', traced_replace)
        patch(os, 'remove', traced_remove)

    def _at(self, kind: str, path, mid: Optional[str] = None) -> bool:
        """Record the operation; die if it is the one to kill before; True for 'mid'."""
        path = osp.abspath(str(path))
        if osp.dirname(path) != self.work_dir:
            return False
        index = len(self.events)
        self.events.append((kind, osp.basename(path)))
        if self.kill == (index, 'before'):
            self._die()
        return mid is not None and self.kill == (index, mid)

    @staticmethod
    def _die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)


def cache_pretty_text(patch=setattr) -> None:
    """Format a config once, not at every save (MMEngine runs yapf on it: ~0.3 s)."""
    fget, cache = Config.pretty_text.fget, {}

    def pretty_text(cfg: Config) -> str:
        if id(cfg) not in cache:
            cache[id(cfg)] = fget(cfg)
        return cache[id(cfg)]

    patch(Config, 'pretty_text', property(pretty_text))


def _child(work_dir: str, resume: bool, kill, out: str) -> None:
    torch.set_num_threads(1)
    cache_pretty_text()
    tracer = SaveTracer(work_dir, kill)
    tracer.install()
    resumed = []
    resume_fn = MMBalRunner.resume

    def traced_resume(runner, filename, *args, **kwargs):
        resumed.append(osp.basename(filename))
        return resume_fn(runner, filename, *args, **kwargs)

    MMBalRunner.resume = traced_resume
    runner = build_runner(tiny_cfg(work_dir, resume), str(CONFIG))
    runner.train()
    runner.test_best()
    with open(out, 'w') as f:
        json.dump({'events': tracer.events, 'resumed_from': resumed}, f)


def run_child(work_dir: str, resume: bool = False, kill=None) -> Tuple[int, Optional[dict]]:
    """Run :func:`_child` in a forked process: its exit code and its summary (None if killed)."""
    out = osp.join(osp.dirname(work_dir), osp.basename(work_dir) + f'.{int(resume)}.json')
    proc = multiprocessing.get_context('fork').Process(
        target=_child, args=(work_dir, resume, kill, out))
    proc.start()
    proc.join(300)
    summary = json.loads(Path(out).read_text()) if osp.exists(out) else None
    return proc.exitcode, summary
