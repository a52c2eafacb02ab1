"""MMBalRunner: the classifier's output size must match the dataset's class list."""
from pathlib import Path

import pytest
from mmengine.config import Config

from mmbal.engine.runner import build_runner

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/concat/concat_r18_avdigits.py'


def small_cfg(tmp_path, **model):
    cfg = Config.fromfile(str(CONFIG))
    cfg.merge_from_dict({
        'work_dir': str(tmp_path), 'train_cfg.max_epochs': 1,
        'train_dataloader.dataset.data_root': str(ROOT / 'data/avdigits'),
        'train_dataloader.dataset.indices': 8, 'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'test_dataloader.dataset.data_root': str(ROOT / 'data/avdigits'),
        'test_dataloader.dataset.indices': 8, 'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False, **model})
    return cfg


@pytest.mark.parametrize('loop', ['train', 'test'])
def test_head_size_other_than_the_class_list_is_named(tmp_path, loop):
    runner = build_runner(small_cfg(tmp_path, **{'model.head.num_classes': 7}), str(CONFIG))
    with pytest.raises(ValueError, match=r'model.head.num_classes=7 but '
                       rf'{loop}_dataloader.dataset \(AVDigitsDataset\) has 10 classes'):
        getattr(runner, loop)()


def test_late_fusion_size_is_checked_too(tmp_path):
    cfg = small_cfg(tmp_path)
    cfg.model.head = None
    cfg.model.fusion = dict(type='LateFusion', num_classes=9)
    runner = build_runner(cfg, str(CONFIG))
    with pytest.raises(ValueError, match='model.fusion.num_classes=9 .* has 10 classes'):
        runner.test()
