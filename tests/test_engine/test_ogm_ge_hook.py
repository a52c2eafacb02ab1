"""OGM-GE (SPEC "OGM-GE"): eq. 10 coefficients, conv-weight-only modulation, window, GE noise.

Every expected number is computed here by hand (math.exp / math.tanh on the
spec's formulas); the functions under test never produce their own expectation.
"""
import copy
import math
from types import SimpleNamespace

import pytest
import torch

from step_utils import Stepper, ctx_for, sgd_wrapper, step_grads

from mmbal.engine.hooks.ogm_ge_hook import OGMGEHook, ogm_coefficients
from mmbal.registry import MODELS

ALPHA = 0.8


def gt_prob(row, y):
    """softmax(row)[y] by hand."""
    return math.exp(row[y]) / sum(math.exp(v) for v in row)


def eq10(ratio, alpha=ALPHA):
    """SPEC eq. 10: 1 - tanh(alpha * ratio) if ratio > 1, else 1."""
    return 1 - math.tanh(alpha * ratio) if ratio > 1 else 1.0


def scores_of(values):
    return {m: torch.tensor(v, dtype=torch.float32) for m, v in values.items()}


# --------------------------------------------------------------------------- coefficients
# 3 samples, 3 classes, labels y.
LABELS = [0, 2, 1]
AUDIO = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.5], [1.0, 1.0, 1.0]]
VISUAL = [[0.0, 0.0, 0.0], [1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]


def stub_forward(hook, logits, labels):
    """Drive ``after_forward`` with fixed analytic logits (no network)."""
    model = SimpleNamespace(modalities=list(logits))
    outputs = SimpleNamespace(logits=lambda mode='analytic': {
        m: torch.tensor(v) for m, v in logits.items()})
    hook.after_forward(ctx_for(model), outputs, {'gt_label': torch.tensor(labels)})


@pytest.mark.parametrize('swap', [False, True])
def test_coefficients_from_fixed_logits(swap):
    a_logits, v_logits = (VISUAL, AUDIO) if swap else (AUDIO, VISUAL)
    score_a = sum(gt_prob(r, y) for r, y in zip(a_logits, LABELS))
    score_v = sum(gt_prob(r, y) for r, y in zip(v_logits, LABELS))
    # literal cross-check of the hand arithmetic
    assert sorted([score_a, score_v]) == [pytest.approx(1.1594886308), pytest.approx(1.4261262536)]
    ratio_v = score_v / score_a
    ratio_a = 1 / ratio_v
    k_a, k_v = eq10(ratio_a), eq10(ratio_v)
    if swap:
        assert k_a == 1.0 and k_v == pytest.approx(0.2452210270)
    else:
        assert k_v == 1.0 and k_a == pytest.approx(0.2452210270)

    hook = OGMGEHook(alpha=ALPHA)
    stub_forward(hook, {'audio': a_logits, 'visual': v_logits}, LABELS)
    assert float(hook.k['audio']) == pytest.approx(k_a, rel=1e-5)
    assert float(hook.k['visual']) == pytest.approx(k_v, rel=1e-5)
    assert float(hook._pending['ratio_audio']) == pytest.approx(ratio_a, rel=1e-5)
    assert float(hook._pending['ratio_visual']) == pytest.approx(ratio_v, rel=1e-5)
    assert float(hook._pending['k_audio']) == pytest.approx(k_a, rel=1e-5)
    assert float(hook._pending['k_visual']) == pytest.approx(k_v, rel=1e-5)

    # The pure function on the same (hand-computed) scores.
    out = ogm_coefficients(scores_of({'audio': score_a, 'visual': score_v}), ALPHA)
    assert float(out['ratio']['visual']) == pytest.approx(ratio_v, rel=1e-5)
    assert float(out['ratio']['audio']) == pytest.approx(ratio_a, rel=1e-5)
    assert float(out['k']['audio']) == pytest.approx(k_a, rel=1e-5)
    assert float(out['k']['visual']) == pytest.approx(k_v, rel=1e-5)


def test_ratio_just_above_one_jumps():
    """k jumps from 1 to 1 - tanh(alpha) as the ratio passes 1 (not relu(ratio - 1))."""
    out = ogm_coefficients(scores_of({'audio': 1.0, 'visual': 1.0001}), ALPHA)
    k_v = 1 - math.tanh(0.8 * 1.0001)  # 0.33591850...
    assert k_v == pytest.approx(0.3359185077)
    assert float(out['k']['visual']) == pytest.approx(k_v, rel=1e-5)
    assert float(out['k']['audio']) == 1.0
    assert float(out['ratio']['visual']) == pytest.approx(1.0001, rel=1e-6)
    # and just below 1 nothing is suppressed
    out = ogm_coefficients(scores_of({'audio': 1.0, 'visual': 0.9999}), ALPHA)
    assert float(out['k']['visual']) == 1.0
    assert float(out['k']['audio']) == pytest.approx(1 - math.tanh(0.8 / 0.9999), rel=1e-5)


@pytest.mark.parametrize('order', [('audio', 'visual'), ('visual', 'audio')])
def test_exact_tie(order):
    tie = {m: 1.5 for m in order}
    out = ogm_coefficients(scores_of(tie), ALPHA)
    assert float(out['k'][order[0]]) == 1.0 and float(out['k'][order[1]]) == 1.0
    # reference_compat: the FIRST modality in config order gets 1 - tanh(alpha)
    out = ogm_coefficients(scores_of(tie), ALPHA, reference_compat=True)
    assert float(out['k'][order[0]]) == pytest.approx(1 - math.tanh(0.8), rel=1e-5)
    assert float(out['k'][order[1]]) == 1.0
    # ... and off a tie reference_compat changes nothing
    out = ogm_coefficients(scores_of({order[0]: 1.0, order[1]: 1.2}), ALPHA,
                           reference_compat=True)
    assert float(out['k'][order[0]]) == 1.0
    assert float(out['k'][order[1]]) == pytest.approx(1 - math.tanh(0.8 * 1.2), rel=1e-5)


def near_tie_batch(b=64, c=10, seed=0):
    """Visual sample i = audio sample perm[i] (classes swapped so its true-class logit sits
    at label y_i), and one visual true-class logit one float32 ulp up.

    So visual's per-sample confidences are audio's in another order, and score_v exceeds
    score_a by ~3e-10 (relative): far below float32's resolution of a sum of 64
    probabilities (~1e-7), far above float64's (~1e-15).
    """
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(b, c, generator=g) * 2
    labels = torch.randint(0, c, (b, ), generator=g)
    perm = torch.randperm(b, generator=g)
    visual = audio[perm].clone()
    for i, j in enumerate(perm.tolist()):
        src, dst = int(labels[j]), int(labels[i])
        visual[i, [src, dst]] = visual[i, [dst, src]]
    visual[0, labels[0]] = torch.nextafter(visual[0, labels[0]], torch.tensor(math.inf))
    return audio, visual, labels


def exact_score(rows, labels):
    """sum_i softmax(row_i)[y_i] in exact-rounded double arithmetic (math.fsum)."""
    total = []
    for row, y in zip(rows, labels):
        top = max(row)
        e = [math.exp(v - top) for v in row]
        total.append(e[y] / math.fsum(e))
    return math.fsum(total)


@pytest.mark.parametrize('reference_compat', [False, True])
def test_near_tie_is_decided_in_float64_whatever_the_summation_order(reference_compat):
    """SPEC "Clarifications": in float32 the decision flips with the batch order."""
    audio, visual, labels = near_tie_batch()
    score_a = exact_score(audio.tolist(), labels.tolist())
    score_v = exact_score(visual.tolist(), labels.tolist())
    ratio_v = score_v / score_a
    assert 0 < ratio_v - 1 < 4e-8  # a near tie, visual (barely) ahead
    k_v = 1 - math.tanh(ALPHA * ratio_v)

    def float32_ratio(order):
        s = {m: torch.softmax(x[order], 1).gather(1, labels[order].view(-1, 1)).sum()
             for m, x in (('audio', audio), ('visual', visual))}
        return float(s['visual'] / s['audio'])

    orders = [torch.randperm(len(labels), generator=torch.Generator().manual_seed(100 + i))
              for i in range(20)]
    # The construction: float32 sums put visual above, level with and below audio.
    f32 = {(r > 1) - (r < 1) for r in map(float32_ratio, orders)}
    assert f32 == {1, 0, -1}
    for order in orders:
        hook = OGMGEHook(alpha=ALPHA, reference_compat=reference_compat)
        stub_forward(hook, {'audio': audio[order].tolist(), 'visual': visual[order].tolist()},
                     labels[order].tolist())
        assert hook.k['visual'].dtype == torch.float64
        # (the ratio's 1e-8 guard in the denominator moves k by ~2e-9)
        assert float(hook.k['visual']) == pytest.approx(k_v, rel=1e-8)
        assert float(hook.k['audio']) == 1.0  # no tie: reference_compat changes nothing
        assert float(hook._pending['ratio_visual']) == pytest.approx(ratio_v, abs=1e-8)
    # the pure function on the exact scores
    out = ogm_coefficients({'audio': torch.tensor(score_a, dtype=torch.float64),
                            'visual': torch.tensor(score_v, dtype=torch.float64)}, ALPHA,
                           reference_compat)
    assert float(out['k']['visual']) == pytest.approx(k_v, rel=1e-8)
    assert float(out['k']['audio']) == 1.0


def test_exact_tie_with_small_scores_reference_compat():
    """An exact tie of scores is a tie whatever their size.

    SPEC: 'on an exact tie (ratio_v == 1) the code suppresses audio with
    1 - tanh(alpha)'. The reference computes ratio_v = score_v / score_a and
    ratio_a = 1 / ratio_v, so equal scores always hit the else branch. Small
    batch scores (< ~0.17 in float32, e.g. few samples and many classes) must
    behave like large ones.
    """
    # One sample, 3 classes, identical logits for both modalities, label 0:
    row, y = [0.0, 3.0, 3.0], 0
    s = gt_prob(row, y)  # = 1 / (1 + 2 e^3) ~ 0.0243
    assert s == pytest.approx(0.0242888977)
    hook = OGMGEHook(alpha=ALPHA, reference_compat=True)
    stub_forward(hook, {'audio': [row], 'visual': [row]}, [y])
    assert float(hook.k['visual']) == 1.0
    assert float(hook.k['audio']) == pytest.approx(1 - math.tanh(0.8), rel=1e-5)


def test_three_modalities():
    # ratio_m = score_m / mean of the other two; several may be suppressed.
    s = {'audio': 3.0, 'visual': 2.5, 'text': 0.5}
    ratio = {'audio': 3.0 / ((2.5 + 0.5) / 2),    # 2.0
             'visual': 2.5 / ((3.0 + 0.5) / 2),   # 1.428571...
             'text': 0.5 / ((3.0 + 2.5) / 2)}     # 0.181818...
    k = {'audio': 1 - math.tanh(0.8 * 2.0), 'visual': 1 - math.tanh(0.8 * 2.5 / 1.75),
         'text': 1.0}
    assert k['audio'] == pytest.approx(0.0783314456)
    assert k['visual'] == pytest.approx(0.1846260575)
    out = ogm_coefficients(scores_of(s), ALPHA)
    for m in s:
        assert float(out['ratio'][m]) == pytest.approx(ratio[m], rel=1e-5)
        assert float(out['k'][m]) == pytest.approx(k[m], rel=1e-5)
    # all equal: nobody is suppressed
    out = ogm_coefficients(scores_of({'audio': 1.0, 'visual': 1.0, 'text': 1.0}), ALPHA)
    assert all(float(v) == 1.0 for v in out['k'].values())


def test_single_modality_and_bad_args_rejected():
    with pytest.raises(ValueError):
        ogm_coefficients(scores_of({'audio': 1.0}), ALPHA)
    with pytest.raises(ValueError, match='NOISE'):
        OGMGEHook(alpha=ALPHA, variant='NOISE')
    with pytest.raises(ValueError):
        OGMGEHook(alpha=ALPHA, modulation_starts=3, modulation_ends=2)


# --------------------------------------------------------------------------- through a model
B, C = 4, 3


def build_model(seed=0):
    torch.manual_seed(seed)
    return MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='ResNet18', in_channels=1, base_channels=4),
                      visual=dict(type='ResNet18', in_channels=3, base_channels=4)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=C)))


