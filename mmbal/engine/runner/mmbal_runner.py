"""MMEngine's Runner with safe checkpoint loading and test-on-best-checkpoint."""
import json
import os.path as osp
import re
from typing import List, Optional, Sequence, Tuple

from mmengine.config import Config
from mmengine.dist import barrier, is_main_process, master_only
from mmengine.logging import print_log
from mmengine.model import ModuleDict, is_model_wrapper
from mmengine.runner import Runner

from mmbal.registry import HOOKS, RUNNERS
from mmbal.utils import (FormatOnceConfig, InvalidCheckpointError, atomic_write,
                         check_resumable, check_state_dict_matches, checkpoint_candidates,
                         configure_host_allocator, drop_executable_meta, read_last_checkpoint,
                         safe_checkpoint_loading)


# What a resume from a checkpoint without these keys restarts from the config.
RESTARTED = {'optimizer': 'the optimizer state (e.g. momentum) starts empty',
             'param_schedulers': 'the parameter schedulers start from their first step'}


@RUNNERS.register_module()
class MMBalRunner(Runner):
    """MMEngine's Runner with method-owned modules, safe checkpoint loading, test-on-best.

    * Balance hooks may own modules (auxiliary heads, prototypes): the custom
      hooks are built first, and each balance hook's ``build_modules(model)``
      result is attached as ``model.balance_modules[hook.method]`` before the
      DDP wrapper and the optimizer are built, so those parameters are
      trained, synchronised, saved and resumed like the model's own.
    * Resume and ``load_from`` run inside :func:`safe_checkpoint_loading`, which
      allows exactly the globals MMEngine writes; nothing falls back to
      ``weights_only=False``.
    * Loads are strict (``load_strict``, default True): missing or unexpected
      keys and shape mismatches raise :class:`CheckpointMismatchError` on every
      rank instead of MMEngine's warning. ``tools/test.py --strict false`` sets
      it to False.
    * Checkpoints are written atomically (:func:`atomic_write`); a resume checks
      its file first and, when resuming from the work dir, falls back to the
      newest valid checkpoint with a warning naming both.
    * Training starts by logging the world size and the effective batch, then
      MMEngine's ``auto_scale_lr`` (its ``base_batch_size`` checked first).
    * ``env_cfg.malloc_cfg`` sets glibc's allocator thresholds at set-up
      (:mod:`mmbal.utils.host_allocator`), before loader workers are forked.
    * ``cfg`` is a :class:`FormatOnceConfig`: the config text that the log, the
      dumped config and every checkpoint's ``meta['cfg']`` hold is formatted by
      yapf once, not at each of those uses.
    """

    def __init__(self, *args, custom_hooks=None, **kwargs) -> None:
        self._prebuilt_hooks = [_build_hook(h) for h in (custom_hooks or [])]
        super().__init__(*args, custom_hooks=self._prebuilt_hooks, **kwargs)
        self.load_strict = True
        if self._allocator_note:  # set up before the logger existed
            self.logger.info(self._allocator_note)

    @property
    def cfg(self) -> Config:
        return self._cfg

    @cfg.setter
    def cfg(self, cfg: Config) -> None:
        self._cfg = FormatOnceConfig.of(cfg)

    def setup_env(self, env_cfg: dict) -> None:
        """MMEngine's set-up, then ``env_cfg.malloc_cfg`` (the host allocator, before any
        loader worker is forked; see :mod:`mmbal.utils.host_allocator`)."""
        super().setup_env(env_cfg)
        self._allocator_note = configure_host_allocator(env_cfg.get('malloc_cfg'))

    def wrap_model(self, model_wrapper_cfg, model):
        attach_balance_modules(model, self._prebuilt_hooks)
        return super().wrap_model(model_wrapper_cfg, model)

    def build_train_loop(self, loop):
        loop = super().build_train_loop(loop)
        check_num_classes(self.model, loop.dataloader.dataset, 'train_dataloader')
        return loop

    def build_test_loop(self, loop):
        loop = super().build_test_loop(loop)
        check_num_classes(self.model, loop.dataloader.dataset, 'test_dataloader')
        return loop

    def scale_lr(self, optim_wrapper, auto_scale_lr: Optional[dict] = None) -> None:
        """Log the world size and the effective batch, then scale the lr as MMEngine does.

        ``train()`` calls this once, after the optimizer is built. MMEngine scales by
        ``batch_size x world size / base_batch_size``; gradient accumulation is not
        counted, which a warning says when it is on.
        """
        batch = self.train_dataloader.batch_sampler.batch_size  # also with a batch_sampler
        counts = getattr(optim_wrapper, '_accumulative_counts', 1)
        self.logger.info(
            f'world size {self.world_size}: effective batch {batch * self.world_size * counts} '
            f'(train_dataloader.batch_size {batch} x {self.world_size} processes x '
            f'optim_wrapper.accumulative_counts {counts})')
        if auto_scale_lr and auto_scale_lr.get('enable', False):
            base = auto_scale_lr.get('base_batch_size')
            if isinstance(base, bool) or not isinstance(base, int) or base < 1:
                raise ValueError(
                    f'auto_scale_lr.base_batch_size must be a positive integer (the batch '
                    f'size the lr was tuned for, on one process), got {base!r}; set it, e.g. '
                    f'auto_scale_lr = dict(base_batch_size={batch}) '
                    f'(config: {self.cfg.filename})')
            if counts > 1:
                self.logger.warning(
                    f'auto_scale_lr scales the lr by batch_size x world size only (MMEngine), '
                    f'not by optim_wrapper.accumulative_counts={counts}')
        super().scale_lr(optim_wrapper, auto_scale_lr)

    def resume(self, filename: str, *args, **kwargs) -> None:
        with safe_checkpoint_loading():
            super().resume(filename, *args, **kwargs)

    def load_checkpoint(self, filename: str, map_location='cpu', strict: Optional[bool] = None,
                        revise_keys: Sequence = ((r'^module.', ''),)):
        """Runner.load_checkpoint; ``strict=None`` means ``self.load_strict``."""
        strict = self.load_strict if strict is None else strict
        # resume() reads its checkpoint through here; MMEngine would execute meta['config'].
        with safe_checkpoint_loading():
            checkpoint = drop_executable_meta(super().load_checkpoint(
                filename, map_location, strict=False, revise_keys=list(revise_keys)))
        if strict:
            model = self.model.module if is_model_wrapper(self.model) else self.model
            state = checkpoint.get('state_dict', checkpoint)
            for pattern, repl in revise_keys:
                state = {re.sub(pattern, repl, k): v for k, v in state.items()}
            check_state_dict_matches(model.state_dict(), state, f'checkpoint {filename}')
        return checkpoint

    def load_or_resume(self) -> None:
        """MMEngine's load-or-resume, with the resumed file checked first.

        * ``resume`` with a path: the file must exist (``FileNotFoundError``) and
          be a complete checkpoint (:class:`InvalidCheckpointError`).
        * ``resume`` from the work dir: the file ``last_checkpoint`` names, else
          the newest valid ``*.pth`` (a warning names the skipped and the chosen
          file); no checkpoint at all is said plainly and trains from scratch.
        * A resumed file without optimizer or scheduler state (a ``save_best``
          checkpoint) gets a warning naming what restarts from the config.
        """
        if self._has_loaded or not self._resume:
            return super().load_or_resume()
        if self._load_from is not None:
            if not osp.isfile(self._load_from):
                raise FileNotFoundError(f'the checkpoint to resume from does not exist: '
                                        f'{self._load_from}')
            path, absent = self._load_from, check_resumable(self._load_from)
        else:
            found = self._latest_resumable()
            if found is None:
                self.logger.info(f'no checkpoint in {self.work_dir} to resume from: '
                                 'training from scratch')
                return
            path, absent = found
        absent = [k for k in absent if k != 'param_schedulers' or self.param_schedulers]
        if absent:
            self.logger.warning(
                f'resuming from {path}, which has no {" and no ".join(absent)} state (MMEngine '
                f'writes best_* checkpoints without it): '
                f'{" and ".join(RESTARTED[k] for k in absent)}, so the run does not continue '
                'the interrupted one exactly')
        self.resume(path)

    def _latest_resumable(self) -> Optional[Tuple[str, List[str]]]:
        """``(path, absent training-state keys)`` of the checkpoint to auto-resume from.

        The one ``last_checkpoint`` names if it is valid; otherwise the newest
        valid ``*.pth`` in the work dir (and the named file's dir), with a
        warning; None when there is no checkpoint file at all.
        """
        named = read_last_checkpoint(self.work_dir)
        dirs = [self.work_dir] + ([osp.dirname(named)] if named else [])
        candidates = checkpoint_candidates(dirs)
        if named is not None:
            named = osp.abspath(named)
            candidates = [named] + [c for c in candidates if c != named]
        skipped = []
        for path in candidates:
            try:
                absent = check_resumable(path)
            except InvalidCheckpointError as err:
                skipped.append(str(err))
                continue
            if path != named:
                why = (f'last_checkpoint names {named}, which is not usable' if named else
                       f'{self.work_dir} has no last_checkpoint')
                self.logger.warning(f'{why}; resuming from {path}, the newest valid checkpoint'
                                    + (f' (skipped: {"; ".join(skipped)})' if skipped else ''))
            return path, absent
        if skipped:
            raise RuntimeError(f'no valid checkpoint in {self.work_dir} to resume from: '
                               f'{"; ".join(skipped)}. Remove them or train without --resume')
        return None

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs) -> None:
        """Runner.save_checkpoint through :func:`atomic_write`: a kill leaves the old
        ``filename`` or the complete new one, never a partial file."""
        with atomic_write(osp.join(out_dir, filename)) as tmp:
            super().save_checkpoint(out_dir, osp.basename(tmp), *args, **kwargs)

    def test_best(self) -> dict:
        """Test the checkpoint that the val metric selected (the last model if none).

        The test metrics, the checkpoint and the seed go to
        ``<work_dir>/test_results.json`` so benchmark tools read one file.
        """
        best = self.message_hub.get_info('best_ckpt')
        barrier()  # rank 0 may still be writing the checkpoint the others load
        if best is not None:
            print_log(f'testing the val-selected checkpoint {best}', logger='current')
            self.load_checkpoint(best)
        else:
            print_log('no val-selected checkpoint (no save_best): testing the last model',
                      logger='current')
        metrics = self.test()
        if is_main_process():
            record = dict(checkpoint=best, seed=self.seed, trained_epochs=self.epoch,
                          best_val=_to_builtin(self.message_hub.get_info('best_score')),
                          test=_to_builtin(metrics))
            with open(osp.join(self.work_dir, 'test_results.json'), 'w') as f:
                json.dump(record, f, indent=2)
        return metrics


