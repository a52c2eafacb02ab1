"""D&R (docs/methods/dr.md): purity, strength, the blend, the schedule, the dataset pass,
resume and DDP.

Every expected number is computed by hand (counts, math.tanh) from the spec's formulas;
the functions under test never produce their own expectation.
"""
import copy
import io
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from dist_utils import run_gloo
from mmengine.config import Config
from mmengine.dataset import default_collate
from torch import nn

from step_utils import Stepper, tiny_classifier

from mmbal.balance.dataset_pass import build_split_loader
from mmbal.balance.purity import (cluster_purity, relearn_strength, representation_purity,
                                  split_features)
from mmbal.balance.reinit import param_snapshot
from mmbal.engine.hooks import dr_hook
from mmbal.engine.hooks.dr_hook import DRHook, reinit_epochs
from mmbal.registry import DATASETS, MODELS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py

# Spec test 5: three well-separated pairs of points.
POINTS = [[0., 0.], [0.1, 0.], [5., 5.], [5.1, 5.], [10., 0.], [10.1, 0.]]
TRAIN_Y = [0, 0, 1, 1, 2, 2]  # each pair one class: purity 6/6
VAL_Y = [0, 1, 2, 0, 1, 2]  # each pair two classes: purity (1 + 1 + 1) / 6


def fake_runner(model, epoch=0, cfg=None, max_epochs=90, optimizer=None):
    return SimpleNamespace(model=model, epoch=epoch, max_epochs=max_epochs,
                           cfg=cfg if cfg is not None else Config(dict(
                               train_dataloader=dict(num_workers=0), val_dataloader=dict())),
                           train_loop=SimpleNamespace(runs_balance_step=True),
                           optim_wrapper=SimpleNamespace(optimizer=optimizer))


# --------------------------------------------------------------------------- hand values
def test_purity_by_hand():
    # clusters {0,1,2} hold labels (0,0,1): 2; clusters {3,4,5} hold (1,2,2): 2 -> 4/6
    assert cluster_purity([0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 1]) == pytest.approx(4 / 6)
    assert cluster_purity([0, 0, 1, 1, 2, 2], [7, 7, 3, 3, 5, 5]) == 1.0  # any cluster ids
    with pytest.raises(ValueError, match='3 labels for 2 cluster ids'):
        cluster_purity([0, 1, 2], [0, 1])


def test_strength_by_hand_and_a_zero_gap_leaves_the_encoders_bit_identical():
    assert relearn_strength(0.9, 0.6, 3.0) == pytest.approx(math.tanh(0.9), abs=1e-12)
    assert relearn_strength(0.6, 0.9, 3.0) == pytest.approx(0.716298, abs=1e-6)  # |gap|
    assert relearn_strength(0.7, 0.7, 3.0) == 0.0
    model = tiny_classifier()
    hook = DRHook()
    hook.snapshot = {m: param_snapshot(tiny_classifier(seed=1).encoders[m])
                     for m in model.modalities}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hook.relearn(model, {m: relearn_strength(0.7, 0.7, 3.0) for m in model.modalities})
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def bn_model():
    """An encoder with a BN buffer and a separate head, all parameters 3, init snapshot 1."""
    model = SimpleNamespace(modalities=['audio'],
                            encoders=nn.ModuleDict({'audio': nn.Sequential(nn.Linear(2, 2),
                                                                         nn.BatchNorm1d(2))}),
                            head=nn.Linear(2, 2))
    params = [*model.encoders.parameters(), *model.head.parameters()]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    sum(p.sum() for p in params).backward()
    opt.step()  # every parameter has a momentum buffer now
    with torch.no_grad():
        for p in params:
            p.fill_(3.0)
    model.encoders['audio'][1].running_mean.fill_(7.0)
    hook = DRHook()
    hook.snapshot = {'audio': {n: torch.ones_like(p)
                               for n, p in model.encoders['audio'].named_parameters()}}
    return model, opt, hook