def hand_analytic(model, inputs):
    """s_m = W_m z_m + b / 2 (concat), computed on a copy (BN stats of the original untouched)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        z = {m: model.encoders[m](inputs[m]) for m in model.modalities}
        W, b = model.head.fc.weight, model.head.fc.bias
        d = z['audio'].shape[1]
        return {'audio': (z['audio'] @ W[:, :d].T + b / 2).tolist(),
                'visual': (z['visual'] @ W[:, d:].T + b / 2).tolist()}


def dominated_by(base, target, gain=4.0):
    """A copy of ``base`` whose head columns of ``target`` are ``gain`` x larger."""
    model = copy.deepcopy(base)
    d = model.encoders['audio'].out_channels
    block = slice(0, d) if target == 'audio' else slice(d, None)
    with torch.no_grad():
        model.head.fc.weight[:, block] *= gain
    return model


def make_batch(model, target, seed=1):
    """Inputs, and labels = argmax of ``target``'s analytic logits (so it dominates)."""
    g = torch.Generator().manual_seed(seed)
    inputs = {'audio': torch.randn(B, 1, 32, 32, generator=g),
              'visual': torch.randn(B, 3, 32, 32, generator=g)}
    s = hand_analytic(model, inputs)
    labels = [max(range(C), key=lambda c: row[c]) for row in s[target]]
    return inputs, {'gt_label': torch.tensor(labels)}


