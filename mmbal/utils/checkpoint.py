"""The exact allowlist for loading MMEngine checkpoints with ``weights_only=True``.

torch >= 2.6 loads checkpoints with ``weights_only=True``; MMEngine's
checkpoints also hold the message hub's ``HistoryBuffer`` and numpy values, so
a plain load fails with ``UnpicklingError: Unsupported global``. mmbal never
turns ``weights_only`` off: it allows exactly these globals around its own
loading (see :class:`mmbal.engine.MMBalRunner`).

``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer,
'mean')``. Allowing ``builtins.getattr`` itself would let a checkpoint reach any
attribute of any object (``getattr(getattr, '__self__')`` is the builtins
module) and store it in ``HistoryBuffer``'s class-wide method table, which
MMEngine later calls. Where torch can (>= 2.6), ``builtins.getattr`` is bound to
:func:`history_buffer_method`, which resolves only those methods.
"""
import builtins
import contextlib
import pickle
from typing import Iterator, List, Mapping, Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from torch.torch_version import TorchVersion

# The methods HistoryBuffer registers as statistics (HistoryBuffer._set_default_statistics).
HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def history_buffer_method(obj: object, name: object) -> object:
    """``getattr`` for checkpoints: only ``HistoryBuffer.<statistics method>``."""
    if obj is HistoryBuffer and isinstance(name, str) and name in HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); only the HistoryBuffer methods '
        f'{HISTORY_BUFFER_METHODS} may be looked up while loading a checkpoint')


def _getattr_global() -> object:
    """The allowlist entry for ``builtins.getattr``: restricted where torch supports it."""
    if TorchVersion(torch.__version__) >= (2, 6):  # (callable, 'module.name') entries
        return (history_buffer_method, 'builtins.getattr')
    return builtins.getattr


def checkpoint_safe_globals() -> List[object]:
    """Globals that MMEngine writes into a checkpoint (message hub, numpy scalars)."""
    core = getattr(np, '_core', None) or np.core  # numpy >= 2 renamed core
    allowed = [HistoryBuffer, _getattr_global(), core.multiarray._reconstruct,
               core.multiarray.scalar, np.ndarray, np.dtype]
    for name in ('Float64DType', 'Float32DType', 'Int64DType', 'Int32DType', 'BoolDType'):
        dtype_cls = getattr(getattr(np, 'dtypes', None), name, None)
        if dtype_cls is not None:
            allowed.append(dtype_cls)
    return allowed


@contextlib.contextmanager
def safe_checkpoint_loading(source: Optional[str] = None) -> Iterator[None]:
    """Allow MMEngine's checkpoint globals for ``torch.load`` inside this block only.

    ``source``: what is loaded (e.g. "checkpoint 'a.pth'"); a refused file's error names it.
    """
    safe_globals = getattr(torch.serialization, 'safe_globals', None)
    if safe_globals is None:  # torch < 2.5 does not default to weights_only
        yield
        return
    try:
        with safe_globals(checkpoint_safe_globals()):
            yield
    except pickle.UnpicklingError as err:
        if source is None:
            raise
        # torch's text ends with advice to turn weights_only off; keep only the reason.
        reason = str(err).split('WeightsUnpickler error:', 1)[-1]
        reason = reason.split('Check the documentation', 1)[0].strip()
        raise pickle.UnpicklingError(
            f'refused to load {source}: it holds more than weights and plain data '
            f'(tensors, containers, numbers and the allowlisted MMEngine/numpy types), '
            f'and nothing in it was run. {reason}') from err


def drop_executable_meta(checkpoint: object) -> object:
    """Remove ``meta['config']`` from a loaded checkpoint, in place; returns it.

    ``mmengine.runner.Runner.resume`` passes ``meta['config']`` (a legacy key;
    MMEngine itself writes ``meta['cfg']``) to ``Config.fromstring``, which
    executes it, only to read ``gpu_ids``. A resumed checkpoint is data, so the
    key goes before ``resume`` sees it (see the runner's ``load_checkpoint``).
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if isinstance(meta, dict):
        meta.pop('config', None)
    return checkpoint


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's weights and the model differ in keys or shapes."""


def check_state_dict_matches(model_state: Mapping[str, torch.Tensor], state_dict: Mapping,
                             source: str, show: int = 5) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state_dict`` fits ``model_state`` exactly.

    MMEngine loads a mismatching checkpoint with a warning and leaves the
    unmatched tensors at their init, so another model's file evaluates
    silently. The message lists the first ``show`` keys of each kind.
    """
    missing = [k for k in model_state if k not in state_dict]
    unexpected = [k for k in state_dict if k not in model_state]
    shapes = [f'{k} {_shape(v)} in the file, {_shape(model_state[k])} in the model'
              for k, v in state_dict.items()
              if k in model_state and _shape(v) != _shape(model_state[k])]
    problems = []
    for what, items in (('keys missing from the file', missing),
                        ('keys the model does not have', unexpected),
                        ('shape mismatches', shapes)):
        if items:
            more = f', ... ({len(items) - show} more)' if len(items) > show else ''
            problems.append(f'{len(items)} {what}: {", ".join(items[:show])}{more}')
    if problems:
        raise CheckpointMismatchError(
            f'{source} does not match the model: {"; ".join(problems)}. Load it with '
            'strict=False (tools/test.py --strict false) to load only the matching tensors')


def _shape(value: object) -> Optional[tuple]:
    shape = getattr(value, 'shape', None)
    return None if shape is None else tuple(shape)
