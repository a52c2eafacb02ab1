"""PDMP (SPEC "PDMP"): eq. 10-12 coefficients, encoder-only scaling, roles and logging.

Every expected number here is written out by hand from the spec's formulas; the
functions under test never produce their own expectation.
"""
import copy
import json
import logging

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from step_utils import Stepper, step_grads

from mmbal.engine.hooks.pdmp_hook import PDMPHook, logit_magnitude_ratio, pdmp_coefficients
from mmbal.registry import MODELS

AV = ['audio', 'visual']
AVT = ['audio', 'visual', 'text']
IN_CH = {'audio': 3, 'visual': 2, 'text': 5}


def build_model(modalities=AV, seed=0, num_classes=3):
    torch.manual_seed(seed)
    encoders = {m: dict(type='MLPEncoder', in_channels=IN_CH[m], out_channels=4,
                        hidden_channels=(5, )) for m in modalities}
    return MODELS.build(dict(type='MultimodalClassifier', encoders=encoders,
                             fusion=dict(type='ConcatFusion'),
                             head=dict(type='LinearClsHead', num_classes=num_classes)))


def make_batch(modalities=AV, b=6, seed=1, num_classes=3):
    g = torch.Generator().manual_seed(seed)
    inputs = {m: torch.randn(b, IN_CH[m], generator=g) for m in modalities}
    return inputs, {'gt_label': torch.randint(0, num_classes, (b, ), generator=g)}


def attach(model, hook):
    hook.setup(model)
    return hook


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


# --------------------------------------------------------------------------- coefficients
@pytest.mark.parametrize('m_p, m_o, gamma, expected', [
    # CREMA-D: m_p = V, m_o = A, gamma 15 -> (audio 1/15, visual 15)
    ('visual', 'audio', 15, {'audio': 1 / 15, 'visual': 15.0}),
    # AVE: A, A, 15 -> (15, 15)
    ('audio', 'audio', 15, {'audio': 15.0, 'visual': 15.0}),
    # KS: m_p = V, gamma 10, m_o = A -> (1/10, 10)
    ('visual', 'audio', 10, {'audio': 1 / 10, 'visual': 10.0}),
    # VGGSound: A, A, 15 -> (15, 15)
    ('audio', 'audio', 15, {'audio': 15.0, 'visual': 15.0}),
])
def test_paper_roles(m_p, m_o, gamma, expected):
    coefs = pdmp_coefficients(AV, m_p, m_o, gamma)
    assert list(coefs) == AV
    for m in AV:
        assert coefs[m] == pytest.approx(expected[m], rel=1e-12)


@pytest.mark.parametrize('rule, m_p, m_o, expected', [
    # eq12 (literal): m_p != m_o -> every r != m_p gets 1/gamma_p
    ('eq12', 'visual', 'audio', {'audio': 1 / 4, 'visual': 4.0, 'text': 1 / 4}),
    # eq12: m_p == m_o -> all gamma_p
    ('eq12', 'visual', 'visual', {'audio': 4.0, 'visual': 4.0, 'text': 4.0}),
    # per_modality: only r = m_o gets 1/gamma_p, the others gamma_p
    ('per_modality', 'visual', 'audio', {'audio': 1 / 4, 'visual': 4.0, 'text': 4.0}),
    ('per_modality', 'text', 'visual', {'audio': 4.0, 'visual': 1 / 4, 'text': 4.0}),
    # per_modality with m_p == m_o: all gamma_p
    ('per_modality', 'visual', 'visual', {'audio': 4.0, 'visual': 4.0, 'text': 4.0}),
])
def test_three_modality_rules(rule, m_p, m_o, expected):
    coefs = pdmp_coefficients(AVT, m_p, m_o, 4.0, rule=rule)
    assert set(coefs) == set(AVT)
    for m in AVT:
        assert coefs[m] == pytest.approx(expected[m], rel=1e-12)


def test_rejects_gamma_below_one_and_unknown_rule():
    with pytest.raises(ValueError, match='gamma_p'):
        pdmp_coefficients(AV, 'visual', 'audio', 0.5)
    with pytest.raises(ValueError, match='gamma_p'):
        PDMPHook(gamma_p=0.99, dominant='visual', optim_dominant='audio')
    with pytest.raises(ValueError, match='bogus'):
        pdmp_coefficients(AV, 'visual', 'audio', 5, rule='bogus')
    with pytest.raises(ValueError, match='bogus'):
        PDMPHook(gamma_p=5, dominant='visual', optim_dominant='audio', rule='bogus')
    # gamma_p = 1 is allowed (it is the concat baseline).
    assert pdmp_coefficients(AV, 'visual', 'audio', 1) == {'audio': 1.0, 'visual': 1.0}