def hand_k(model, inputs, labels):
    s = hand_analytic(model, inputs)
    labels = labels['gt_label'].tolist()
    score = {m: sum(gt_prob(r, y) for r, y in zip(s[m], labels)) for m in s}
    ratio_v = score['visual'] / score['audio']
    return {'audio': eq10(1 / ratio_v), 'visual': eq10(ratio_v)}


def step(model, inputs, samples, hook=None, epoch=0, it=0, lr=0.1, weight_decay=0.0):
    """One update through the training step; returns (grads seen by optimizer.step, params
    before)."""
    hooks = []
    if hook is not None:
        hook.setup(model)
        hooks = [hook]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    captured, _ = step_grads(model, hooks, inputs, samples, epoch=epoch, it=it, lr=lr,
                             weight_decay=weight_decay)
    return captured, before


def is_conv_weight(model, name):
    return name.startswith('encoders.') and dict(model.named_parameters())[name].dim() == 4


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


@pytest.fixture(scope='module')
def models():
    base = build_model()
    return {'audio': dominated_by(base, 'audio'), 'visual': dominated_by(base, 'visual')}


@pytest.mark.parametrize('target', ['audio', 'visual'])
def test_ogm_scales_only_conv_weights_of_suppressed_encoder(models, target):
    base = models[target]
    inputs, samples = make_batch(base, target)
    k = hand_k(base, inputs, samples)
    assert k[target] < 1 and k[[m for m in k if m != target][0]] == 1.0  # setup sanity
    plain, hooked = copy.deepcopy(base), copy.deepcopy(base)
    g_plain, _ = step(plain, inputs, samples)
    hook = OGMGEHook(alpha=ALPHA, variant='OGM')
    g_hook, before = step(hooked, inputs, samples, hook=hook, weight_decay=0.0)

    names = list(g_plain)
    conv = [n for n in names if is_conv_weight(base, n)]
    # every Conv2d weight, downsample 1x1 included, and also BN params exist
    assert f'encoders.{target}.stages.1.0.downsample.0.weight' in conv
    assert f'encoders.{target}.stem.0.weight' in conv
    assert any('bn1.weight' in n for n in names) and any('bn1.bias' in n for n in names)
    for n in names:
        m = n.split('.')[1] if n.startswith('encoders.') else None
        if n in conv and m == target:
            assert g_plain[n].abs().max() > 0, n
            torch.testing.assert_close(g_hook[n], k[target] * g_plain[n], rtol=1e-5,
                                       atol=1e-10, msg=n)
            assert not torch.allclose(g_hook[n], g_plain[n]), n
        else:
            # BN weights/biases, the other encoder, fusion and head: untouched.
            assert torch.equal(g_hook[n], g_plain[n]), n


