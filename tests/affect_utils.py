"""Tiny affect pickles in MultiBench's schema (synthetic values), a sequence encoder for tests."""
import pickle
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from mmbal.models.backbones.mlp import MLPEncoder
from mmbal.registry import MODELS
from mmbal.structures import PaddedSequence

DIMS = {'vision': 4, 'audio': 3, 'text': 5}  # feature sizes D of the tiny layout
T = 6  # fixed (padded) length


def affect_split(lengths: Sequence[int], labels, seed: int = 0, ids=None) -> Dict[str, np.ndarray]:
    """One split: each modality (N, T, D) front-padded with zeros to T; sample i has
    ``lengths[i]`` real steps (non-zero values), the steps before are zero."""
    rng = np.random.default_rng(seed)
    n = len(lengths)
    split = {}
    for key, dim in DIMS.items():
        arr = np.zeros((n, T, dim), dtype=np.float64)
        for i, length in enumerate(lengths):
            arr[i, T - length:] = rng.uniform(0.5, 1.5, size=(length, dim))
        split[key] = arr
    split['labels'] = np.asarray(labels, dtype=np.float64).reshape(n, 1, 1)
    split['id'] = np.array(ids if ids is not None else [f'clip{seed}_{i}' for i in range(n)])
    return split


def write_affect_pickle(path: Path, splits: Optional[dict] = None) -> Path:
    """``{'train', 'valid', 'test'}`` of sentiment scores; ``splits`` overrides them."""
    default = {
        'train': affect_split([6, 3, 1, 4, 2, 5, 6, 3], [2.4, -1.2, 0.0, 3.0, -3.0, 0.6, -0.4, 1.5],
                              seed=0),
        'valid': affect_split([2, 5, 4], [-2.0, 1.0, 0.3], seed=1),
        'test': affect_split([4, 1, 6, 2], [1.8, -0.7, 0.0, -2.6], seed=2),
    }
    default.update(splits or {})
    path.write_bytes(pickle.dumps(default, protocol=4))
    return path


@MODELS.register_module(force=True)
class MaskedMeanTestEncoder(MLPEncoder):
    """Test-only: the mean of a ``PaddedSequence``'s real steps, then an MLP."""

    def prepare(self, x: PaddedSequence) -> torch.Tensor:
        mask = x.mask.unsqueeze(-1).to(x.data.dtype)
        return (x.data * mask).sum(1) / mask.sum(1).clamp_min(1)