# --------------------------------------------------------------------------- through a model
def sgd_step(model, hook=None, seed=1, lr=0.1):
    hooks = [attach(model, hook)] if hook is not None else []
    inputs, samples = make_batch(list(model.modalities), seed=seed)
    before = snapshot(model)
    Stepper(model, hooks, lr=lr)(inputs, samples)
    after = snapshot(model)
    return {n: after[n] - before[n] for n in before}


def test_one_step_scales_encoder_updates_only():
    base = build_model()
    plain, hooked = copy.deepcopy(base), copy.deepcopy(base)
    d_plain = sgd_step(plain)
    hook = PDMPHook(gamma_p=5, dominant='visual', optim_dominant='audio')
    d_hook = sgd_step(hooked, hook)
    assert hook.coefficients == pytest.approx({'audio': 1 / 5, 'visual': 5.0})

    seen = set()
    for name, delta in d_hook.items():
        ref = d_plain[name]
        if name.startswith('encoders.visual.'):
            factor = 5.0
        elif name.startswith('encoders.audio.'):
            factor = 1 / 5
        else:
            # fusion / head: the gate is the identity forward, so these are bit-identical.
            assert torch.equal(delta, ref), name
            seen.add('head')
            continue
        seen.add(name.split('.')[1])
        assert ref.abs().max() > 0, name  # the test would be vacuous otherwise
        torch.testing.assert_close(delta, factor * ref, rtol=1e-4, atol=1e-7, msg=name)
    assert seen == {'audio', 'visual', 'head'}


def test_gamma_one_reproduces_plain_training_bit_exactly():
    base = build_model()
    plain, hooked = copy.deepcopy(base), copy.deepcopy(base)
    hook = attach(hooked, PDMPHook(gamma_p=1, dominant='visual', optim_dominant='audio'))
    for model, hooks in ((plain, []), (hooked, [hook])):
        stepper = Stepper(model, hooks, lr=0.1, momentum=0.9, weight_decay=1e-4)
        for i in range(3):
            stepper(*make_batch(seed=10 + i), it=i)
    p_plain, p_hook = snapshot(plain), snapshot(hooked)
    assert p_plain.keys() == p_hook.keys()
    for n in p_plain:
        assert torch.equal(p_plain[n], p_hook[n]), n
    assert hook._pending['gamma_audio'] == 1.0 and hook._pending['gamma_visual'] == 1.0
    # ...and the run actually trained.
    assert not torch.equal(p_plain['head.fc.weight'], snapshot(base)['head.fc.weight'])


@pytest.mark.parametrize('rule, expected', [
    ('eq12', {'audio': 1 / 5, 'visual': 5.0, 'text': 1 / 5}),
    ('per_modality', {'audio': 1 / 5, 'visual': 5.0, 'text': 5.0}),
])
def test_three_modality_model(rule, expected):
    base = build_model(AVT)
    plain, hooked = copy.deepcopy(base), copy.deepcopy(base)
    inputs, samples = make_batch(AVT)
    g_plain, _ = step_grads(plain, [], inputs, samples)
    hook = attach(hooked, PDMPHook(gamma_p=5, dominant='visual', optim_dominant='audio',
                                   rule=rule))
    g_hook, _ = step_grads(hooked, [hook], inputs, samples)
    assert hook.coefficients == pytest.approx(expected)
    for m in AVT:
        assert float(hook._pending[f'gamma_{m}']) == pytest.approx(expected[m])
    for n in g_plain:
        factor = expected[n.split('.')[1]] if n.startswith('encoders.') else 1.0
        if factor == 1.0:
            assert torch.equal(g_hook[n], g_plain[n]), n
        else:
            # atol relative to the tensor's scale: an entry that is a near-cancelling
            # sum over the batch rounds differently when its terms are scaled first.
            torch.testing.assert_close(g_hook[n], factor * g_plain[n], rtol=1e-5,
                                       atol=1e-6 * float(g_plain[n].abs().max()), msg=n)
    # w is over the first two modalities in config order.
    assert 'w_audio_visual' in hook._pending


# --------------------------------------------------------------------------- roles
def test_unknown_modality_is_named():
    model = build_model()
    with pytest.raises(ValueError, match="'speech'"):
        PDMPHook(gamma_p=5, dominant='speech', optim_dominant='audio').setup(model)
    with pytest.raises(ValueError, match="'depth'"):
        PDMPHook(gamma_p=5, dominant='audio', optim_dominant='depth').setup(model)
    with pytest.raises(ValueError):
        PDMPHook(gamma_p=5).setup(model)  # no roles and no artifact