@pytest.mark.parametrize('reset_momentum', [False, True])
def test_blend_by_hand_touches_encoder_parameters_only(reset_momentum):
    model, opt, hook = bn_model()
    momentum = {p: opt.state[p]['momentum_buffer'].clone()
                for p in [*model.encoders.parameters(), *model.head.parameters()]}
    hook.relearn(model, {'audio': 0.25}, opt if reset_momentum else None)
    for name, p in model.encoders['audio'].named_parameters():  # 0.25 * 1 + 0.75 * 3
        assert torch.equal(p.detach(), torch.full_like(p, 2.5)), name
    assert torch.equal(model.encoders['audio'][1].running_mean, torch.full((2, ), 7.0))
    assert all(torch.equal(p, torch.full_like(p, 3.0)) for p in model.head.parameters())
    for p in model.head.parameters():  # the head's momentum is kept either way
        assert torch.equal(opt.state[p]['momentum_buffer'], momentum[p])
    for p in model.encoders.parameters():  # the encoder's: kept, unless reset_momentum
        if reset_momentum:
            assert p not in opt.state
        else:
            assert torch.equal(opt.state[p]['momentum_buffer'], momentum[p])


def test_schedule_runs_before_epoch_kr_plus_one_only(monkeypatch):
    assert reinit_epochs(20, 3, 90) == [21, 41, 61]
    assert reinit_epochs(20, 3, 61) == [21, 41]  # epoch 61 is past a 61-epoch run
    hook = DRHook(interval=20, max_reinits=3)
    assert [e for e in range(200) if hook.is_reinit_epoch(e)] == [21, 41, 61]
    # the schedule point reads the train and val splits with the eval transforms, never test
    calls = []
    monkeypatch.setattr(dr_hook, 'build_split_loader',
                        lambda cfg, split, pipeline, num_workers: calls.append((split, pipeline))
                        or split)
    monkeypatch.setattr(hook, 'diagnose', lambda model, loaders, epoch: {'epoch': epoch,
                                                                          **loaders})
    seen, optimizers = [], []

    def relearn(model, strengths, optimizer):
        seen.append(strengths)
        optimizers.append(optimizer)

    monkeypatch.setattr(hook, 'relearn', relearn)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    for epoch in range(90):
        hook.before_train_epoch(fake_runner(tiny_classifier(), epoch=epoch, optimizer=opt))
    assert [s['epoch'] for s in seen] == [21, 41, 61]
    assert all((s['train'], s['val']) == ('train', 'val') for s in seen)
    assert calls == [('train', 'eval'), ('val', 'eval')] * 3
    assert hook.last_reinit_epoch == 61
    assert optimizers == [None] * 3  # momentum kept
    hook.reset_momentum, hook.last_reinit_epoch = True, None
    hook.before_train_epoch(fake_runner(tiny_classifier(), epoch=21, optimizer=opt))
    assert optimizers[-1] is opt


def test_end_to_end_purity_and_strength_of_the_spec_points():
    x = torch.tensor(POINTS)
    p_train = representation_purity(x, torch.tensor(TRAIN_Y), 3)
    p_val = representation_purity(x, torch.tensor(VAL_Y), 3)
    assert (p_train, p_val) == (1.0, 0.5)
    assert relearn_strength(p_train, p_val, 3.0) == pytest.approx(0.905148, abs=1e-6)


def test_diagnose_and_relearn_from_two_splits_for_three_modalities():
    """The hook's own path: train/val loaders -> purities -> w -> the blended encoder; every
    modality on its own, so M = 3 works as M = 2."""
    names = ('audio', 'visual', 'text')
    model = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders={m: dict(type='MLPEncoder', in_channels=2, out_channels=2) for m in names},
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=3)))
    with torch.no_grad():  # z = x for both encoders
        for enc in model.encoders.values():
            enc.layers[0].weight.copy_(torch.eye(2))
            enc.layers[0].bias.zero_()
    x = torch.tensor(POINTS)
    loaders = {s: [{'inputs': {m: x for m in names},
                    'data_samples': {'gt_label': torch.tensor(y)}}]
               for s, y in (('train', TRAIN_Y), ('val', VAL_Y))}
    hook = DRHook()
    hook.before_train(fake_runner(model))  # snapshot: the identity weights
    strengths = hook.diagnose(model, loaders, epoch=21)
    w = math.tanh(1.5)
    assert strengths == {m: pytest.approx(w, abs=1e-12) for m in names}
    assert float(hook._pending['purity_train_audio']) == 1.0
    assert float(hook._pending['purity_val_visual']) == 0.5
    with torch.no_grad():
        model.encoders['audio'].layers[0].weight.fill_(2.0)
    hook.relearn(model, strengths)
    want = w * torch.eye(2) + (1 - w) * torch.full((2, 2), 2.0)
    torch.testing.assert_close(model.encoders['audio'].layers[0].weight.detach(), want)


