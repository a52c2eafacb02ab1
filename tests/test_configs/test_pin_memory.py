"""The real-data dataset configs pin their loaders' batches for GPU runs; on CPU that is a no-op."""
import copy
import warnings
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

DATASETS = Path(__file__).resolve().parents[2] / 'configs' / '_base_' / 'datasets'


@pytest.mark.parametrize('name', ['crema-d.py', 'ave.py', 'kinetics-sounds.py'])
def test_real_data_loaders_pin_memory(name):
    cfg = Config.fromfile(str(DATASETS / name))
    for split in ('train', 'val', 'test'):
        assert cfg[f'{split}_dataloader'].pin_memory is True, (name, split)


def test_pinned_loader_of_a_config_gives_the_same_batches_on_cpu():
    cfg = Config.fromfile(str(DATASETS / 'crema-d.py'))
    samples = [dict(inputs=dict(audio=torch.full((1, 4, 3), float(i))),
                    data_samples=dict(gt_label=i % 6)) for i in range(5)]
    batches = {}
    for pin in (True, False):
        loader = copy.deepcopy(cfg.val_dataloader.to_dict())
        loader.update(dataset=samples, num_workers=0, persistent_workers=False, batch_size=2,
                      pin_memory=pin)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # torch: "no accelerator is found" on CPU
            batches[pin] = list(Runner.build_dataloader(loader))
    assert len(batches[True]) == 3
    for pinned, plain in zip(batches[True], batches[False]):
        assert torch.equal(pinned['inputs']['audio'], plain['inputs']['audio'])
        assert torch.equal(pinned['data_samples']['gt_label'], plain['data_samples']['gt_label'])
        assert pinned['inputs']['audio'].is_pinned() == torch.cuda.is_available()
