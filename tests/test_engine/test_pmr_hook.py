"""PMR (docs/methods/pmr.md): prototypes, rho, the clipped coefficients, PCE and PER.

Every expected number is computed by hand (math.exp / math.log on the spec's
formulas); the functions under test never produce their own expectation.
"""
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from dist_utils import run_gloo
from mmengine.config import Config

from step_utils import Stepper, ctx_for, tiny_classifier

from mmbal.engine.hooks.pmr_hook import PMRHook, momentum_update, pmr_weights
from mmbal.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]
PROTOS = {'audio': torch.tensor([[2., 0.], [0., 2.]]), 'visual': torch.tensor([[2., 0.], [0., 2.]])}
# d(audio) = (0, 2.828427), d(visual) = (1.414214, 1.414214); y = 0
P_A0 = 1 / (1 + math.exp(-math.sqrt(8)))  # 0.944193
RHO = P_A0 / 0.5  # 1.888386
GAMMA = RHO - 1  # 0.888386
PCE_V = math.log(2)  # 0.693147
H_A = -(P_A0 * math.log(P_A0) + (1 - P_A0) * math.log(1 - P_A0))  # 0.215272


def stub_forward(hook, epoch=0, z_a=(2., 0.), z_v=(1., 1.), grad=False):
    """``after_forward`` on fixed features (no network); returns (losses, log, features)."""
    model = SimpleNamespace(modalities=['audio', 'visual'])
    feats = {'audio': torch.tensor([z_a], requires_grad=grad),
             'visual': torch.tensor([z_v], requires_grad=grad)}
    terms = hook.after_forward(ctx_for(model, epoch=epoch), SimpleNamespace(features=feats),
                               {'gt_label': torch.tensor([0])})
    log = {k: float(v) for k, v in hook._pending.items()}
    hook._pending = {}
    return terms.losses, log, feats


def hook_with(protos=PROTOS, **kw):
    kw.setdefault('per_epochs', 5)
    hook = PMRHook(**kw)
    hook.prototypes = {m: p.clone() for m, p in protos.items()}
    return hook


# --------------------------------------------------------------------------- hand values
def test_rho_and_clipped_coefficients():
    assert P_A0 == pytest.approx(0.944193, abs=1e-6) and GAMMA == pytest.approx(0.888386, 1e-6)
    losses, log, _ = stub_forward(hook_with())
    assert log['rho'] == pytest.approx(RHO, rel=1e-6)
    assert log['pce_weight_audio'] == 0 and log['pce_weight_visual'] == pytest.approx(GAMMA)
    # the entropy term swaps the roles: the dominant audio's entropy is maximised
    assert log['per_weight_visual'] == 0 and log['per_weight_audio'] == pytest.approx(0.01 * GAMMA)
    assert log['pce_visual'] == pytest.approx(PCE_V, rel=1e-6)
    assert log['entropy_audio'] == pytest.approx(H_A, rel=1e-5)
    assert (log['proto_acc_audio'], log['proto_acc_visual']) == (100.0, 100.0)  # a tie: argmax 0


def test_added_loss_before_and_after_er_and_under_reference_compat():
    assert GAMMA * PCE_V == pytest.approx(0.615782, abs=1e-6)
    assert 0.01 * GAMMA * H_A == pytest.approx(0.001912, abs=1e-6)
    losses, _, _ = stub_forward(hook_with(per_epochs=2), epoch=1)
    assert sum(losses.values()).item() == pytest.approx(0.613870, abs=1e-6)
    losses, _, _ = stub_forward(hook_with(per_epochs=2), epoch=2)  # e >= E_r: no PER
    assert list(losses) == ['loss_pmr_pce']
    assert losses['loss_pmr_pce'].item() == pytest.approx(0.615782, abs=1e-6)
    losses, log, _ = stub_forward(hook_with(per_epochs=None, reference_compat=True))
    assert list(losses) == ['loss_pmr_pce'] and log['per_weight_audio'] == 0
    assert losses['loss_pmr_pce'].item() == pytest.approx(PCE_V, abs=1e-6)  # binary weight 1


