"""Checkpoints load with weights_only=True through the explicit allowlist."""
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from mmbal.utils import safe_checkpoint_loading


def _mmengine_like_checkpoint(path):
    buf = HistoryBuffer()
    buf.update(0.5)
    buf.update(1.25)
    torch.save({'state_dict': {'w': torch.ones(2)},
                'message_hub': {'log_scalars': {'val/accuracy': buf},
                                'runtime_info': {'best_score': np.float64(97.5),
                                                 'count': np.int64(3),
                                                 'array': np.arange(3, dtype=np.int32),
                                                 'flag': np.bool_(True), 'acc32': np.float32(0.5)}}}, path)


def test_plain_weights_only_load_fails(tmp_path):
    path = tmp_path / 'ckpt.pth'
    _mmengine_like_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_allowlist_loads_with_weights_only(tmp_path):
    path = tmp_path / 'ckpt.pth'
    _mmengine_like_checkpoint(path)
    with safe_checkpoint_loading():
        ckpt = torch.load(path, weights_only=True)
    hub = ckpt['message_hub']
    assert hub['log_scalars']['val/accuracy'].current() == 1.25
    assert hub['runtime_info']['best_score'] == 97.5
    # The allowlist is scoped: outside the block the strict default is back.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_arbitrary_globals_stay_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'obj': pytest.raises}, path)
    with safe_checkpoint_loading(), pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
