"""AIMHook through mmbal's training step: Algorithm 1's phases, gradient routing, state."""
import copy
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config

from mmbal.balance.aim import (BlockParams, block_loss, block_score, block_weights, cloned_buffers,
                               depth_coefficient, depth_loss, modulation_loss, pam_terms,
                               prototype_logits)
from mmbal.balance import build_split_loader
from mmbal.engine.hooks import AIMHook
from mmbal.engine.step import StepContext
from mmbal.models.classifiers import MultimodalClassifier
from step_utils import Stepper, step_grads

pytestmark = pytest.mark.usefixtures('one_thread')
K = 3
#: AV-Digits train rows read by the class-mean test: the first ROWS cover all 10 digits.
ROWS = 40


def tiny_model(seed: int = 0, feat_stages=(5, 5, 5)) -> MultimodalClassifier:
    torch.manual_seed(seed)
    return MultimodalClassifier(
        encoders=dict(audio=dict(type='ResNet18', in_channels=1, base_channels=4),
                      feat=dict(type='MLPEncoder', in_channels=6, out_channels=4,
                                hidden_channels=feat_stages)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=K))


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    inputs = dict(audio=torch.randn(4, 1, 16, 16, generator=g), feat=torch.randn(4, 6, generator=g))
    return inputs, dict(gt_label=torch.tensor([0, 1, 2, 1]))


def class_means(seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    return dict(audio=torch.randn(K, 1, 16, 16, generator=g, dtype=torch.float64),
                feat=torch.randn(K, 6, generator=g, dtype=torch.float64))


def ready_hook(model, **kw) -> AIMHook:
    hook = AIMHook(switch_epoch=kw.pop('switch_epoch', 1), **kw)
    torch.manual_seed(3)
    hook.prepare(model, class_means())
    return hook


def buffers(model):
    return {n: b.clone() for n, b in model.named_buffers()}


def test_before_the_switch_the_model_trains_on_ce_only():
    inputs, samples = batch()
    model = tiny_model()
    plain, _ = step_grads(model, [], inputs, samples)
    plain_buffers = buffers(model)
    model = tiny_model()
    hook = ready_hook(model)
    grads, log = step_grads(model, [hook], inputs, samples, epoch=0)
    for name, g in plain.items():
        torch.testing.assert_close(grads[name], g, rtol=0, atol=0)
    assert all(torch.equal(b, plain_buffers[n]) for n, b in model.named_buffers())
    assert 'loss_aim_pdm' in log and 'loss_aim_dap' in log and 'loss_aim_mod' not in log
    # The prototypes and the modules got their gradients and were stepped.
    for opt in hook.optimizers():
        params = [p for group in opt.param_groups for p in group['params']]
        assert params and all(p.grad is None for p in params)  # zeroed after the step
        assert all(opt.state[p].get('step', 0) == 1 for p in params)  # Adam stepped once


@pytest.mark.parametrize('pam, dam', [(False, True), (True, True), (True, False)])
def test_from_the_switch_encoders_learn_from_l_mod_only(pam, dam):
    inputs, samples = batch()
    model = tiny_model()
    plain_forward = copy.deepcopy(model).train()
    plain_forward(inputs, samples, mode='tensor')   # BN statistics after one forward
    hook = ready_hook(model, pam=pam, dam=dam)
    # P_d in eval mode, with the running statistics this batch's forward has just updated.
    prototypes = {m: hook.dap.depth_prototypes(m, plain_forward.encoders[m])
                  for m in model.modalities}
    before, modules = copy.deepcopy(model), copy.deepcopy(hook.modules_)
    grads, log = step_grads(model, [hook], inputs, samples, epoch=1)
    # The step's backward trains the DAP loss (+ L_pdm), no CE(f, y); L_mod reaches the
    # encoders as a per-loss gradient added in edit_grads.
    extra = log['loss_aim_pdm'].item() if pam else 0.0
    assert 'loss_aim_mod' not in log
    assert log['loss'].item() == pytest.approx(log['loss_aim_dap'].item() + extra, rel=1e-6)
    for name, _ in model.fusion.named_parameters(prefix='fusion'):
        assert grads[name] is None
    for name, _ in model.head.named_parameters(prefix='head'):
        assert grads[name] is None
    for n, b in model.named_buffers():
        assert torch.equal(b, dict(plain_forward.named_buffers())[n]), n
    # The encoder gradient is d L_mod / d theta, L_mod rebuilt from eqs. 9-15.
    labels = samples['gt_label']
    per_depth = []
    for m in before.modalities:
        enc, h, terms = before.encoders[m], before.encoders[m].prepare(inputs[m]), []
        for i in range(enc.num_stages):
            h_in, h = h, enc.run_stage(i, h, cloned_buffers(enc, i))
            logits = prototype_logits(h, prototypes[m][i])
            term = [block_score(logits, labels), block_loss(logits, labels)]
            if pam:
                aux = pam_terms(modules[m][i], BlockParams(enc, i), h_in, labels,
                                lambda o, p=prototypes[m][i]: prototype_logits(o, p))
                term += [block_score(aux['aux_logits'], labels),
                         block_loss(aux['aux_logits'], labels)]
            terms.append(term)
        per_depth.append(terms)
    depth_losses, alphas = [], []
    for i in range(4):
        t = [per_depth[j][i] for j in range(2)]
        s = torch.stack([x[0] for x in t])
        rho, rho_aux = block_weights(s, torch.stack([x[2] for x in t]) if pam else None)
        alphas.append(depth_coefficient(s, dam))
        depth_losses.append(depth_loss([x[1] for x in t], rho,
                                       [x[3] for x in t] if pam else None, rho_aux))
    expected_loss = modulation_loss(alphas, depth_losses)
    assert hook._pending['loss_mod'].item() == pytest.approx(expected_loss.item(), rel=1e-5)
    names = [n for n, _ in before.encoders.named_parameters(prefix='encoders')]
    expected = torch.autograd.grad(expected_loss, list(before.encoders.parameters()),
                                   allow_unused=True)
    for name, g in zip(names, expected):
        if g is None:
            assert grads[name] is None, name
        else:
            torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-7)


