"""G2D's regression mode trains end to end on a tiny affect layout: AffectDataset ->
sequence_collate -> preprocessor -> sequence encoders -> RegressionLoss + G2D terms."""
from functools import partial

import pytest
import torch
from affect_utils import write_affect_pickle
from mmengine.registry import init_default_scope
from step_utils import Stepper
from torch.utils.data import DataLoader

from mmbal.balance.teachers import UnimodalTeachers, default_teacher_model
from mmbal.datasets import AffectDataset
from mmbal.engine.hooks.g2d_hook import G2DHook
from mmbal.registry import MODELS
from mmbal.structures.padded_sequence import sequence_collate

MODS = ('audio', 'visual', 'text')
ENC = {m: dict(type='MaskedMeanTestEncoder', in_channels=d, out_channels=4)
       for m, d in zip(MODS, (3, 4, 5))}


@pytest.fixture
def loader(tmp_path):
    init_default_scope('mmbal')
    ds = AffectDataset('mosi', 'train', str(write_affect_pickle(tmp_path / 'mosi.pkl')),
                       task='regression', label_range=(-3, 3), serialize_data=False,
                       sample_cache=dict(mode='off'),
                       pipeline=[dict(type='PackMultimodalInputs', modalities=MODS,
                                      sequences=MODS, label_type='float')])
    return DataLoader(ds, batch_size=4, collate_fn=partial(sequence_collate, sequences=MODS))


def student():
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='MultimodalClassifier', encoders=ENC,
        fusion=dict(type='LateFusion', num_classes=1), head=None, task='regression',
        loss=dict(type='RegressionLoss', kind='mse', sigmoid=True)))


def test_g2d_regression_trains_on_affect_sequences(loader, one_thread):
    model = student()
    hook = G2DHook(task='regression', reg_logit='mse', tau=(1, 1, 1))
    hook.setup(model)
    torch.manual_seed(1)
    hook.teachers = UnimodalTeachers({m: MODELS.build(default_teacher_model(ENC[m], m, 1))
                                      for m in MODS})
    hook.resolve(model)
    stepper = Stepper(model, [hook], lr=0.5)
    batches = list(loader)
    assert batches[0]['inputs']['text'].mask.sum(1).tolist() == [6, 3, 1, 4]
    for it, batch in enumerate(batches):  # epoch 0: phase 1, one modality trains
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        log = stepper(batch['inputs'], batch['data_samples'], epoch=0, it=it)
        for key in ('loss', 'loss_g2d_feat', 'loss_g2d_logit'):
            assert torch.isfinite(log[key]), (key, log)
        assert 0 <= float(log['mae/fused']) <= 1
        prioritized = [m for m in MODS if hook._pending[f'k_{m}'] == 1.0]
        assert len(prioritized) == 1 and hook._pending['phase'] == 1
        assert prioritized == [min(MODS, key=lambda m: hook._pending[f'conf_teacher_{m}'])]
        moved = {m: any(not torch.equal(p, before[f'encoders.{m}.{n}'])
                        for n, p in model.encoders[m].named_parameters()) for m in MODS}
        assert moved == {m: m in prioritized for m in MODS}
        assert not torch.equal(model.fusion.heads[prioritized[0]].weight,
                               before[f'fusion.heads.{prioritized[0]}.weight'])
    stepper(batches[0]['inputs'], batches[0]['data_samples'], epoch=2, it=2)
    assert hook._pending['phase'] == 3 and all(hook._pending[f'k_{m}'] == 1.0 for m in MODS)


@pytest.mark.slow
def test_g2d_regression_config_runs_through_the_runner(tmp_path):
    """configs/g2d/g2d-reg_transformer_mosi.py (tiny encoders, teachers from checkpoint
    files) trains 2 epochs, validates with AffectRegressionMetric, keeps the best val MAE."""
    from pathlib import Path

    from mmengine.config import Config

    from mmbal.engine import build_runner
    init_default_scope('mmbal')
    write_affect_pickle(tmp_path / 'mosi.pkl')
    cfg = Config.fromfile(str(Path(__file__).resolve().parents[2] / 'configs' / 'g2d' /
                              'g2d-reg_transformer_mosi.py'))
    cfg.model.encoders = ENC
    teachers = {}
    for m in MODS:
        path = tmp_path / f'teacher_{m}.pth'
        torch.save({'state_dict': MODELS.build(default_teacher_model(ENC[m], m, 1)).state_dict()},
                   path)
        teachers[m] = str(path)
    cfg.custom_hooks[0].update(tau=(1, 1, 0), analysis=None, teacher_checkpoints=teachers)
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.dataset.update(data_root=str(tmp_path), ann_file='mosi.pkl')
        loader.update(num_workers=0, persistent_workers=False, batch_size=4)
    cfg.auto_scale_lr.base_batch_size = 4
    cfg.train_cfg.max_epochs = 2
    cfg.work_dir = str(tmp_path / 'work')
    runner = build_runner(cfg, cfg.filename)
    runner.train()
    metrics = runner.test()
    assert {'mae/fused', 'corr/fused', 'acc2_non0/fused', 'f1_has0/text'} <= set(metrics)
    assert list((tmp_path / 'work').glob('best_mae_fused_epoch_*.pth'))