def test_weight_decay_is_not_scaled(models):
    base = models['audio']
    inputs, samples = make_batch(base, 'audio')
    k = hand_k(base, inputs, samples)['audio']
    plain, hooked = copy.deepcopy(base), copy.deepcopy(base)
    g_plain, _ = step(plain, inputs, samples)
    lr, wd = 0.1, 0.05
    _, before = step(hooked, inputs, samples, hook=OGMGEHook(alpha=ALPHA, variant='OGM'),
                     lr=lr, weight_decay=wd)
    n = 'encoders.audio.stages.3.1.conv2.weight'
    after = dict(hooked.named_parameters())[n].detach()
    # SGD: p <- p - lr * (k g + wd p): the decay term is added inside step, unscaled.
    expected = before[n] - lr * (k * g_plain[n] + wd * before[n])
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-7)


def test_window_is_inclusive_and_k_logged_outside(models):
    base = models['visual']
    inputs, samples = make_batch(base, 'visual')
    k = hand_k(base, inputs, samples)
    assert k['visual'] < 1
    g_plain, _ = step(copy.deepcopy(base), inputs, samples)
    n = 'encoders.visual.stages.2.0.conv1.weight'
    for epoch, modulated in [(0, False), (1, True), (2, True), (3, False)]:
        hook = OGMGEHook(alpha=ALPHA, modulation_starts=1, modulation_ends=2, variant='OGM')
        g_hook, _ = step(copy.deepcopy(base), inputs, samples, hook=hook, epoch=epoch)
        # k is computed and logged every iteration, inside the window or not
        assert float(hook._pending['k_visual']) == pytest.approx(k['visual'], rel=1e-5)
        assert float(hook._pending['k_audio']) == 1.0
        assert 'ratio_audio' in hook._pending and 'ratio_visual' in hook._pending
        if modulated:
            torch.testing.assert_close(g_hook[n], k['visual'] * g_plain[n], rtol=1e-5,
                                       atol=1e-10)
        else:
            for name in g_plain:
                assert torch.equal(g_hook[name], g_plain[name]), (epoch, name)