def test_label_scores_carry_the_block_through_the_rest_and_the_modality_share():
    inputs, samples = batch()
    model = tiny_model()
    plain_forward = copy.deepcopy(model).train()
    outputs = plain_forward(inputs, samples, mode='outputs')
    hook = ready_hook(model, score_source='label')
    grads, log = step_grads(model, [hook], inputs, samples, epoch=1)
    # At the last block the carry is the pooled feature: s = mean softmax(s_m)[y] of the forward.
    labels = samples['gt_label']
    for m, logits in outputs.logits('analytic').items():
        expected = torch.softmax(logits.double(), 1)[torch.arange(4), labels].mean()
        assert hook._pending[f's/{m}/4'].item() == pytest.approx(expected.item(), rel=1e-5)
    assert all(grads[n] is None for n, _ in model.named_parameters() if n.startswith('head.'))
    assert grads['encoders.audio.stem.0.weight'].abs().sum() > 0
    for n, b in model.named_buffers():
        assert torch.equal(b, dict(plain_forward.named_buffers())[n]), n


def test_ce_after_switch_keeps_the_head_learning():
    inputs, samples = batch()
    model = tiny_model()
    hook = ready_hook(model, ce_after_switch=True, pdm_after_switch=False)
    grads, log = step_grads(model, [hook], inputs, samples, epoch=1)
    assert 'loss' in log and 'loss_mod' in hook._pending and 'loss_aim_pdm' not in log
    assert grads['head.fc.weight'] is not None
    # CE(f, y) and L_mod both reach the encoders: the gradient is their sum.
    ce_only, _ = step_grads(tiny_model(), [], inputs, samples)
    assert not torch.equal(grads['encoders.feat.layers.0.weight'],
                           ce_only['encoders.feat.layers.0.weight'])


def test_logs_every_score_weight_and_coefficient():
    inputs, samples = batch()
    model = tiny_model()
    hook = ready_hook(model)
    Stepper(model, [hook], lr=0.0)(inputs, samples, epoch=1)
    logged = set(hook._pending)
    for d in range(1, 5):
        assert f'alpha/{d}' in logged
        for m in model.modalities:
            assert {f's/{m}/{d}', f's_aux/{m}/{d}', f'rho/{m}/{d}', f'rho_aux/{m}/{d}',
                    f'mask/{m}/{d}'} <= logged
    rho = sum(float(hook._pending[f'{k}/{m}/1']) for k in ('rho', 'rho_aux')
              for m in model.modalities)
    assert rho == pytest.approx(1.0, rel=1e-9)


