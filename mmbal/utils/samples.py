"""Samples of a config's split as the model receives them, for the analysis tools."""
from typing import Any, Dict, Tuple

import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from mmbal.registry import DATASETS, MODELS


def build_split_dataset(cfg: Config, split: str) -> Any:
    """The dataset of ``cfg['<split>_dataloader']`` with its pipeline (scope: the config's)."""
    key = f'{split}_dataloader'
    loader = cfg.get(key)
    if not isinstance(loader, dict) or 'dataset' not in loader:
        have = [k for k in cfg.keys() if k.endswith('_dataloader')]
        raise KeyError(f'split {split!r}: {cfg.filename} has no {key} with a dataset '
                       f'(it has {have})')
    init_default_scope(cfg.get('default_scope', 'mmbal'))
    return DATASETS.build(loader.dataset)


def build_preprocessor(cfg: Config) -> Any:
    """The model's data preprocessor (``MultimodalDataPreprocessor`` when it names none)."""
    return MODELS.build(cfg.model.get('data_preprocessor')
                        or dict(type='MultimodalDataPreprocessor'))


def model_inputs(dataset: Any, index: int, preprocessor: Any
                 ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """``(inputs, data_samples)`` of sample ``index`` as a batch of one: after the dataset's
    pipeline and the data preprocessor, i.e. what the model's forward gets."""
    batch = preprocessor(pseudo_collate([dataset[index]]))
    return batch['inputs'], batch['data_samples']
