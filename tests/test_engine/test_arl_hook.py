"""ARL (SPEC "ARL"): H, q, d, eq. 18 / share-ratio coefficients, the (1 + a_m) gate, the
unimodal probe loss, the Table 5 switches, reference_compat, errors, and DDP agreement.

Every expected number is computed here by hand (math.exp / math.log on the spec's formulas,
and probe logits written out as W_m z_m + b); the code under test never produces its own
expectation.
"""
import copy
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from dist_utils import run_gloo
from mmengine.config import Config
from step_utils import Stepper, capture_step_grads, ctx_for, step_grads
from torch import nn

from mmbal.balance.functional import entropy
from mmbal.engine.hooks.arl_hook import (ARLHook, entropy_q, eq18_coefficients,
                                         share_ratio_coefficients)
from mmbal.models.utils import GradientGate
from mmbal.registry import HOOKS, MODELS

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- hand math
def softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def mean_entropy(rows):
    return sum(-sum(p * math.log(p) for p in softmax(r)) for r in rows) / len(rows)


def mean_gt_prob(rows, labels):
    return sum(softmax(r)[y] for r, y in zip(rows, labels)) / len(rows)


def hand_eq18(first, second, labels, T):
    """SPEC eq. 18: [a_0, a_1] = softmax([T q_0/q_1, T d_0/d_1]), q = 1/H."""
    q0, q1 = 1 / mean_entropy(first), 1 / mean_entropy(second)
    d0, d1 = mean_gt_prob(first, labels), mean_gt_prob(second, labels)
    return softmax([T * q0 / q1, T * d0 / d1])


def hand_ce(rows, labels):
    return sum(-math.log(softmax(r)[y]) for r, y in zip(rows, labels)) / len(rows)