def test_state_round_trip_restores_prototypes_modules_and_momentum():
    inputs, samples = batch()
    model = tiny_model()
    hook = ready_hook(model)
    Stepper(model, [hook], lr=0.1)(inputs, samples, epoch=0)
    state = copy.deepcopy(hook.state_dict())
    resumed = AIMHook(switch_epoch=1)
    resumed.load_state_dict(state)          # before prepare, as a resume does
    torch.manual_seed(99)
    resumed.prepare(model, class_means())
    for a, b in zip(hook.dap.parameters(), resumed.dap.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(hook.modules_.parameters(), resumed.modules_.parameters()):
        assert torch.equal(a, b)
    for old, new in zip(hook.optimizers(), resumed.optimizers()):
        assert str(old.state_dict()) == str(new.state_dict())
    fresh = ready_hook(tiny_model())
    with pytest.raises(KeyError, match='no decoupling modules'):
        fresh.load_state_dict({'dap': state['dap'], 'optimizers': state['optimizers']})


def test_before_train_takes_the_class_means_of_the_train_split_with_the_eval_pipeline():
    root = Path(__file__).resolve().parents[2] / 'data' / 'avdigits'

    def loader(split, pipeline):
        return dict(batch_size=4, num_workers=0, collate_fn=dict(type='default_collate'),
                    sampler=dict(type='DefaultSampler', shuffle=split == 'train'),
                    dataset=dict(type='AVDigitsDataset', data_root=str(root), split=split,
                                 modalities=('visual', ), pipeline=pipeline, indices=ROWS))
    pack = dict(type='PackMultimodalInputs', modalities=('visual', ))
    train = [dict(type='DegradeImage', noise_std=0.5, seed=3), pack]
    evaluation = [dict(type='Normalize', mean=[0.1307], std=[0.3081]), pack]
    cfg = Config(dict(train_dataloader=loader('train', train),
                      val_dataloader=loader('val', evaluation)))
    torch.manual_seed(0)
    model = MultimodalClassifier(
        encoders=dict(visual=dict(type='ResNet18', in_channels=1, base_channels=4)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=10))
    runner = SimpleNamespace(cfg=cfg, model=model,
                             train_loop=SimpleNamespace(runs_balance_step=True))
    hook = AIMHook(switch_epoch=1)
    hook.before_train(runner)
    # The same rows read with the eval pipeline, averaged per class by hand.
    rows = list(build_split_loader(cfg, 'train', pipeline='eval'))
    x = torch.cat([model.data_preprocessor(b)['inputs']['visual'] for b in rows]).double()
    y = torch.cat([b['data_samples']['gt_label'] for b in rows])
    means = hook.class_means['visual']
    assert means.shape == (10, 1, 1, 28, 28)
    for k in range(10):
        torch.testing.assert_close(means[k], x[y == k].mean(0))
    assert tuple(hook.dap.prototypes['visual'].shape) == (10, 1, 1, 28, 28)


def test_aim_hook_checks_its_config():
    with pytest.raises(ValueError, match='switch_epoch=-1; expected an int >= 0'):
        AIMHook(switch_epoch=-1)
    with pytest.raises(ValueError, match="score_source='probe'; expected one of"):
        AIMHook(switch_epoch=1, score_source='probe')
    with pytest.raises(ValueError, match="pdm_map='conv'"):
        AIMHook(switch_epoch=1, pdm_map='conv')
    with pytest.raises(ValueError, match=r"dap_optimizer=\{'lr': 0.1\}; expected an optimizer cfg"):
        AIMHook(switch_epoch=1, dap_optimizer=dict(lr=0.1))
    hook = ready_hook(tiny_model(), pdm_optimizer=dict(type='SGD', lr=0.5))
    assert [type(o).__name__ for o in hook.optimizers()] == ['Adam', 'SGD']
    assert hook.optimizers()[1].param_groups[0]['lr'] == 0.5
    with pytest.raises(ValueError, match='different numbers of blocks'):
        ready_hook(tiny_model(feat_stages=(5, )))
    model = tiny_model()
    hook = AIMHook(switch_epoch=1)
    inputs, samples = batch()
    with pytest.raises(RuntimeError, match='prepare'):
        Stepper(model, [hook])(inputs, samples)


def runner_cfg(work_dir, max_epochs: int, resume: bool = False) -> Config:
    root = Path(__file__).resolve().parents[2]
    cfg = Config.fromfile(str(root / 'configs/concat/concat_r18_avdigits.py'))
    options = {'work_dir': str(work_dir), 'train_cfg.max_epochs': max_epochs,
               'train_cfg.val_interval': 100, 'resume': resume}
    for split in ('train', 'val', 'test'):
        options.update({f'{split}_dataloader.dataset.data_root': str(root / 'data/avdigits'),
                        f'{split}_dataloader.dataset.indices': ROWS,
                        f'{split}_dataloader.num_workers': 0,
                        f'{split}_dataloader.persistent_workers': False,
                        f'{split}_dataloader.batch_size': 20})
    cfg.merge_from_dict(options)
    cfg.model.encoders.audio.base_channels = 4
    cfg.model.encoders.visual.base_channels = 4
    cfg.custom_hooks = [dict(type='AIMHook', switch_epoch=1)]
    return cfg


@pytest.mark.slow
def test_runner_trains_both_phases_and_resumes_the_aim_state(tmp_path):
    from mmbal.engine.runner import build_runner
    config = str(Path(__file__).resolve().parents[2] / 'configs/concat/concat_r18_avdigits.py')
    runner = build_runner(runner_cfg(tmp_path, max_epochs=2), config)
    runner.train()
    scalars = runner.message_hub.log_scalars
    for key in ('train/loss_aim_dap', 'train/loss_aim_pdm', 'train/balance/aim/loss_mod',
                'train/balance/aim/alpha/4', 'train/balance/aim/rho_aux/visual/1'):
        assert math.isfinite(scalars[key].current()), key
    saved = torch.load(tmp_path / 'epoch_2.pth', map_location='cpu',
                       weights_only=False)['balance_hooks']['aim']
    resumed = build_runner(runner_cfg(tmp_path, max_epochs=2, resume=True), config)
    resumed.train()                        # nothing left to train: the state as restored
    hook = next(h for h in resumed.hooks if isinstance(h, AIMHook))
    for name, value in hook.dap.state_dict().items():
        assert torch.equal(value, saved['dap'][name]), name
    for name, value in hook.modules_.state_dict().items():
        assert torch.equal(value, saved['modules'][name]), name
