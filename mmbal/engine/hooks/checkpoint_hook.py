"""MMEngine's CheckpointHook in an order that a kill at any point leaves resumable."""
import os.path as osp
from collections import deque
from typing import List, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from mmbal.registry import HOOKS
from mmbal.utils import remove_partial_files, write_text_atomic


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """CheckpointHook that deletes a checkpoint only after its successor is in place.

    MMEngine's hook deletes the checkpoint that ``max_keep_ckpts`` drops, and
    the previous best, *before* writing their successors, and rewrites
    ``last_checkpoint`` in place: a kill in between leaves ``last_checkpoint``
    naming a deleted or empty file. Every save here

    1. writes the new file (atomically, by :meth:`MMBalRunner.save_checkpoint`),
    2. points ``last_checkpoint`` at it (atomically),
    3. deletes the files it replaces.

    The checkpoint written in (1) still lists the outgoing step in
    ``keep_ckpt_ids``, so a kill before (3) is finished by the resumed run
    (MMEngine's ``before_train`` deletes steps beyond ``max_keep_ckpts``).
    ``before_train`` deletes the temporary files of a save that was killed.
    Arguments are CheckpointHook's.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process():
            for path in remove_partial_files([self.out_dir, runner.work_dir]):
                runner.logger.info(f'removed {path}, the partial file of an interrupted save')

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        keep = self._keep_with(runner, step)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, filename, self.file_client_args, save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if is_main_process():
            write_text_atomic(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if keep is not None:
            self._drop_outdated(runner, keep)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """MMEngine's best-checkpoint logic, with the previous best deleted last."""
        backend = self.file_backend
        self.file_backend = deferred = _RemovalsDeferred(backend)
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            self.file_backend = backend
        for path in deferred.paths:
            self._remove(path)

    def _keep_with(self, runner, step: int) -> Optional[List[int]]:
        """The kept steps with ``step`` appended, recorded in the message hub before the
        save; None when ``max_keep_ckpts`` is off or ``step`` is kept already (re-save)."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            return None
        keep = [*self.keep_ckpt_ids, step]
        runner.message_hub.update_info('keep_ckpt_ids', keep)
        return keep

    def _drop_outdated(self, runner, keep: List[int]) -> None:
        outdated, kept = keep[:-self.max_keep_ckpts], keep[-self.max_keep_ckpts:]
        self.keep_ckpt_ids = deque(kept, self.max_keep_ckpts)
        runner.message_hub.update_info('keep_ckpt_ids', kept)
        if is_main_process():
            for step in outdated:
                self._remove(self.file_backend.join_path(self.out_dir,
                                                         self.filename_tmpl.format(step)))

    def _remove(self, path: str) -> None:
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are directories
            self.file_backend.rmtree(path)


class _RemovalsDeferred:
    """A file backend whose ``remove``/``rmtree`` only record the path (for later)."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self.paths: List[str] = []

    def remove(self, path: str) -> None:
        self.paths.append(path)

    rmtree = remove

    def __getattr__(self, name: str):
        return getattr(self._backend, name)