# 3 samples, 3 classes.
LABELS = [0, 2, 1]
AUDIO = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.5], [1.0, 1.0, 1.0]]
VISUAL = [[0.0, 0.0, 0.0], [1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]
TEXT = [[3.0, 0.0, 0.0], [0.0, -1.0, 2.5], [0.0, 1.5, 0.0]]
ROWS = {'audio': AUDIO, 'visual': VISUAL, 'text': TEXT}


def stub_forward(hook, logits, labels=LABELS, requires_grad=False, epoch=0):
    """Drive ``after_forward`` with fixed probe logits (no network); returns (losses, gates)
    with the returned coefficients applied to fresh gates, as the training step does."""
    names = list(logits)
    gates = {m: GradientGate() for m in names}
    model = SimpleNamespace(modalities=names)
    probes = {m: torch.tensor(v, requires_grad=requires_grad) for m, v in logits.items()}
    modes = []

    def get_logits(mode='analytic'):
        modes.append(mode)
        return probes

    outputs = SimpleNamespace(logits=get_logits)
    terms = hook.after_forward(ctx_for(model, epoch), outputs,
                               {'gt_label': torch.tensor(labels)})
    assert modes and set(modes) == {'probe'}  # ARL reads probe logits, never analytic
    for m, c in terms.coefficients.items():
        gates[m].scale(c)
    return terms.losses, gates


def logged(hook, name):
    return float(hook._pending[name])


# --------------------------------------------------------------------------- coefficients
def test_entropy_by_hand():
    rows = [[2.0, 0.5, -1.0], [0.0, 0.0, 0.0], [50.0, -50.0, 0.0]]
    expected = [-sum(p * math.log(p) for p in softmax(r) if p > 0) for r in rows]
    assert expected[1] == pytest.approx(math.log(3))
    got = entropy(torch.tensor(rows, requires_grad=True))
    assert not got.requires_grad and got.dtype == torch.float64
    assert got.tolist() == pytest.approx(expected, rel=1e-5, abs=1e-12)


def saturated_entropy(L, classes=3):
    """Entropy of softmax([L, 0, ..., 0]) by hand, with log1p so no term is lost."""
    t = (classes - 1) * math.exp(-L)
    log_top, log_rest = -math.log1p(t), -L - math.log1p(t)
    p_top, p_rest = math.exp(log_top), math.exp(log_rest)
    return -(p_top * log_top + (classes - 1) * p_rest * log_rest)


def test_saturated_probe_entropy_and_q_in_float64():
    """SPEC "Clarifications": q = 1/H of a saturated probe keeps its precision.

    In float32 log_softmax rounds log p_top to 0, dropping ~1/(L+1) of H; float64
    keeps H to ~5e-9 (log_softmax's log(1 + t) rounding), checked here at 1e-7.
    """
    La, Lv = 21.0, 19.0
    H = {'audio': saturated_entropy(La), 'visual': saturated_entropy(Lv)}
    assert 1e-8 < H['audio'] < 1e-7 and 1e-7 < H['visual'] < 1e-6  # above eps: q = 1/H
    rows = {'audio': [[La, 0.0, 0.0]] * 3, 'visual': [[Lv, 0.0, 0.0]] * 3}
    labels = [0, 0, 0]
    got = entropy(torch.tensor(rows['audio']))
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx([H['audio']] * 3, rel=1e-7)
    # the float32 computation this replaces is off by more than 4%
    p32 = torch.log_softmax(torch.tensor(rows['audio'][0]), dim=0)
    h32 = float(-(p32.exp() * p32).sum())
    assert abs(h32 / H['audio'] - 1) > 0.04

    T = 4.0
    q = {m: 1 / H[m] for m in H}
    d = {'audio': 1 / (1 + 2 * math.exp(-La)), 'visual': 1 / (1 + 2 * math.exp(-Lv))}
    a = softmax([T * q['audio'] / q['visual'], T * d['audio'] / d['visual']])
    hook = ARLHook(temperature=T)
    stub_forward(hook, rows, labels)
    for i, m in enumerate(('audio', 'visual')):
        assert logged(hook, f'H_{m}') == pytest.approx(H[m], rel=1e-7)
        assert logged(hook, f'q_{m}') == pytest.approx(q[m], rel=1e-7)
        assert hook.a[m].dtype == torch.float64
        assert float(hook.a[m]) == pytest.approx(a[i], rel=1e-7)
    assert logged(hook, 'q_ratio_audio_visual') == pytest.approx(H['visual'] / H['audio'],
                                                                 rel=1e-7)
    # Below eps (H ~ 1e-9, L = 25) eq. 17's max(H, eps) applies: q = 1/eps exactly.
    assert saturated_entropy(25.0) < 1e-8
    H25 = entropy(torch.tensor([[25.0, 0.0, 0.0]]))
    assert float(H25) == pytest.approx(saturated_entropy(25.0), rel=1e-7)
    assert float(entropy_q(H25)) == 1e8


def test_hand_values_pinned():
    """Literal cross-check of the hand arithmetic used below."""
    assert mean_entropy(AUDIO) == pytest.approx(0.9134627434)
    assert mean_entropy(VISUAL) == pytest.approx(0.8943294401)
    assert mean_gt_prob(AUDIO, LABELS) == pytest.approx(0.4753754179)
    assert mean_gt_prob(VISUAL, LABELS) == pytest.approx(0.3864962103)
    assert hand_eq18(AUDIO, VISUAL, LABELS, 4) == pytest.approx([0.2682284766, 0.7317715234])
    assert hand_eq18(VISUAL, AUDIO, LABELS, 4) == pytest.approx([0.6970821233, 0.3029178767])


@pytest.mark.parametrize('order', [('audio', 'visual'), ('visual', 'audio')])
def test_eq18_from_fixed_logits_in_both_orders(order):
    T = 4.0
    first, second = (ROWS[m] for m in order)
    a = hand_eq18(first, second, LABELS, T)
    hook = ARLHook(gamma=4.0, temperature=T)
    losses, gates = stub_forward(hook, {m: ROWS[m] for m in order})
    for i, m in enumerate(order):
        H = mean_entropy(ROWS[m])
        assert logged(hook, f'H_{m}') == pytest.approx(H, rel=1e-5)
        assert logged(hook, f'q_{m}') == pytest.approx(1 / H, rel=1e-5)
        assert logged(hook, f'd_{m}') == pytest.approx(mean_gt_prob(ROWS[m], LABELS), rel=1e-5)
        assert logged(hook, f'a_{m}') == pytest.approx(a[i], rel=1e-5)
        assert float(hook.a[m]) == pytest.approx(a[i], rel=1e-5)
        # residual: gate coefficient 1 + a_m, set on this batch's gate
        assert hook.coefficients[m] == pytest.approx(1 + a[i], rel=1e-5)
        assert logged(hook, f'coef_{m}') == pytest.approx(1 + a[i], rel=1e-5)
        assert float(gates[m].coefficient) == pytest.approx(1 + a[i], rel=1e-5)
    m0, m1 = order
    assert logged(hook, f'q_ratio_{m0}_{m1}') == pytest.approx(
        mean_entropy(ROWS[m1]) / mean_entropy(ROWS[m0]), rel=1e-5)
    assert logged(hook, f'd_ratio_{m0}_{m1}') == pytest.approx(
        mean_gt_prob(ROWS[m0], LABELS) / mean_gt_prob(ROWS[m1], LABELS), rel=1e-5)
    # The asymmetry of eq. 18: audio's coefficient depends on where it is configured.
    a_audio = {('audio', 'visual'): 0.2682284766, ('visual', 'audio'): 0.3029178767}
    assert float(hook.a['audio']) == pytest.approx(a_audio[order], rel=1e-5)
    # ...and the extra loss is gamma * sum_m CE(p_m, y).
    expected = 4.0 * (hand_ce(AUDIO, LABELS) + hand_ce(VISUAL, LABELS))
    assert float(losses['loss_unimodal'].detach()) == pytest.approx(expected, rel=1e-5)
    assert logged(hook, 'gamma') == 4.0


def test_share_ratio_three_modalities():
    T = 2.0
    names = ['audio', 'visual', 'text']
    q = [1 / mean_entropy(ROWS[m]) for m in names]
    d = [mean_gt_prob(ROWS[m], LABELS) for m in names]
    q_hat = [v / sum(q) for v in q]
    d_hat = [v / sum(d) for v in d]
    a = softmax([T * qh / dh for qh, dh in zip(q_hat, d_hat)])
    assert a == pytest.approx([0.2775537412, 0.4518169357, 0.2706293231])  # pinned
    hook = ARLHook(temperature=T, coef_form='share_ratio')
    stub_forward(hook, {m: ROWS[m] for m in names})
    for i, m in enumerate(names):
        assert float(hook.a[m]) == pytest.approx(a[i], rel=1e-5)
        assert hook.coefficients[m] == pytest.approx(1 + a[i], rel=1e-5)
    assert not any(k.startswith(('q_ratio', 'd_ratio')) for k in hook._pending)  # M = 2 only


def test_share_ratio_allowed_for_two_modalities():
    T = 4.0
    q = [1 / mean_entropy(AUDIO), 1 / mean_entropy(VISUAL)]
    d = [mean_gt_prob(AUDIO, LABELS), mean_gt_prob(VISUAL, LABELS)]
    a = softmax([T * (q[i] / sum(q)) / (d[i] / sum(d)) for i in range(2)])
    hook = ARLHook(temperature=T, coef_form='share_ratio')
    stub_forward(hook, {'audio': AUDIO, 'visual': VISUAL})
    assert [float(hook.a[m]) for m in ('audio', 'visual')] == pytest.approx(a, rel=1e-5)
    # it is a different form from eq. 18
    assert a != pytest.approx(hand_eq18(AUDIO, VISUAL, LABELS, T), rel=1e-3)


def test_pure_functions_by_hand():
    q, d = torch.tensor([2.0, 0.5]), torch.tensor([0.3, 0.6])
    # eq. 18: softmax([T * 2/0.5, T * 0.3/0.6]) with T = 0.5 -> softmax([2, 0.25])
    a = eq18_coefficients(q, d, 0.5)
    e = [math.exp(2.0), math.exp(0.25)]
    assert a.tolist() == pytest.approx([e[0] / sum(e), e[1] / sum(e)], rel=1e-6)
    # share ratio: q^ = (0.8, 0.2), d^ = (1/3, 2/3), T q^/d^ = (2.4, 0.3) with T = 1
    a = share_ratio_coefficients(q, d, 1.0)
    e = [math.exp(2.4), math.exp(0.3)]
    assert a.tolist() == pytest.approx([e[0] / sum(e), e[1] / sum(e)], rel=1e-6)
    # q = 1 / max(H, eps): a zero entropy gives 1e8, not inf
    assert entropy_q(torch.tensor([0.0, 0.5], dtype=torch.float64)).tolist() == \
        pytest.approx([1e8, 2.0])
    with pytest.raises(ValueError, match='share_ratio'):
        eq18_coefficients(torch.ones(3), torch.ones(3), 1.0)


# --------------------------------------------------------------------------- through a model
IN_CH = {'audio': 3, 'visual': 2, 'text': 5}
C = 3


def build_model(modalities=('audio', 'visual'), fusion=None, seed=0):
    torch.manual_seed(seed)
    encoders = {m: dict(type='MLPEncoder', in_channels=IN_CH[m], out_channels=4,
                        hidden_channels=(5, )) for m in modalities}
    model = MODELS.build(dict(type='MultimodalClassifier', encoders=encoders,
                              fusion=fusion or dict(type='ConcatFusion'),
                              head=dict(type='LinearClsHead', num_classes=C),
                              modality_logits='probe'))
    if fusion is None:
        with torch.no_grad():  # a clearly non-zero bias: b (probe) and b/2 (analytic) differ
            model.head.fc.bias.copy_(torch.tensor([1.5, -1.0, 0.4]))
    return model


def make_batch(modalities=('audio', 'visual'), b=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    inputs = {m: torch.randn(b, IN_CH[m], generator=g) for m in modalities}
    return inputs, {'gt_label': torch.randint(0, C, (b, ), generator=g)}


def attach(model, hook):
    hook.setup(model)
    return hook


def hand_probes(model, inputs):
    """p_m = W_m z_m + b (concat, full bias), as python lists."""
    with torch.no_grad():
        z = {m: model.encoders[m](inputs[m]) for m in model.modalities}
        W, b = model.head.fc.weight, model.head.fc.bias
        out, start = {}, 0
        for m in model.modalities:
            width = z[m].shape[1]
            out[m] = (z[m] @ W[:, start:start + width].T + b).tolist()
            start += width
    return out


def plain_grads(model, inputs, samples, gamma):
    """Gradients of CE(f, y) + gamma * sum_m CE(p_m, y) with no gate scaling."""
    model = copy.deepcopy(model)
    out = model.run(inputs)
    labels = samples['gt_label']
    loss = F.cross_entropy(out.fused_logits, labels)
    if gamma:
        loss = loss + gamma * sum(F.cross_entropy(p, labels)
                                  for p in out.logits('probe').values())
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def hooked_grads(model, inputs, samples, hook, epoch=0):
    """(logged losses, gradients at the optimizer step) of one batch through the step."""
    model = copy.deepcopy(model)
    attach(model, hook)
    grads, log = step_grads(model, [hook], inputs, samples, epoch=epoch)
    return log, grads


def check_factors(g_hook, g_plain, factor):
    """Encoder m's gradients are factor[m] x plain; fusion and head are bit-identical."""
    seen = set()
    for n, ref in g_plain.items():
        if n.startswith('encoders.'):
            m = n.split('.')[1]
            seen.add(m)
            assert ref.abs().max() > 0, n  # otherwise the test would be vacuous
            torch.testing.assert_close(g_hook[n], factor[m] * ref, rtol=1e-5, atol=1e-8,
                                       msg=n)
        else:
            assert torch.equal(g_hook[n], ref), n
    assert seen == set(factor)


@pytest.mark.parametrize('residual', [True, False])
def test_encoder_gradient_is_scaled_by_one_plus_a(residual):
    model = build_model()
    inputs, samples = make_batch()
    labels = samples['gt_label'].tolist()
    p = hand_probes(model, inputs)
    a = dict(zip(['audio', 'visual'], hand_eq18(p['audio'], p['visual'], labels, 4.0)))
    assert min(a.values()) > 0.02 and abs(a['audio'] - a['visual']) > 0.02  # not degenerate

    losses, g_hook = hooked_grads(model, inputs, samples, ARLHook(residual=residual))
    g_plain = plain_grads(model, inputs, samples, gamma=4.0)
    factor = {m: (1 + a[m]) if residual else a[m] for m in a}
    check_factors(g_hook, g_plain, factor)
    # the trained extra loss: gamma * sum_m CE(W_m z_m + b, y), by hand
    expected = 4.0 * (hand_ce(p['audio'], labels) + hand_ce(p['visual'], labels))
    assert float(losses['loss_unimodal'].detach()) == pytest.approx(expected, rel=1e-5)
    assert losses['loss_unimodal'].requires_grad


def test_probes_use_the_full_bias():
    """With b/2 (the analytic logits) a would differ: the model test above is sensitive to it."""
    model = build_model()
    inputs, samples = make_batch()
    labels = samples['gt_label'].tolist()
    full = hand_probes(model, inputs)
    b = model.head.fc.bias.tolist()
    half = {m: [[v - bc / 2 for v, bc in zip(row, b)] for row in rows] for m, rows in full.items()}
    a_full = hand_eq18(full['audio'], full['visual'], labels, 4.0)
    a_half = hand_eq18(half['audio'], half['visual'], labels, 4.0)
    assert abs(a_full[0] - a_half[0]) > 1e-3
    hook = ARLHook()
    hooked_grads(model, inputs, samples, hook)
    assert float(hook.a['audio']) == pytest.approx(a_full[0], rel=1e-5)


def build_branch_model(fusion, seed=0):
    """Headless sum or late fusion over the MLP encoders, biases clearly non-zero."""
    torch.manual_seed(seed)
    encoders = {m: dict(type='MLPEncoder', in_channels=IN_CH[m], out_channels=4,
                        hidden_channels=(5, )) for m in ('audio', 'visual')}
    cfg = (dict(type='SumFusion', out_channels=C) if fusion == 'sum'
           else dict(type='LateFusion', num_classes=C))
    model = MODELS.build(dict(type='MultimodalClassifier', encoders=encoders, fusion=cfg,
                              head=None, modality_logits='probe'))
    branches = model.fusion.projections if fusion == 'sum' else model.fusion.heads
    with torch.no_grad():
        branches['audio'].bias.copy_(torch.tensor([1.5, -1.0, 0.4]))
        branches['visual'].bias.copy_(torch.tensor([-0.8, 1.2, 0.9]))
    return model, branches


@pytest.mark.parametrize('fusion', ['sum', 'late'])
def test_sum_and_late_probes_are_the_branch_logits(fusion):
    """SPEC "Clarifications": p_m = W_m z_m + b_m (sum), h_m(z_m) (late), by hand."""
    model, branches = build_branch_model(fusion)
    inputs, samples = make_batch()
    labels = samples['gt_label'].tolist()
    with torch.no_grad():
        z = {m: model.encoders[m](inputs[m]) for m in model.modalities}
        p = {m: (z[m] @ branches[m].weight.T + branches[m].bias).tolist() for m in z}
        bias = {m: branches[m].bias.tolist() for m in z}
    # the zeroed-partner probe that is avoided: + b_other (sum), (h_m + b_other) / 2 (late)
    other = {'audio': 'visual', 'visual': 'audio'}
    div = 1.0 if fusion == 'sum' else 2.0
    zeroed = {m: [[(v + b) / div for v, b in zip(row, bias[other[m]])] for row in p[m]]
              for m in p}
    a = hand_eq18(p['audio'], p['visual'], labels, 4.0)
    a_zeroed = hand_eq18(zeroed['audio'], zeroed['visual'], labels, 4.0)
    assert abs(a[0] - a_zeroed[0]) > 1e-3  # the test can tell them apart
    hook = ARLHook()
    losses, g_hook = hooked_grads(model, inputs, samples, hook)
    for i, m in enumerate(('audio', 'visual')):
        assert logged(hook, f'H_{m}') == pytest.approx(mean_entropy(p[m]), rel=1e-5)
        assert logged(hook, f'd_{m}') == pytest.approx(mean_gt_prob(p[m], labels), rel=1e-5)
        assert float(hook.a[m]) == pytest.approx(a[i], rel=1e-5)
        assert logged(hook, f'ce_{m}') == pytest.approx(hand_ce(p[m], labels), rel=1e-5)
    expected = 4.0 * (hand_ce(p['audio'], labels) + hand_ce(p['visual'], labels))
    assert float(losses['loss_unimodal'].detach()) == pytest.approx(expected, rel=1e-5)
    # ...and the gradient: the plain loss with the same probes, encoders x (1 + a_m)
    check_factors(g_hook, plain_grads(model, inputs, samples, gamma=4.0),
                  {'audio': 1 + a[0], 'visual': 1 + a[1]})


def test_unimodal_reg_off():
    model = build_model()
    inputs, samples = make_batch()
    labels = samples['gt_label'].tolist()
    p = hand_probes(model, inputs)
    a = dict(zip(['audio', 'visual'], hand_eq18(p['audio'], p['visual'], labels, 4.0)))
    hook = ARLHook(unimodal_reg=False)
    losses, g_hook = hooked_grads(model, inputs, samples, hook)
    assert [k for k in losses if 'loss' in k] == ['loss']  # no trained probe term
    for m in a:  # a is still computed from the probes and applied
        assert float(hook.a[m]) == pytest.approx(a[m], rel=1e-5)
        assert logged(hook, f'ce_{m}') == pytest.approx(hand_ce(p[m], labels), rel=1e-5)
    assert logged(hook, 'gamma') == 0.0
    check_factors(g_hook, plain_grads(model, inputs, samples, gamma=0.0),
                  {m: 1 + a[m] for m in a})


@pytest.mark.parametrize('residual', [True, False])
def test_asymmetric_off_means_no_scaling(residual):
    model = build_model()
    inputs, samples = make_batch()
    hook = ARLHook(asymmetric=False, residual=residual)
    losses, g_hook = hooked_grads(model, inputs, samples, hook)
    check_factors(g_hook, plain_grads(model, inputs, samples, gamma=4.0),
                  {'audio': 1.0, 'visual': 1.0})
    for m in ('audio', 'visual'):
        assert logged(hook, f'coef_{m}') == 1.0
        assert 0 < logged(hook, f'a_{m}') < 1  # still computed and logged
    assert 'loss_unimodal' in losses


@pytest.mark.parametrize('epoch, warm', [(0, True), (5, True), (6, False), (9, False)])
def test_reference_compat_warmup_then_one_and_a_half(epoch, warm):
    model = build_model()
    inputs, samples = make_batch()
    labels = samples['gt_label'].tolist()
    p = hand_probes(model, inputs)
    hook = ARLHook(gamma=3.0, reference_compat=True)
    losses, g_hook = hooked_grads(model, inputs, samples, hook, epoch=epoch)
    gamma = 1.0 if warm else 3.0  # gamma replaced by 1 during the warm-up (epochs 0..5)
    expected = gamma * (hand_ce(p['audio'], labels) + hand_ce(p['visual'], labels))
    assert float(losses['loss_unimodal'].detach()) == pytest.approx(expected, rel=1e-5)
    assert logged(hook, 'gamma') == gamma
    coef = 1.0 if warm else 1.5
    check_factors(g_hook, plain_grads(model, inputs, samples, gamma=gamma),
                  {'audio': coef, 'visual': coef})
    # eq. 18 is still computed and logged
    a = hand_eq18(p['audio'], p['visual'], labels, 4.0)
    assert logged(hook, 'a_audio') == pytest.approx(a[0], rel=1e-5)


def test_reference_compat_custom_start_and_logged_reference_weights():
    T = 8.0
    hook = ARLHook(temperature=T, reference_compat=True, start=2)
    stub_forward(hook, {'audio': AUDIO, 'visual': VISUAL}, epoch=3)
    assert hook.coefficients == {'audio': 1.5, 'visual': 1.5}
    # The reference's printed weights, by hand.
    H = [mean_entropy(AUDIO), mean_entropy(VISUAL)]
    h_hat = [max(h / sum(H), 0.3) for h in H]
    inv = [1 / h for h in h_hat]
    q_hat = [v / sum(inv) for v in inv]
    l1 = [sum(abs(v) for row in rows for v in row) / len(rows) for rows in (AUDIO, VISUAL)]
    d_hat = [v / sum(l1) for v in l1]
    w = softmax([T * d_hat[1] * q_hat[0], T * d_hat[0] * q_hat[1]])
    for i, m in enumerate(('audio', 'visual')):
        assert logged(hook, f'ref_q_hat_{m}') == pytest.approx(q_hat[i], rel=1e-5)
        assert logged(hook, f'ref_d_hat_{m}') == pytest.approx(d_hat[i], rel=1e-5)
        assert logged(hook, f'ref_w_{m}') == pytest.approx(w[i], rel=1e-5)
    stub_forward(hook, {'audio': AUDIO, 'visual': VISUAL}, epoch=2)
    assert hook.coefficients == {'audio': 1.0, 'visual': 1.0}


def test_reference_compat_config_clips_at_40():
    cfg = Config.fromfile(str(ROOT / 'configs/arl/arl-refcompat_r18_avdigits.py'))
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=40, norm_type=2)
    (hook, ) = [h for h in cfg.custom_hooks if h['type'] == 'ARLHook']
    assert hook['reference_compat'] is True


# --------------------------------------------------------------------------- errors
def test_eq18_with_three_modalities_is_rejected():
    model = build_model(('audio', 'visual', 'text'))
    with pytest.raises(ValueError, match=r"coef_form='eq18'.*3.*share_ratio"):
        ARLHook().setup(model)
    ARLHook(coef_form='share_ratio').setup(model)  # the M > 2 form is accepted


def test_misnamed_config_values_are_named():
    with pytest.raises(ValueError, match="coef_form='eq_18'.*'eq18', 'share_ratio'"):
        ARLHook(coef_form='eq_18')
    with pytest.raises(TypeError, match='temprature'):
        HOOKS.build(dict(type='ARLHook', temprature=8))
    with pytest.raises(TypeError, match="residual='yes'"):
        ARLHook(residual='yes')
    with pytest.raises(ValueError, match='start=3.*reference_compat'):
        ARLHook(start=3)
    with pytest.raises(ValueError, match='gamma=-1'):
        ARLHook(gamma=-1)
    with pytest.raises(ValueError, match='at least two modalities'):
        ARLHook().setup(build_model(('audio', )))


def test_degenerate_probe_names_fusion_and_modality():
    # Bilinear FiLM without a bias: with audio (the condition) zeroed, gamma = beta = 0,
    # so the visual probe is constant.
    model = build_model(fusion=dict(type='FiLMFusion', condition='audio'))
    nn.init.zeros_(model.fusion.film.bias)
    hook = attach(model, ARLHook())
    inputs, samples = make_batch()
    with pytest.raises(ValueError, match="ARLHook.*probe of modality 'visual' through "
                                         "FiLMFusion"):
        step_grads(model, [hook], inputs, samples)
    with pytest.raises(NotImplementedError, match='FiLMFusion'):
        ARLHook(reference_compat=True).setup(model)
    assert hook.a == {}


# --------------------------------------------------------------------------- DDP
GLOBAL_BATCH = 8


def _ddp_step(rank, world, out_dir):
    from mmengine.model import MMDistributedDataParallel
    from mmengine.registry import init_default_scope
    init_default_scope('mmbal')
    model = build_model()
    hook = attach(model, ARLHook())
    inputs, samples = make_batch(b=GLOBAL_BATCH, seed=3)
    shard = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    inputs = {m: x[shard] for m, x in inputs.items()}
    samples = {k: v[shard] for k, v in samples.items()}
    net = MMDistributedDataParallel(model, device_ids=None) if world > 1 else model
    stepper = Stepper(model, [hook], net=net, lr=0.0)
    grads = capture_step_grads(stepper.optim_wrapper, model)
    stepper(inputs, samples)
    record = {'a': {m: float(v) for m, v in hook.a.items()},
              'H': {m: float(hook._pending[f'H_{m}']) for m in model.modalities},
              'grad': grads['encoders.audio.layers.0.weight'].flatten().tolist()}
    with open(os.path.join(out_dir, f'rank{rank}_of{world}.json'), 'w') as f:
        json.dump(record, f)


def test_a_agrees_across_ranks_and_with_the_global_batch(tmp_path):
    run_gloo(_ddp_step, str(tmp_path))
    _ddp_step(0, 1, str(tmp_path))  # one process on the same global batch
    r0, r1, single = (json.loads((tmp_path / name).read_text())
                      for name in ('rank0_of2.json', 'rank1_of2.json', 'rank0_of1.json'))
    assert r0['a'] == r1['a'] and r0['H'] == r1['H']
    for m in single['a']:
        assert r0['a'][m] == pytest.approx(single['a'][m], rel=1e-6)
        assert r0['H'][m] == pytest.approx(single['H'][m], rel=1e-6)
    # Without the all-reduce, rank 0 would get another a: its half batch alone, by hand.
    model = build_model()
    inputs, samples = make_batch(b=GLOBAL_BATCH, seed=3)
    half = {m: x[:GLOBAL_BATCH // 2] for m, x in inputs.items()}
    p = hand_probes(model, half)
    a_half = hand_eq18(p['audio'], p['visual'], samples['gt_label'][:GLOBAL_BATCH // 2].tolist(),
                       4.0)
    assert abs(a_half[0] - single['a']['audio']) > 1e-3
    assert r0['grad'] == r1['grad']  # DDP averaged the (identically gated) gradients
    # mean of the two half-batch gradients == the global-batch gradient
    assert r0['grad'] == pytest.approx(single['grad'], rel=1e-4, abs=1e-7)