def _build_hook(hook):
    """A hook instance from a config dict (``priority`` set on it, as MMEngine does)."""
    if not isinstance(hook, dict):
        return hook
    hook = dict(hook)
    priority = hook.pop('priority', None)
    obj = HOOKS.build(hook)
    if priority is not None:
        obj.priority = priority
    return obj


def attach_balance_modules(model, hooks) -> None:
    """``model.balance_modules[hook.method] = hook.build_modules(model)`` for every hook
    that owns modules; the modules move to the model's device."""
    owned = {}
    for hook in hooks:
        build = getattr(hook, 'build_modules', None)
        module = build(model) if getattr(hook, 'balance_method', False) and build else None
        if module is None:
            continue
        if hook.method in owned:
            raise KeyError(f'two balance hooks own modules under {hook.method!r}')
        owned[hook.method] = module
    if not owned:
        return
    if hasattr(model, 'balance_modules'):
        raise AttributeError(f'{type(model).__name__} already has balance_modules')
    param = next(model.parameters(), None)
    model.balance_modules = ModuleDict(owned)
    if param is not None:
        model.balance_modules.to(param.device)


def check_num_classes(model, dataset, key: str) -> None:
    """Raise when the classifier's outputs and the dataset's class list differ in size.

    The head size is a model field and the class list comes from the data (some
    datasets take it from the files read), so the two can drift apart silently.
    """
    model = model.module if is_model_wrapper(model) else model
    classes = getattr(dataset, 'metainfo', {}).get('classes')
    if not classes or not hasattr(model, 'modalities'):
        return
    head = getattr(model, 'head', None)
    outputs, field = ((head.num_classes, 'model.head.num_classes') if head is not None else
                      (getattr(model.fusion, 'out_channels', None), 'model.fusion.num_classes'))
    if outputs is not None and outputs != len(classes):
        raise ValueError(f'{field}={outputs} but {key}.dataset ({type(dataset).__name__}) '
                         f'has {len(classes)} classes; set {field}={len(classes)}')


def _to_builtin(value):
    """JSON-ready copy of metrics that may hold numpy or torch scalars."""
    if isinstance(value, dict):
        return {k: _to_builtin(v) for k, v in value.items()}
    return value.item() if hasattr(value, 'item') else value