# --------------------------------------------------------------------------- the dataset pass
def avdigits_cfg(n=12):
    cfg = Config.fromfile(str(ROOT / 'configs/_base_/datasets/avdigits.py'))
    for split in ('train', 'val'):
        loader = cfg[f'{split}_dataloader']
        loader.dataset.update(data_root=str(ROOT / 'data/avdigits'), indices=n,
                              sample_cache=None)
        loader.update(num_workers=0, batch_size=5)
    cfg.test_dataloader.dataset.data_root = '/nonexistent/test-split'  # never read
    # training transforms that change the features: the pass must not use them
    cfg.train_dataloader.dataset.pipeline[1] = dict(type='DegradeImage', noise_std=3.0, seed=5)
    return cfg


def avdigits_model():
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=129 * 63, out_channels=4),
                      visual=dict(type='MLPEncoder', in_channels=784, out_channels=3)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=10)))


def encode_split(cfg, model, split, pipeline_of):
    """By hand: the split's samples with ``pipeline_of``'s transforms, in order, encoded."""
    dataset_cfg = copy.deepcopy(cfg[f'{split}_dataloader'].dataset)
    dataset_cfg.pipeline = cfg[f'{pipeline_of}_dataloader'].dataset.pipeline
    dataset = DATASETS.build(dataset_cfg)
    batch = model.data_preprocessor(default_collate([dataset[i] for i in range(len(dataset))]),
                                    False)
    with torch.no_grad():
        return model.encode(batch['inputs']), batch['data_samples']['gt_label']


def test_train_features_use_the_eval_transforms_in_split_order():
    cfg, model = avdigits_cfg(), avdigits_model()
    loader = build_split_loader(cfg, 'train', pipeline='eval')
    feats, labels = split_features(loader, model)
    clean, clean_labels = encode_split(cfg, model, 'train', 'val')
    noisy, _ = encode_split(cfg, model, 'train', 'train')
    assert torch.equal(labels, clean_labels) and len(labels) == 12
    torch.testing.assert_close(feats['visual'], clean['visual'].double())
    torch.testing.assert_close(feats['audio'], clean['audio'].double())
    assert not torch.allclose(feats['visual'], noisy['visual'].double(), atol=1e-3)


def test_the_schedule_point_diagnoses_train_and_val_and_blends(tmp_path):
    """before_train_epoch on real data (12 samples per split, 10 classes), the test split
    unreadable: w = tanh(3 |P_train - P_val|) of purities computed from eval-transform features."""
    cfg, model = avdigits_cfg(), avdigits_model()
    hook = DRHook(interval=2, max_reinits=1)
    runner = fake_runner(model, epoch=3, cfg=cfg)
    hook.before_train(runner)
    init = {m: copy.deepcopy(model.encoders[m]) for m in model.modalities}
    with torch.no_grad():
        for p in model.encoders.parameters():
            p.add_(1.0)  # "training"
    trained = {m: copy.deepcopy(model.encoders[m]) for m in model.modalities}
    purity = {}
    for split in ('train', 'val'):
        feats, labels = encode_split(cfg, model, split, 'val')
        purity[split] = {m: representation_purity(feats[m], labels, 10) for m in feats}
    hook.before_train_epoch(runner)
    assert hook.last_reinit_epoch == 3
    for m in model.modalities:
        assert float(hook._pending[f'purity_train_{m}']) == purity['train'][m]
        assert float(hook._pending[f'purity_val_{m}']) == purity['val'][m]
        w = math.tanh(3 * abs(purity['train'][m] - purity['val'][m]))
        assert float(hook._pending[f'strength_{m}']) == pytest.approx(w, abs=1e-12)
        for (name, p), p0, p1 in zip(model.encoders[m].named_parameters(),
                                     init[m].parameters(), trained[m].parameters()):
            torch.testing.assert_close(p.detach(), w * p0 + (1 - w) * p1, msg=name)