def test_ge_noise(models):
    base = models['audio']
    inputs, samples = make_batch(base, 'audio')
    k = hand_k(base, inputs, samples)
    assert k['audio'] < 1 and k['visual'] == 1.0
    g_plain, _ = step(copy.deepcopy(base), inputs, samples)

    def ge(it, seed=0, epoch=0):
        hook = OGMGEHook(alpha=ALPHA, variant='OGM_GE', seed=seed)
        return step(copy.deepcopy(base), inputs, samples, hook=hook, epoch=epoch, it=it)[0]

    g1 = ge(it=7)
    conv = [n for n in g_plain if is_conv_weight(base, n)]
    noise = {}
    for n in g_plain:
        if n in conv:
            kk = k[n.split('.')[1]]
            # both encoders, also the one with k = 1, get noise
            assert not torch.allclose(g1[n], kk * g_plain[n], rtol=1e-3, atol=0), n
            noise[n] = g1[n] - kk * g_plain[n]
        else:
            assert torch.equal(g1[n], g_plain[n]), n  # BN, fusion, head untouched

    # sigma = unbiased std of the UNMODULATED g (+1e-8), for the suppressed encoder too.
    big = 'encoders.audio.stages.3.1.conv2.weight'  # 32*32*3*3 = 9216 entries
    assert g_plain[big].numel() == 9216
    for n in (big, big.replace('audio', 'visual')):
        g = g_plain[n].double()
        sigma = math.sqrt(((g - g.mean())**2).sum().item() / (g.numel() - 1)) + 1e-8
        eps = noise[n].double() / sigma
        assert eps.std().item() == pytest.approx(1.0, abs=0.05), n
        assert abs(eps.mean().item()) < 5 / math.sqrt(g.numel()), n
    # the suppressed encoder's noise is NOT scaled by k (k ~ 0.3 would be far off)
    assert k['audio'] < 0.9
    for n in conv:
        if g_plain[n].numel() >= 1000:
            g = g_plain[n].double()
            ratio = noise[n].double().std().item() / (g.std().item() + 1e-8)
            assert ratio == pytest.approx(1.0, abs=0.15), n

    # fresh per tensor: same-shaped tensors get different draws
    a1 = noise['encoders.audio.stages.3.1.conv1.weight'] / g_plain[
        'encoders.audio.stages.3.1.conv1.weight'].std()
    a2 = noise[big] / g_plain[big].std()
    v2 = noise[big.replace('audio', 'visual')] / g_plain[big.replace('audio', 'visual')].std()
    assert not torch.allclose(a1, a2, atol=1e-3) and not torch.allclose(a2, v2, atol=1e-3)

    # reproducible with the same iteration and seed; fresh per iteration / seed
    g1_again = ge(it=7)
    for n in conv:
        assert torch.equal(g1[n], g1_again[n]), n
    g2 = ge(it=8)
    g3 = ge(it=7, seed=1)
    assert not torch.allclose(g2[big], g1[big], atol=1e-12)
    assert not torch.allclose(g3[big], g1[big], atol=1e-12)

    # outside the window: no scaling and no noise
    hook = OGMGEHook(alpha=ALPHA, variant='OGM_GE', modulation_starts=0, modulation_ends=0)
    g_out, _ = step(copy.deepcopy(base), inputs, samples, hook=hook, epoch=1, it=7)
    for n in g_plain:
        assert torch.equal(g_out[n], g_plain[n]), n