@pytest.mark.parametrize('rho,beta,gamma', [(3.0, 0.0, 1.0), (0.25, 1.0, 0.0), (0.8, 0.25, 0.0),
                                            (1.0, 0.0, 0.0), (1.25, 0.0, 0.25)])
def test_coefficient_cases(rho, beta, gamma):
    scores = torch.tensor([rho, 1.0], dtype=torch.float64)
    pce, per = pmr_weights(scores, alpha=2.0, mu=0.1)
    torch.testing.assert_close(pce, torch.tensor([2 * beta, 2 * gamma], dtype=torch.float64))
    torch.testing.assert_close(per, torch.tensor([0.1 * gamma, 0.1 * beta], dtype=torch.float64))
    pce, per = pmr_weights(scores, alpha=2.0, mu=0.1, reference_compat=True)
    assert pce.tolist() == [2.0 * (rho < 1), 2.0 * (rho > 1)] and per.tolist() == [0, 0]


def test_more_than_two_modalities_use_the_strongest_and_the_weakest_score():
    pce, per = pmr_weights(torch.tensor([1.0, 2.0, 1.5], dtype=torch.float64), 1.0, 1.0)
    # PCE: max/s_m - 1 = (1, 0, 1/3); PER: s_m/min - 1 = (0, 1 (clipped), 0.5)
    torch.testing.assert_close(pce, torch.tensor([1.0, 0.0, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(per, torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64))


def test_window_switches_every_term_off_outside_it():
    hook = hook_with(window=(1, 3))
    assert stub_forward(hook, epoch=0)[0] == {}
    assert set(stub_forward(hook, epoch=3)[0]) == {'loss_pmr_pce', 'loss_pmr_per'}
    assert stub_forward(hook, epoch=4)[0] == {}


# --------------------------------------------------------------------------- prototypes
def test_momentum_update_by_hand():
    new = torch.tensor([[2., 0.], [0., 2.]])  # class 0: [1, 0], [3, 0]; class 1: [0, 2]
    both = torch.tensor([True, True])
    assert torch.equal(momentum_update(None, new, both, 0.2), new)  # first: no momentum
    smoothed = momentum_update(torch.zeros(2, 2), new, both, 0.2)
    torch.testing.assert_close(smoothed, torch.tensor([[1.6, 0.], [0., 1.6]]))
    old = torch.ones(2, 2)
    kept = momentum_update(old, new, torch.tensor([True, False]), 0.2)
    torch.testing.assert_close(kept, torch.tensor([[1.8, 0.2], [1., 1.]]))  # class 1 absent
    with pytest.raises(ValueError, match=r'classes \[1\] have no sample in the prototype subset '
                                         r'at the first computation'):
        momentum_update(None, new, torch.tensor([True, False]), 0.2)


def identity_model():
    """Two MLP encoders that output their 2-d input (z = x), 2 classes."""
    model = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders={m: dict(type='MLPEncoder', in_channels=2, out_channels=2)
                  for m in ('audio', 'visual')},
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=2)))
    with torch.no_grad():
        for enc in model.encoders.values():
            enc.layers[0].weight.copy_(torch.eye(2))
            enc.layers[0].bias.zero_()
    return model


def batches(audio, labels, visual=None):
    visual = audio if visual is None else visual
    return [{'inputs': {'audio': torch.tensor(audio), 'visual': torch.tensor(visual)},
             'data_samples': {'gt_label': torch.tensor(labels)}}]


@pytest.mark.parametrize('compat', [False, True])
def test_prototypes_are_class_means_then_smoothed(compat):
    model = identity_model()
    hook = PMRHook(per_epochs=1, momentum=0.2, reference_compat=compat)
    hook.update_prototypes(model, batches([[1., 0.], [3., 0.], [0., 2.]], [0, 0, 1]), epoch=0)
    torch.testing.assert_close(hook.prototypes['audio'],
                               torch.tensor([[2., 0.], [0., 2.]], dtype=torch.float64))
    assert model.training  # the pass ran in eval mode and gave the flags back
    later = batches([[0., 0.], [1., 1.]], [0, 1])
    hook.update_prototypes(model, later, epoch=1)
    # the reference code's prototypes of epoch 1 are unsmoothed
    first = torch.tensor([[2., 0.], [0., 2.]], dtype=torch.float64)
    new = torch.tensor([[0., 0.], [1., 1.]], dtype=torch.float64)
    want = new if compat else 0.2 * first + 0.8 * new
    torch.testing.assert_close(hook.prototypes['visual'], want)
    hook.update_prototypes(model, later, epoch=2)
    torch.testing.assert_close(hook.prototypes['visual'], 0.2 * want + 0.8 * new)
    assert hook.prototype_epoch == 2