# --------------------------------------------------------------------------- resume
def test_init_snapshot_survives_resume_and_the_reinit_is_exact():
    model = tiny_classifier()
    hook = DRHook()
    hook.before_train(fake_runner(model))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    Stepper(model, [hook], lr=0.5)({'audio': torch.randn(6, 3), 'visual': torch.randn(6, 2)},
                                    {'gt_label': torch.tensor([0, 1, 2] * 2)})
    buffer = io.BytesIO()
    torch.save({'balance_hooks': {'dr': hook.state_dict()}}, buffer)
    buffer.seek(0)
    resumed_model = copy.deepcopy(model)
    resumed = DRHook()
    resumed.after_load_checkpoint(None, torch.load(buffer))
    resumed.before_train(fake_runner(resumed_model))  # must not re-snapshot the trained weights
    for m in model.modalities:
        for name, t in resumed.snapshot[m].items():
            assert torch.equal(t, init[f'encoders.{m}.{name}']), (m, name)
    strengths = {'audio': 0.3, 'visual': 0.6}
    hook.relearn(model, strengths)
    resumed.relearn(resumed_model, strengths)
    batch = ({'audio': torch.randn(6, 3), 'visual': torch.randn(6, 2)},
             {'gt_label': torch.tensor([2, 1, 0] * 2)})
    Stepper(model, [hook], lr=0.5)(*batch)
    Stepper(resumed_model, [resumed], lr=0.5)(*batch)
    for k, v in model.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k