# --------------------------------------------------------------------------- param_filter
def build_mlp_model(seed=0, visual='MLPEncoder'):
    torch.manual_seed(seed)
    enc = {'MLPEncoder': dict(type='MLPEncoder', in_channels=3, out_channels=4,
                              hidden_channels=(5, )),
           'ResNet18': dict(type='ResNet18', in_channels=3, base_channels=4)}
    return MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=2, out_channels=3),
                      visual=enc[visual]),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=C)))


def test_conv_filter_on_an_mlp_encoder_raises_at_setup_naming_it():
    """SPEC "Clarifications": a filter that matches nothing is an error, never a silent k."""
    with pytest.raises(ValueError, match=r"OGMGEHook: param_filter='conv' selects no parameter "
                                         r"of encoder 'audio' \(MLPEncoder.*'weights'"):
        OGMGEHook(alpha=ALPHA).setup(build_mlp_model())
    # ResNet audio, MLP visual: the MLP one is named
    torch.manual_seed(0)
    mixed = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='ResNet18', in_channels=1, base_channels=4),
                      visual=dict(type='MLPEncoder', in_channels=3, out_channels=4)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=C)))
    with pytest.raises(ValueError, match="encoder 'visual'"):
        OGMGEHook(alpha=ALPHA).setup(mixed)
    OGMGEHook(alpha=ALPHA, param_filter='weights').setup(mixed)
    with pytest.raises(ValueError, match=r"param_filter='linear'.*'conv', 'weights'"):
        OGMGEHook(alpha=ALPHA, param_filter='linear')


def test_conv1d_weights_are_not_conv_weights():
    """'conv' means 4-D weights: a Conv1d encoder has none (its weights are 3-D)."""
    from mmbal.balance import check_param_filter, filtered_params
    enc = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3), torch.nn.Conv1d(3, 3, 1))
    assert filtered_params(enc, 'conv') == []
    assert [n for n, _ in filtered_params(enc, 'weights')] == ['0.weight', '1.weight']
    with pytest.raises(ValueError, match="encoder 'audio' \\(Sequential"):
        check_param_filter({'audio': enc}, 'conv', 'OGMGEHook')
    check_param_filter({'audio': enc}, 'weights', 'OGMGEHook')