def test_pce_reaches_only_the_slower_encoder_and_per_only_the_faster():
    model = tiny_classifier()
    hook = PMRHook(per_epochs=1)
    torch.manual_seed(1)
    hook.prototypes = {'audio': torch.randn(3, 4), 'visual': torch.randn(3, 3)}
    torch.manual_seed(2)
    outputs = model.run({'audio': torch.randn(6, 3), 'visual': torch.randn(6, 2)})
    terms = hook.after_forward(ctx_for(model), outputs, {'gt_label': torch.tensor([0, 1, 2] * 2)})
    weights = {m: float(hook._pending[f'pce_weight_{m}']) for m in model.modalities}
    slow = max(weights, key=weights.get)
    fast = next(m for m in model.modalities if m != slow)
    assert weights[slow] > 0 and weights[fast] == 0
    params = dict(model.named_parameters())
    for key, reached in (('loss_pmr_pce', slow), ('loss_pmr_per', fast)):
        grads = torch.autograd.grad(terms.losses[key], list(params.values()), retain_graph=True,
                                    allow_unused=True)
        for (name, _), g in zip(params.items(), grads):
            touched = g is not None and bool(g.abs().sum() > 0)
            assert touched == name.startswith(f'encoders.{reached}.'), (key, name)


# --------------------------------------------------------------------------- before_train_epoch
def test_before_train_epoch_reads_a_seeded_subset_of_the_training_split_and_resumes():
    cfg = Config.fromfile(str(ROOT / 'configs/_base_/datasets/avdigits.py'))
    cfg.train_dataloader.dataset.update(data_root=str(ROOT / 'data/avdigits'), indices=20)
    cfg.val_dataloader.dataset.data_root = str(ROOT / 'data/avdigits')
    cfg.train_dataloader.num_workers = 0
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=129 * 63, out_channels=4),
                      visual=dict(type='MLPEncoder', in_channels=784, out_channels=3)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=10)))
    hook = PMRHook(per_epochs=1, subset=1.0)  # 20 samples hold all 10 classes
    runner = SimpleNamespace(model=model, cfg=cfg, epoch=0)
    hook.before_train_epoch(runner)
    assert hook.prototype_epoch == 0
    assert {m: tuple(p.shape) for m, p in hook.prototypes.items()} == {'audio': (10, 4),
                                                                      'visual': (10, 3)}
    state = hook.state_dict()
    resumed = PMRHook(per_epochs=1, subset=1.0)
    resumed.load_state_dict(state)
    resumed.before_train_epoch(runner)  # same epoch: the checkpoint's prototypes are kept
    assert resumed.prototypes['audio'] is not None
    torch.testing.assert_close(resumed.prototypes['audio'], state['prototypes']['audio'])
    with pytest.raises(ValueError, match=r'no sample in the prototype subset'):
        PMRHook(per_epochs=1, subset=0.1).before_train_epoch(runner)  # 2 samples, 10 classes


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('kwargs,message', [
    (dict(), r'PMRHook: per_epochs \(E_r, the epochs with the entropy term\) is required'),
    (dict(per_epochs=1.5), r'PMRHook: per_epochs=1.5; expected an integer >= 0'),
    (dict(per_epochs=1, alpha=math.nan), r'PMRHook: alpha=nan; expected a finite number >= 0'),
    (dict(per_epochs=1, momentum=1.5), r'PMRHook: momentum=1.5; expected a finite number'),
    (dict(per_epochs=1, subset=0), r'PMRHook: subset=0; expected a finite number > 0 and <= 1'),
    (dict(per_epochs=1, pipeline='test'), r"PMRHook: pipeline='test'; expected one of"),
    (dict(per_epochs=1, window=(3, 1)), r'PMRHook: window=\(3, 1\); expected \(first, last\)'),
    (dict(per_epochs=1, reference_compat=1), r'reference_compat must be True or False, got 1'),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PMRHook(**kwargs)


def test_bad_models_and_missing_prototypes_are_refused():
    three = SimpleNamespace(modalities=['a', 'b', 'c'])
    PMRHook(per_epochs=1).setup(three)  # M > 2: ours
    with pytest.raises(ValueError, match=r'reference_compat=True\) follows the two-modality '
                                         r'reference code; the model has 3 modalities'):
        PMRHook(reference_compat=True).setup(three)
    with pytest.raises(ValueError, match=r"PMRHook compares modalities; the model has only "
                                         r"\['a'\]"):
        PMRHook(per_epochs=1).setup(SimpleNamespace(modalities=['a']))
    with pytest.raises(RuntimeError, match='PMRHook: no prototypes yet'):
        stub_forward(PMRHook(per_epochs=1))
    with pytest.raises(ValueError, match=r"prototypes of 'audio' have 3 channels; the encoder "
                                         r'outputs 2'):
        stub_forward(hook_with({'audio': torch.zeros(2, 3), 'visual': torch.zeros(2, 2)}))
    with pytest.raises(ValueError, match=r'balance_hooks.pmr.prototypes must map modalities'):
        PMRHook(per_epochs=1).load_state_dict({'prototypes': [1, 2]})


# --------------------------------------------------------------------------- DDP
N = 12


def _data():
    g = torch.Generator().manual_seed(7)
    return ({'audio': torch.randn(N, 3, generator=g), 'visual': torch.randn(N, 2, generator=g)},
            torch.tensor([0, 1, 2] * (N // 3)))


def _ddp_step(rank, world, out_dir):
    """Prototypes from this rank's share of the split, then one step on its batch shard."""
    from mmengine.model import MMDistributedDataParallel
    inputs, labels = _data()
    share = list(range(rank, N, world))  # as build_split_loader shards a split
    loader = [{'inputs': {m: x[share[i:i + 4]] for m, x in inputs.items()},
               'data_samples': {'gt_label': labels[share[i:i + 4]]}}
              for i in range(0, len(share), 4)]
    model = tiny_classifier()
    hook = PMRHook(per_epochs=1)
    hook.setup(model)
    hook.update_prototypes(model, loader, epoch=0)
    shard = slice(rank * N // world, (rank + 1) * N // world)  # the training batch: all N
    net = MMDistributedDataParallel(model, device_ids=None) if world > 1 else model
    stepper = Stepper(model, [hook], net=net)
    log = {}
    after_forward = hook.after_forward

    def record(ctx, outputs, samples):
        terms = after_forward(ctx, outputs, samples)
        log.update({k: float(v) for k, v in hook._pending.items()
                    if k.startswith(('rho', 'pce_weight', 'per_weight'))})
        return terms

    hook.after_forward = record
    stepper({m: x[shard] for m, x in inputs.items()}, {'gt_label': labels[shard]})
    result = {'prototypes': {m: p.flatten().tolist() for m, p in hook.prototypes.items()},
              'log': log,
              'params': {n: p.detach().flatten().tolist() for n, p in model.named_parameters()}}
    with open(os.path.join(out_dir, f'pmr_rank{rank}_of{world}.json'), 'w') as f:
        json.dump(result, f)


def test_ddp_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    run_gloo(_ddp_step, str(tmp_path))
    _ddp_step(0, 1, str(tmp_path))
    r0, r1, single = (json.loads((tmp_path / f'pmr_{name}.json').read_text())
                      for name in ('rank0_of2', 'rank1_of2', 'rank0_of1'))
    assert r0 == r1  # replicas agree: prototypes, coefficients and the updated parameters
    assert max(single['log'][f'pce_weight_{m}'] for m in ('audio', 'visual')) > 0
    for part in ('prototypes', 'params'):
        for name, want in single[part].items():
            torch.testing.assert_close(torch.tensor(r0[part][name]), torch.tensor(want),
                                       rtol=1e-5, atol=1e-6, msg=f'{part} {name}')
    for k, v in single['log'].items():
        assert r0['log'][k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
