"""The AIM configs: their hook is set up from the config's own data (the class-mean pass of
``before_train``) and trains one step in each phase with finite losses."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope

from mmbal.registry import DATASETS, HOOKS, MODELS
from step_utils import Stepper

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / 'configs' / 'aim').glob('*.py'))
#: AV-Digits train rows of the class-mean pass: the first ROWS cover all 10 digits.
ROWS = 40
#: What each ablation's name promises, against the full method's hook.
ABLATIONS = {'aim-nopam': dict(pam=False), 'aim-nodam': dict(dam=False),
             'aim-label': dict(score_source='label'), 'aim': {}}


def shipped(cfg) -> bool:
    return (ROOT / cfg.train_dataloader.dataset.data_root).exists()


@pytest.mark.parametrize('path', [p for p in CONFIGS if shipped(Config.fromfile(str(p)))],
                         ids=lambda p: p.name)
def test_aim_config_trains_one_step_per_phase(path):
    init_default_scope('mmbal')
    cfg = Config.fromfile(str(path))
    (hook_cfg, ) = cfg.custom_hooks
    hook = HOOKS.build(hook_cfg)
    full = HOOKS.build(dict(type='AIMHook', switch_epoch=hook.switch_epoch))
    changed = {k for k in ('pam', 'dam', 'score_source') if getattr(hook, k) != getattr(full, k)}
    assert {k: getattr(hook, k) for k in changed} == ABLATIONS[path.stem.split('_')[0]]
    assert 0 < hook.switch_epoch < cfg.train_cfg.max_epochs  # both phases are trained
    for split in ('train', 'val'):
        loader = cfg[f'{split}_dataloader']
        loader.dataset.update(data_root=str(ROOT / loader.dataset.data_root), indices=ROWS)
        loader.update(num_workers=0, persistent_workers=False)
    model = MODELS.build(cfg.model)
    hook.before_train(SimpleNamespace(cfg=cfg, model=model,
                                      train_loop=SimpleNamespace(runs_balance_step=True)))
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    data = model.data_preprocessor(default_collate([dataset[i] for i in range(4)]))
    stepper = Stepper(model, [hook], lr=1e-3)
    for epoch in (0, hook.switch_epoch):
        log = stepper(data['inputs'], data['data_samples'], epoch=epoch)
        assert all(torch.isfinite(v) for k, v in log.items() if 'loss' in k), log
        assert ('loss_mod' in hook._pending) == (epoch >= hook.switch_epoch)
        assert all(torch.isfinite(torch.as_tensor(v)) for v in hook._pending.values())
        hook._pending = {}