def test_conv_filter_on_resnet_is_every_4d_weight_in_order():
    """ResNet encoders are unaffected: 'conv' is exactly every 4-D weight, in the same order
    (the GE noise seeds are indexed by it)."""
    from mmbal.balance import encoder_conv_weights, filtered_params
    model = build_model()
    for m in model.modalities:
        enc = model.encoders[m]
        got = [n for n, _ in filtered_params(enc, 'conv')]
        assert got == [n for n, p in enc.named_parameters() if p.dim() == 4]
        assert got == [n for n, _ in encoder_conv_weights(enc)]
        assert 'stages.1.0.downsample.0.weight' in got and 'stem.0.weight' in got


def test_weights_filter_modulates_every_2d_weight_of_an_mlp():
    base = build_mlp_model()
    d = base.encoders['audio'].out_channels
    with torch.no_grad():  # audio dominates
        base.head.fc.weight[:, :d] *= 4.0
    g = torch.Generator().manual_seed(1)
    inputs = {'audio': torch.randn(B, 2, generator=g), 'visual': torch.randn(B, 3, generator=g)}
    with torch.no_grad():
        z = {m: base.encoders[m](inputs[m]) for m in base.modalities}
        W, b = base.head.fc.weight, base.head.fc.bias
        s = {'audio': (z['audio'] @ W[:, :d].T + b / 2).tolist(),
             'visual': (z['visual'] @ W[:, d:].T + b / 2).tolist()}
    labels = [max(range(C), key=lambda c: row[c]) for row in s['audio']]
    score = {m: sum(gt_prob(r, y) for r, y in zip(s[m], labels)) for m in s}
    k_a = eq10(score['audio'] / score['visual'])
    assert k_a < 1
    samples = {'gt_label': torch.tensor(labels)}
    g_plain, _ = step(copy.deepcopy(base), inputs, samples)
    hook = OGMGEHook(alpha=ALPHA, variant='OGM', param_filter='weights')
    g_hook, _ = step(copy.deepcopy(base), inputs, samples, hook=hook)
    params = dict(base.named_parameters())
    scaled = [n for n in params if n.startswith('encoders.audio.') and params[n].dim() >= 2]
    assert scaled == ['encoders.audio.layers.0.weight']
    for n in params:
        if n in scaled:
            torch.testing.assert_close(g_hook[n], k_a * g_plain[n], rtol=1e-5, atol=1e-10)
            assert not torch.allclose(g_hook[n], g_plain[n]), n
        else:  # biases, the other encoder (k = 1), fusion and head
            assert torch.equal(g_hook[n], g_plain[n]), n


# --------------------------------------------------------------------------- accumulation
def mlp_scores(model, inputs, labels):
    """Hand score sums of the concat MLP model: s_m = W_m z_m + b/2 (no BN: any split)."""
    d = model.encoders['audio'].out_channels
    with torch.no_grad():
        z = {m: model.encoders[m](inputs[m]) for m in model.modalities}
        W, b = model.head.fc.weight, model.head.fc.bias
        s = {'audio': (z['audio'] @ W[:, :d].T + b / 2).tolist(),
             'visual': (z['visual'] @ W[:, d:].T + b / 2).tolist()}
    return s, {m: sum(gt_prob(r, y) for r, y in zip(s[m], labels)) for m in s}


def accumulation_case(seed=1):
    """An audio-dominated concat MLP model and a batch of 2B whose two halves give clearly
    different k (so applying one half's k to the whole update would show)."""
    base = build_mlp_model()
    d = base.encoders['audio'].out_channels
    with torch.no_grad():
        base.head.fc.weight[:, :d] *= 4.0
    g = torch.Generator().manual_seed(seed)
    inputs = {'audio': torch.randn(2 * B, 2, generator=g),
              'visual': torch.randn(2 * B, 3, generator=g)}
    s, _ = mlp_scores(base, inputs, [0] * (2 * B))
    labels = [max(range(C), key=lambda c: row[c]) for row in s['audio']]
    labels[B:] = [(y + 1) % C for y in labels[B:]]  # the second half: audio mostly wrong
    return base, inputs, labels


