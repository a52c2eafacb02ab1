"""MMEngine's Runner with safe checkpoint loading and test-on-best-checkpoint."""
import json
import os.path as osp

from mmengine.dist import barrier, is_main_process
from mmengine.logging import print_log
from mmengine.model import ModuleDict, is_model_wrapper
from mmengine.runner import Runner

from mmbal.registry import HOOKS, RUNNERS
from mmbal.utils import drop_executable_meta, safe_checkpoint_loading


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
    """

    def __init__(self, *args, custom_hooks=None, **kwargs) -> None:
        self._prebuilt_hooks = [_build_hook(h) for h in (custom_hooks or [])]
        super().__init__(*args, custom_hooks=self._prebuilt_hooks, **kwargs)

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

    def resume(self, filename: str, *args, **kwargs) -> None:
        with safe_checkpoint_loading():
            super().resume(filename, *args, **kwargs)

    def load_checkpoint(self, filename: str, *args, **kwargs):
        # resume() reads its checkpoint through here; MMEngine would execute meta['config'].
        with safe_checkpoint_loading():
            return drop_executable_meta(super().load_checkpoint(filename, *args, **kwargs))

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
