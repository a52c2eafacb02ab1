"""Every shipped config builds; those whose data ships run one training step with their
hooks, and run in test mode as ``tools/test.py`` does.

Configs of datasets users bring (CREMA-D, AVE, ...) must fail to build their data with a
clear "not found" error naming the data root, and still build their model and hooks.
"""
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope

from mmbal.balance.teachers import UnimodalTeachers, default_teacher_model
from mmbal.engine import BalanceTrainStep, StepContext, build_runner
from mmbal.engine.runner.mmbal_runner import attach_balance_modules
from mmbal.registry import DATASETS, HOOKS, MODELS
from mmbal.utils import check_top_level_keys

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)


def random_teachers(cfg, model):
    """Random-init unimodal teachers of the student's encoders (G2D/UMT need some)."""
    num_classes = (model.head.num_classes if model.head is not None
                   else model.fusion.out_channels)
    return UnimodalTeachers({m: MODELS.build(default_teacher_model(cfg.model.encoders[m], m,
                                                                   num_classes))
                             for m in model.modalities})


def build_hooks(cfg, model):
    """The config's custom hooks, set up on ``model`` as ``before_run``/``before_train`` do,
    with the modules they own attached (as ``MMBalRunner`` does before the optimizer)."""
    hooks = [HOOKS.build(h) for h in cfg.get('custom_hooks', [])]
    attach_balance_modules(model, hooks)
    for hook in hooks:
        hook.setup(model)
        if hasattr(hook, 'teachers'):  # teachers come from an artifact users make
            hook.teachers = random_teachers(cfg, model)
            hook.resolve(model)
    return hooks


def shipped(cfg) -> bool:
    return (ROOT / cfg.train_dataloader.dataset.data_root).exists()


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_config_builds_and_runs_one_training_step(path):
    init_default_scope('mmbal')
    cfg = Config.fromfile(str(path))
    check_top_level_keys(cfg)
    assert cfg.default_scope == 'mmbal'
    assert cfg.train_cfg.type == 'BalanceTrainLoop'
    data_cfg = cfg.train_dataloader.dataset
    data_cfg.indices = 4
    data_cfg.data_root = str(ROOT / data_cfg.data_root)
    if not Path(data_cfg.data_root).exists():
        missing = re.escape(f'data root {data_cfg.data_root!r} not found')
        with pytest.raises(FileNotFoundError, match=missing):
            DATASETS.build(data_cfg)
        model = MODELS.build(cfg.model)
        build_hooks(cfg, model)
        return
    dataset = DATASETS.build(data_cfg)
    batch = default_collate([dataset[i] for i in range(4)])
    model = MODELS.build(cfg.model)
    hooks = build_hooks(cfg, model)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    log = BalanceTrainStep(model, wrapper, hooks)(batch, StepContext(model=model))
    trained = [k for k in log if 'loss' in k]
    assert trained and all(torch.isfinite(log[k]) for k in trained), log
    assert set(dataset.modalities) >= set(model.modalities)


TEST_MODE = [p for p in CONFIGS if shipped(Config.fromfile(str(p)))]


@pytest.mark.parametrize('path', TEST_MODE, ids=lambda p: p.name)
def test_config_runs_in_test_mode(path, tmp_path):
    """What ``tools/test.py CONFIG CKPT`` does: no optimizer, no teachers, no training."""
    init_default_scope('mmbal')
    cfg = Config.fromfile(str(path))
    model = MODELS.build(cfg.model)
    ckpt = tmp_path / 'model.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.dataset.data_root = str(ROOT / loader.dataset.data_root)
    cfg.test_dataloader.dataset.indices = 4
    cfg.test_dataloader.batch_size = 4
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    cfg.work_dir, cfg.load_from, cfg.resume = str(tmp_path), str(ckpt), False
    metrics = build_runner(cfg, str(path)).test()
    assert 'accuracy/fused' in metrics
