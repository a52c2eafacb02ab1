"""The exact allowlist for loading MMEngine checkpoints with ``weights_only=True``.

torch >= 2.6 loads checkpoints with ``weights_only=True``; MMEngine's
checkpoints also hold the message hub's ``HistoryBuffer`` and numpy values, so
a plain load fails with ``UnpicklingError: Unsupported global``. mmbal never
turns ``weights_only`` off: it allows exactly these globals around its own
loading (see :class:`mmbal.engine.MMBalRunner`).
"""
import builtins
import contextlib
from typing import Iterator, List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer


def checkpoint_safe_globals() -> List[object]:
    """Globals that MMEngine writes into a checkpoint (message hub, numpy scalars)."""
    core = getattr(np, '_core', None) or np.core  # numpy >= 2 renamed core
    allowed = [HistoryBuffer, builtins.getattr, core.multiarray._reconstruct,
               core.multiarray.scalar, np.ndarray, np.dtype]
    for name in ('Float64DType', 'Float32DType', 'Int64DType', 'Int32DType', 'BoolDType'):
        dtype_cls = getattr(getattr(np, 'dtypes', None), name, None)
        if dtype_cls is not None:
            allowed.append(dtype_cls)
    return allowed


@contextlib.contextmanager
def safe_checkpoint_loading() -> Iterator[None]:
    """Allow MMEngine's checkpoint globals for ``torch.load`` inside this block only."""
    safe_globals = getattr(torch.serialization, 'safe_globals', None)
    if safe_globals is None:  # torch < 2.5 does not default to weights_only
        yield
        return
    with safe_globals(checkpoint_safe_globals()):
        yield