def run_accumulated(base, hook, inputs, labels, lr):
    """Two micro-batches of B (iterations 0, 1) with accumulative_counts=2: one update."""
    model = copy.deepcopy(base)
    hook.setup(model)
    wrapper = sgd_wrapper(model, lr=lr, accumulative_counts=2)
    wrapper.initialize_count_status(model, 0, 2)
    stepper = Stepper(model, [hook], optim_wrapper=wrapper)
    for it, half in enumerate((slice(0, B), slice(B, 2 * B))):
        stepper({m: x[half] for m, x in inputs.items()},
                {'gt_label': torch.tensor(labels[half])}, it=it)
    return model


def run_large(base, hook, inputs, labels, lr, it=1):
    """One batch of 2B at iteration ``it`` (the accumulated run's update iteration)."""
    model = copy.deepcopy(base)
    hook.setup(model)
    Stepper(model, [hook], lr=lr)(inputs, {'gt_label': torch.tensor(labels)}, it=it)
    return model


def test_accumulation_equals_the_large_batch_ogm():
    """SPEC "Clarifications": scores summed over the micro-batches, k decided once."""
    base, inputs, labels = accumulation_case()
    _, score = mlp_scores(base, inputs, labels)
    k_big = eq10(score['audio'] / score['visual'])
    _, last = mlp_scores(base, {m: x[B:] for m, x in inputs.items()}, labels[B:])
    k_last = eq10(last['audio'] / last['visual'])
    assert k_big < 1 and abs(k_big - k_last) > 1e-2  # the last micro-batch alone differs
    plain = run_large(base, OGMGEHook(alpha=ALPHA, variant='OGM', param_filter='weights',
                                      modulation_starts=5, modulation_ends=5),  # epoch 0: off
                      inputs, labels, lr=0.5)
    large = run_large(base, OGMGEHook(alpha=ALPHA, variant='OGM', param_filter='weights'),
                      inputs, labels, lr=0.5)
    hook = OGMGEHook(alpha=ALPHA, variant='OGM', param_filter='weights')
    acc = run_accumulated(base, hook, inputs, labels, lr=0.5)
    assert float(hook._pending['k_audio']) == pytest.approx(k_big, rel=1e-6)  # logged at step
    assert float(hook._pending['k_visual']) == 1.0
    assert hook.score_sums is None and hook.k == {}  # reset for the next update
    after = dict(acc.named_parameters())
    for n, p in large.named_parameters():
        torch.testing.assert_close(after[n], p, rtol=1e-6, atol=1e-6, msg=n)
    # the update really was modulated
    moved = dict(plain.named_parameters())['encoders.audio.layers.0.weight']
    assert not torch.allclose(after['encoders.audio.layers.0.weight'], moved, atol=1e-4)


def test_accumulation_equals_the_large_batch_ogm_ge_noise_once(monkeypatch):
    base, inputs, labels = accumulation_case()
    _, score = mlp_scores(base, inputs, labels)
    k_big = eq10(score['audio'] / score['visual'])
    large = run_large(base, OGMGEHook(alpha=ALPHA, param_filter='weights', seed=3),
                      inputs, labels, lr=0.5)
    draws = []
    randn = torch.randn

    def counting_randn(*args, **kwargs):
        draws.append(tuple(args[0]) if args else None)
        return randn(*args, **kwargs)

    hook = OGMGEHook(alpha=ALPHA, param_filter='weights', seed=3)
    applied = []
    edit = hook.edit_grads

    def record(ctx):
        applied.append(hook.decide(ctx.model.modalities)['k'])
        edit(ctx)

    hook.edit_grads = record
    monkeypatch.setattr(torch, 'randn', counting_randn)
    acc = run_accumulated(base, hook, inputs, labels, lr=0.5)
    monkeypatch.setattr(torch, 'randn', randn)
    (k, ) = applied  # one edit per update
    assert float(k['audio']) == pytest.approx(k_big, rel=1e-6) and float(k['visual']) == 1.0
    # noise drawn once per update: one tensor per modulated weight of both encoders
    weights = [p for m in acc.modalities for p in acc.encoders[m].parameters() if p.dim() >= 2]
    assert sorted(draws) == sorted(tuple(p.shape) for p in weights)
    after = dict(acc.named_parameters())
    for n, p in large.named_parameters():
        torch.testing.assert_close(after[n], p, rtol=1e-6, atol=1e-6, msg=n)
