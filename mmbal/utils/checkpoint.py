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
from typing import Iterator, List, Optional

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