def test_a_checkpoint_taken_after_the_reinit_does_not_replay_it(monkeypatch):
    hook = DRHook(interval=20)
    hook.load_state_dict({'snapshot': {}, 'last_reinit_epoch': 21})
    monkeypatch.setattr(hook, 'diagnose', lambda *a: pytest.fail('re-diagnosed'))
    hook.before_train_epoch(fake_runner(tiny_classifier(), epoch=21))


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('kwargs,message', [
    (dict(interval=0), r'DRHook: interval=0; expected an integer >= 1'),
    (dict(interval=2.5), r'DRHook: interval=2.5; expected an integer >= 1'),
    (dict(max_reinits=0), r'DRHook: max_reinits=0; expected an integer >= 1'),
    (dict(move_lambda=math.nan), r'DRHook: move_lambda=nan; expected a finite number >= 0'),
    (dict(move_lambda=-1), r'DRHook: move_lambda=-1; expected a finite number >= 0'),
    (dict(n_init=0), r'DRHook: n_init=0; expected an integer >= 1'),
    (dict(seed=-1), r'DRHook: seed=-1; expected an integer >= 0'),
    (dict(reset_momentum='yes'), r"DRHook: reset_momentum must be True or False, got 'yes'"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DRHook(**kwargs)


def test_bad_snapshots_configs_and_features_are_refused():
    model = tiny_classifier()
    with pytest.raises(ValueError, match=r'balance_hooks.dr.snapshot must map modalities'):
        DRHook().load_state_dict({'snapshot': [1, 2]})
    hook = DRHook()
    hook.load_state_dict({'snapshot': {'audio': {}}})
    with pytest.raises(ValueError, match=r"snapshot \(balance_hooks.dr\) is of modalities "
                                         r"\['audio'\]; the model has \['audio', 'visual'\]"):
        hook.before_train(fake_runner(model))
    other = tiny_classifier()
    snap = {m: param_snapshot(other.encoders[m]) for m in other.modalities}
    snap['visual']['layers.0.weight'] = torch.zeros(3, 5)
    hook.load_state_dict({'snapshot': snap})
    with pytest.raises(ValueError, match=r"init snapshot of 'visual' has "
                                         r"layers.0.weight=\(3, 5\); the encoder has shape "
                                         r"\(3, 2\)"):
        hook.before_train(fake_runner(model))
    no_val = Config(dict(train_dataloader=dict(), val_dataloader=None))
    with pytest.raises(ValueError, match='the runner config has no val_dataloader'):
        DRHook().before_train(fake_runner(model, cfg=no_val))
    with pytest.raises(RuntimeError, match='no init snapshot'):
        DRHook().relearn(model, {'audio': 0.5})
    with pytest.raises(ValueError, match=r"features of 'audio' on the val split have 2 "
                                         r"samples, fewer than the 3 clusters"):
        representation_purity(torch.zeros(2, 4), [0, 1], 3,
                              what="the features of 'audio' on the val split")
    with pytest.raises(ValueError, match='contain NaN or inf'):
        representation_purity(torch.tensor([[0.], [math.nan], [1.]]), [0, 1, 2], 3)
    loader = [{'inputs': {'audio': torch.randn(3, 3), 'visual': torch.randn(3, 2)},
               'data_samples': {'gt_label': torch.tensor([0, 1, 2])}}]
    with pytest.raises(ValueError, match=r'rank 1 of 2 has 3 samples; its share of a split '
                                         r'of 3 is 1'):
        split_features(loader, model, rank=1, world_size=2)


def test_a_failed_diagnosis_names_the_modality_and_split():
    model = tiny_classifier()
    hook = DRHook()
    hook.before_train(fake_runner(model))
    loader = [{'inputs': {'audio': torch.randn(2, 3), 'visual': torch.randn(2, 2)},
               'data_samples': {'gt_label': torch.tensor([0, 1])}}]
    with pytest.raises(ValueError, match=r"the features of 'audio' on the train split have 2 "
                                         r"samples, fewer than the 3 clusters"):
        hook.diagnose(model, {'train': loader, 'val': loader}, epoch=21)


# --------------------------------------------------------------------------- DDP
N_TRAIN, N_VAL = 11, 9  # uneven shares: rank 0 holds 6 and 5, rank 1 holds 5 and 4


def _split(n, seed):
    g = torch.Generator().manual_seed(seed)
    return ({'audio': torch.randn(n, 3, generator=g), 'visual': torch.randn(n, 2, generator=g)},
            torch.arange(n) % 3)


def _ddp_reinit(rank, world, out_dir):
    """This rank's shares of the two splits (r, r + W, ...) -> w -> the blended encoders."""
    model = tiny_classifier()
    loaders = {}
    for split, (n, seed) in (('train', (N_TRAIN, 1)), ('val', (N_VAL, 2))):
        inputs, labels = _split(n, seed)
        share = list(range(rank, n, world))
        loaders[split] = [{'inputs': {m: x[share[i:i + 2]] for m, x in inputs.items()},
                           'data_samples': {'gt_label': labels[share[i:i + 2]]}}
                          for i in range(0, len(share), 2)]
    feats, labels = split_features(loaders['train'], model)
    hook = DRHook()
    hook.snapshot = {m: param_snapshot(tiny_classifier(seed=1).encoders[m])
                     for m in model.modalities}
    strengths = hook.diagnose(model, loaders, epoch=21)
    hook.relearn(model, strengths)
    result = {'features': {m: f.flatten().tolist() for m, f in feats.items()},
              'labels': labels.tolist(), 'strengths': strengths,
              'log': {k: float(v) for k, v in hook._pending.items()},
              'params': {n: p.detach().flatten().tolist() for n, p in model.named_parameters()}}
    with open(os.path.join(out_dir, f'dr_rank{rank}_of{world}.json'), 'w') as f:
        json.dump(result, f)


def test_ddp_two_processes_equal_one_process_on_the_whole_split(tmp_path):
    run_gloo(_ddp_reinit, str(tmp_path))
    _ddp_reinit(0, 1, str(tmp_path))
    r0, r1, single = (json.loads((tmp_path / f'dr_{name}.json').read_text())
                      for name in ('rank0_of2', 'rank1_of2', 'rank0_of1'))
    assert r0 == r1  # replicas agree: features, purities, strengths, re-initialised weights
    # one process over the whole splits: the same purities and strengths; the features and
    # weights up to float32 rounding (the MLP sees batches of other sizes)
    assert (r0['strengths'], r0['log']) == (single['strengths'], single['log'])
    for part in ('features', 'params'):
        for name, want in single[part].items():
            torch.testing.assert_close(torch.tensor(r0[part][name]), torch.tensor(want),
                                       rtol=1e-6, atol=1e-7, msg=f'{part} {name}')
    assert r0['labels'] == single['labels'] == _split(N_TRAIN, 1)[1].tolist()  # split order
    assert max(single['strengths'].values()) > 0