def test_roles_from_artifact_and_override(tmp_path):
    path = tmp_path / 'analysis.json'
    path.write_text(json.dumps({'performance_dominant': 'visual',
                                'optimization_dominant': 'audio', 'rule': 'eq12'}))
    model = build_model()
    hook = PDMPHook(gamma_p=15, analysis=str(path))
    hook.setup(model)
    assert hook.roles == {'dominant': 'visual', 'optim_dominant': 'audio'}
    assert hook.coefficients == pytest.approx({'audio': 1 / 15, 'visual': 15.0})

    # An explicit optim_dominant overrides the artifact: m_p = m_o = visual -> (15, 15).
    hook = PDMPHook(gamma_p=15, analysis=str(path), optim_dominant='visual')
    hook.setup(model)
    assert hook.roles == {'dominant': 'visual', 'optim_dominant': 'visual'}
    assert hook.coefficients == pytest.approx({'audio': 15.0, 'visual': 15.0})

    # Both explicit: both override the artifact.
    hook = PDMPHook(gamma_p=15, analysis=str(path), dominant='audio', optim_dominant='audio')
    hook.setup(model)
    assert hook.roles == {'dominant': 'audio', 'optim_dominant': 'audio'}

    # An artifact naming a modality the model lacks is rejected by name.
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps({'performance_dominant': 'speech',
                               'optimization_dominant': 'audio'}))
    with pytest.raises(ValueError, match="'speech'"):
        PDMPHook(gamma_p=15, analysis=str(bad)).setup(model)


@pytest.fixture
def mm_log(request):
    """Records of MMEngine's current logger (print_log(..., logger='current'))."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    # A new instance per test is the latest created, i.e. the one 'current' logs to.
    logger = MMLogger.get_instance(f'pdmp-{request.node.name}', log_level='INFO')
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def role_lines(records):
    return [r.getMessage() for r in records if r.getMessage().startswith('PDMPHook roles:')]


def test_resolved_roles_and_their_sources_are_logged_once(tmp_path, mm_log):
    path = tmp_path / 'analysis.json'
    path.write_text(json.dumps({'performance_dominant': 'visual',
                                'optimization_dominant': 'audio'}))
    model = build_model()
    hook = PDMPHook(gamma_p=15, analysis=str(path), optim_dominant='visual')
    hook.setup(model)
    assert role_lines(mm_log) == [
        f"PDMPHook roles: dominant='visual' (from artifact {path}), optim_dominant='visual' "
        f'(from config); gamma_p=15, rule=eq12, encoder coefficients: audio=15, visual=15']
    assert hook.role_sources == {'dominant': f'from artifact {path}',
                                 'optim_dominant': 'from config'}
    # The config's optim_dominant differs from the artifact's: it wins, with a warning.
    warnings = [r.getMessage() for r in mm_log if r.levelno == logging.WARNING]
    assert warnings == [f"PDMPHook: optim_dominant='visual' set in the config takes precedence "
                        f"over optimization_dominant='audio' of {str(path)!r}; set "
                        f"optim_dominant=None to use the artifact's"]

    mm_log.clear()
    PDMPHook(gamma_p=5, dominant='visual', optim_dominant='audio').setup(model)
    assert role_lines(mm_log) == [
        "PDMPHook roles: dominant='visual' (from config), optim_dominant='audio' (from config); "
        'gamma_p=5, rule=eq12, encoder coefficients: audio=0.2, visual=5']
    assert not [r for r in mm_log if r.levelno == logging.WARNING]


def test_config_roles_equal_to_the_artifact_do_not_warn(tmp_path, mm_log):
    path = tmp_path / 'analysis.json'
    path.write_text(json.dumps({'performance_dominant': 'visual',
                                'optimization_dominant': 'audio'}))
    PDMPHook(gamma_p=15, analysis=str(path), dominant='visual',
             optim_dominant='audio').setup(build_model())
    assert not [r for r in mm_log if r.levelno == logging.WARNING]
    assert "dominant='visual' (from config)" in role_lines(mm_log)[0]


def test_bad_artifacts_are_named(tmp_path):
    model = build_model()
    missing = tmp_path / 'none.json'
    with pytest.raises(FileNotFoundError, match=f'{missing}.*not found.*modality_analysis'):
        PDMPHook(gamma_p=15, analysis=str(missing)).setup(model)
    broken = tmp_path / 'broken.json'
    broken.write_text('{"performance_dominant": ')
    with pytest.raises(ValueError, match=f'{broken}.*is not JSON'):
        PDMPHook(gamma_p=15, analysis=str(broken)).setup(model)
    # Read (and checked) even when the config sets both roles.
    other = tmp_path / 'other.json'
    other.write_text(json.dumps({'modalities': ['audio', 'visual']}))
    with pytest.raises(KeyError, match="other.json.*lacks.*'performance_dominant'"):
        PDMPHook(gamma_p=15, analysis=str(other), dominant='audio',
                 optim_dominant='audio').setup(model)
    # A --teacher analysis names no m_o.
    teacher = tmp_path / 'teacher.json'
    teacher.write_text(json.dumps({'performance_dominant': 'visual',
                                   'optimization_dominant': None}))
    with pytest.raises(ValueError, match='optim_dominant is not set.*optimization_dominant=null'):
        PDMPHook(gamma_p=15, analysis=str(teacher)).setup(model)
    hook = PDMPHook(gamma_p=15, analysis=str(teacher), optim_dominant='audio')
    hook.setup(model)
    assert hook.roles == {'dominant': 'visual', 'optim_dominant': 'audio'}
    # A role of the artifact that the model lacks is named with the file and key.
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps({'performance_dominant': 'visual',
                               'optimization_dominant': 'speech'}))
    with pytest.raises(ValueError, match="bad.json: optimization_dominant='speech' is not a "
                                         'modality'):
        PDMPHook(gamma_p=15, analysis=str(bad)).setup(model)


# --------------------------------------------------------------------------- diagnostic w
def test_logit_magnitude_ratio_by_hand():
    first = torch.tensor([[1.0, -2.0, 3.0], [-0.5, 0.0, 4.0]])
    second = torch.tensor([[2.0, -1.0, 0.0], [1.0, 1.0, -2.0]])
    # |1|+|-2|+|3|+|-0.5|+|0|+|4| = 10.5 ; |2|+|-1|+|0|+|1|+|1|+|-2| = 7
    w = logit_magnitude_ratio(first, second)
    assert float(w) == pytest.approx(10.5 / 7, rel=1e-6)
    assert not w.requires_grad
    assert w.dtype == torch.float64  # SPEC "Clarifications": statistics in float64
    # float64 sums: 2^24 + 1, which float32 rounds to 2^24 (w would be exactly 1), is kept
    big = torch.tensor([[2.0**24, 1.0]])
    w = logit_magnitude_ratio(big, torch.tensor([[2.0**24]]))
    assert float(w) == pytest.approx(1 + 2.0**-24, rel=1e-12)
    w = logit_magnitude_ratio(first.requires_grad_(), second)
    assert not w.requires_grad  # detached


def test_hook_logs_gammas_and_w():
    model = build_model()
    hook = attach(model, PDMPHook(gamma_p=5, dominant='visual', optim_dominant='audio'))
    inputs, samples = make_batch()
    step_grads(model, [hook], inputs, samples)
    assert set(hook._pending) == {'gamma_audio', 'gamma_visual', 'w_audio_visual'}
    assert float(hook._pending['gamma_audio']) == pytest.approx(0.2)
    assert float(hook._pending['gamma_visual']) == pytest.approx(5.0)

    # Analytic concat logits by hand: s_m = W_m z_m + b / 2, audio = columns 0..3.
    with torch.no_grad():
        z_a = model.encoders['audio'](inputs['audio'])
        z_v = model.encoders['visual'](inputs['visual'])
        W, b = model.head.fc.weight, model.head.fc.bias
        s_a = z_a @ W[:, :4].T + b / 2
        s_v = z_v @ W[:, 4:].T + b / 2
        # sanity of the decomposition: s_a + s_v is the fused logit
        torch.testing.assert_close(s_a + s_v, model(inputs, mode='tensor'))
        expected = (s_a.abs().sum() / s_v.abs().sum()).item()
    assert float(hook._pending['w_audio_visual']) == pytest.approx(expected, rel=1e-5)


def test_gate_scaling_equals_scaling_every_encoder_param_grad():
    """SPEC: 'every parameter of m_p's encoder ... gets g <- gamma_p g'; a gate is equivalent."""
    base = build_model()
    hooked = copy.deepcopy(base)
    inputs, samples = make_batch()
    # reference: scale the parameter gradients of the encoders by hand
    logits = base(inputs, mode='tensor')
    F.cross_entropy(logits, samples['gt_label']).backward()
    g_ref = grads(base)
    for n in g_ref:
        if n.startswith('encoders.visual.'):
            g_ref[n] = g_ref[n] * 15.0
        elif n.startswith('encoders.audio.'):
            g_ref[n] = g_ref[n] / 15.0
    hook = attach(hooked, PDMPHook(gamma_p=15, dominant='visual', optim_dominant='audio'))
    g_hook, _ = step_grads(hooked, [hook], inputs, samples)
    for n in g_ref:
        torch.testing.assert_close(g_hook[n], g_ref[n], rtol=1e-5, atol=1e-8, msg=n)
