"""MLA: the head gradient modification (HGM), the alternating sub-steps, the shared head's
evaluation fusion, resume, DDP.

Every expected number is written out below with the arithmetic that gives it (spec
BASELINES-2.md, "1. MLA", unit tests 1-5, and the extra cases); none is produced by the
code under test.
"""
import copy
import json
import os
import types

import pytest
import torch
from dist_utils import run_gloo
from step_utils import Stepper, capture_step_grads

from mmbal.engine import MLAHook
from mmbal.engine.hooks.mla_hook import (elementwise_update, frobenius_normalize, hgm_alpha,
                                         hgm_step, owm_update, project_head_grad)
from mmbal.models.necks.shared_head import (batch_entropy_weights, entropy_weights,
                                            sample_entropy)
from mmbal.registry import MODELS

torch.set_num_threads(1)
TOL = dict(rtol=0, atol=2e-6)


def close(got, want, **tol):
    torch.testing.assert_close(torch.as_tensor(got, dtype=torch.float64),
                               torch.as_tensor(want, dtype=torch.float64), **(tol or TOL))


def tiny_model(**fusion_kw):
    """Spec test 3: W_a = W_v = I_2 (bias 0), shared head W = 0, b = 0, two classes."""
    model = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=2, out_channels=2),
                      visual=dict(type='MLPEncoder', in_channels=2, out_channels=2)),
        fusion=dict(type='SharedHeadFusion', num_classes=2, **fusion_kw), head=None))
    with torch.no_grad():
        for enc in model.encoders.values():
            enc.layers[0].weight.copy_(torch.eye(2))
            enc.layers[0].bias.zero_()
        model.fusion.fc.weight.zero_()
        model.fusion.fc.bias.zero_()
    return model


def tiny_batch():
    """x_a = [1, 0], x_v = [0, 1], y = 0."""
    return ({'audio': torch.tensor([[1., 0.]]), 'visual': torch.tensor([[0., 1.]])},
            {'gt_label': torch.tensor([0])})


def head(model):
    return model.fusion.fc


# --------------------------------------------------------------------------- spec test 1
def test_hgm_step_values():
    # P = I, features [[2, 0], [0, 0]] -> r = [1, 0]; j = 0, J = 10 -> alpha = 0.1.
    alpha = hgm_alpha(0, 10)
    assert alpha == pytest.approx(0.1)
    P, r = torch.eye(2, dtype=torch.float64), torch.tensor([1., 0.], dtype=torch.float64)
    # q = P r = [1, 0]; r.q = 1; P1 = I - q q^T / 1.1 = diag(1 - 1/1.1, 1) = diag(0.090909, 1)
    P1 = owm_update(P, r, alpha)
    close(P1, [[0.0909091, 0], [0, 1]])
    # ||P1||_F = sqrt(0.090909^2 + 1) = 1.004124; P^1 = diag(0.090536, 0.995893)
    close(torch.linalg.matrix_norm(P1), 1.0041237)
    P1n = frobenius_normalize(P1)
    close(P1n, [[0.0905357, 0], [0, 0.9958932]])
    G = torch.tensor([[1., 1.], [2., -1.]], dtype=torch.float64)
    # G P1^T: column 0 times 0.090909, column 1 times 1
    close(project_head_grad(G, P1), [[0.0909091, 1], [0.1818182, -1]])
    # G P^1^T: column 0 times 0.090536, column 1 times 0.995893
    _, projected, norm = hgm_step(P, r, alpha, G)
    close(projected, [[0.0905357, 0.9958932], [0.1810714, -0.9958932]])
    close(norm, 1.0041237)
    # not BalanceBenchmark's G + G P^T = [[1.090536, 1.995893], [2.181071, -1.995893]]
    assert not torch.allclose(projected, torch.tensor([[1.0905357, 1.9958932],
                                                      [2.1810714, -1.9958932]],
                                                     dtype=torch.float64))
    # raw P (normalize_p=False) projects with P1 itself
    _, raw, _ = hgm_step(P, r, alpha, G, normalize_p=False)
    close(raw, [[0.0909091, 1], [0.1818182, -1]])


def test_hgm_through_the_hook_uses_the_batch_mean_feature_and_only_the_weight():
    model = tiny_model()
    hook = MLAHook()
    hook.setup(model)
    hook.exp_count = 1  # not the first sub-step of the run
    ctx = types.SimpleNamespace(model=model, batch_idx=0, num_batches=10, pass_index=0)
    # the audio encoder is I, so features = inputs = [[2, 0], [0, 0]] -> r = [1, 0]
    outputs = model.run({'audio': torch.tensor([[2., 0.], [0., 0.]])}, trainable=['audio'],
                        logits='analytic')
    hook.after_forward(ctx, outputs, {'gt_label': torch.tensor([0, 1])})
    close(hook.last_r, [1, 0])
    head(model).weight.grad = torch.tensor([[1., 1.], [2., -1.]])
    head(model).bias.grad = torch.tensor([3., -4.])
    hook.edit_grads(ctx)
    close(head(model).weight.grad, [[0.0905357, 0.9958932], [0.1810714, -0.9958932]])
    assert torch.equal(head(model).bias.grad, torch.tensor([3., -4.]))  # bias never touched
    close(hook.P, [[0.0905357, 0], [0, 0.9958932]])
    assert hook.exp_count == 2


def test_alpha_schedule():
    assert hgm_alpha(0, 10) == pytest.approx(0.1)
    assert hgm_alpha(5, 10) == pytest.approx(0.0316228, abs=1e-7)  # 0.1^1.5
    assert hgm_alpha(9, 10) == pytest.approx(0.0125893, abs=1e-7)  # 0.1^1.9
    assert hgm_alpha(0, 0) == pytest.approx(0.1)  # J unknown only at j = 0: 0.1 for every J
    with pytest.raises(ValueError, match='J=0 at batch j=3'):
        hgm_alpha(3, 0)


# --------------------------------------------------------------------------- spec test 2
def test_normalisation_reinflates_old_directions():
    # next sub-step: r = [0, 1], j = 5 of J = 10 -> alpha = 0.1^1.5 = 0.0316228
    alpha, r2 = hgm_alpha(5, 10), torch.tensor([0., 1.], dtype=torch.float64)
    P1 = torch.tensor([[1 - 1 / 1.1, 0], [0, 1]], dtype=torch.float64)
    # from raw P1: q = [0, 1], r.q = 1 -> P2[1,1] = 1 - 1/1.0316228 = 0.030653
    close(owm_update(P1, r2, alpha), [[0.0909091, 0], [0, 0.0306534]])
    # from P^1 = diag(0.090536, 0.995893): q = [0, 0.995893], r.q = 0.995893
    # P2[1,1] = 0.995893 - 0.995893^2 / 1.027516 = 0.030650; then / ||.||_F (0.095583)
    # -> diag(0.947195, 0.320659): the damped first direction is ~0.95 again
    P1n = frobenius_normalize(P1)
    P2n, _, _ = hgm_step(P1n, r2, alpha, torch.zeros(1, 2, dtype=torch.float64))
    close(P2n, [[0.9471951, 0], [0, 0.3206592]])


# --------------------------------------------------------------------------- spec test 3
def test_alternation_on_the_tiny_model():
    model = tiny_model()
    hook = MLAHook(projection='none')
    hook.setup(model)
    stepper = Stepper(model, [hook], lr=1.0)
    seen = []
    original = stepper.optim_wrapper.optimizer.step

    def step(*args, **kwargs):  # the gradients each sub-step's optimizer step sees
        seen.append({n: None if p.grad is None else p.grad.clone()
                     for n, p in model.named_parameters()})
        return original(*args, **kwargs)

    stepper.optim_wrapper.optimizer.step = step
    log = stepper(*tiny_batch())
    assert len(seen) == 2
    audio, visual = seen
    # audio step: z_a = [1, 0], s = [0, 0], L_a = ln 2 = 0.693147; the visual encoder is not run
    close(log['audio/loss_mla'], 0.6931472)
    assert all(g is None for n, g in audio.items() if n.startswith('encoders.visual.'))
    # dL/dW = (p - y) z^T = [[-0.5, 0], [0.5, 0]]; W grad of the audio encoder = 0 (W = 0)
    close(audio['fusion.fc.weight'], [[-0.5, 0], [0.5, 0]])
    assert torch.equal(audio['encoders.audio.layers.0.weight'], torch.zeros(2, 2))
    # visual step on the updated head: W = [[0.5, 0], [-0.5, 0]], b = [0.5, -0.5];
    # s = W z_v + b = [0.5, -0.5], p = [0.731059, 0.268941], L_v = -ln 0.731059 = 0.313262
    close(log['visual/loss_mla'], 0.3132617)
    assert all(g is None for n, g in visual.items() if n.startswith('encoders.audio.'))
    # after: W[:, 1] = -(p - y) = [0.268941, -0.268941], b = [0.5 + 0.268941, -0.768941]
    close(head(model).weight, [[0.5, 0.2689414], [-0.5, -0.2689414]])
    close(head(model).bias, [0.7689414, -0.7689414])
    # W_v gets (W^T (p - y)) x_v^T = [[0, -0.268941], [0, 0]]: W_v = [[1, 0.268941], [0, 1]]
    close(model.encoders['visual'].layers[0].weight, [[1, 0.2689414], [0, 1]])
    close(model.encoders['visual'].layers[0].bias, [0.2689414, 0])
    close(model.encoders['audio'].layers[0].weight, [[1, 0], [0, 1]])
    # per-modality losses under balance/mla/
    assert set(hook._pending) == {'loss_audio', 'loss_visual'}
    close(hook._pending['loss_audio'], 0.6931472)
    assert hook.exp_count == 2


@pytest.mark.parametrize('normalize_p, w1', [(False, 0.0244492), (True, 0.0243488)])
def test_alternation_with_hgm_on_the_visual_step(normalize_p, w1):
    # The first sub-step of the run (audio) is not projected; the visual step is:
    # r = z_v = [0, 1], alpha = 0.1 -> P = diag(1, 0.090909) (raw) or diag(0.995893, 0.090536)
    # (normalised); dL/dW[:, 1] = [-0.268941, 0.268941] -> W[:, 1] = +-0.268941 * P[1, 1]
    # = +-0.024449 (raw) or +-0.024349 (normalised). The visual direction itself is damped.
    model = tiny_model()
    hook = MLAHook(normalize_p=normalize_p)
    hook.setup(model)
    Stepper(model, [hook], lr=1.0)(*tiny_batch())
    close(head(model).weight, [[0.5, w1], [-0.5, -w1]])
    close(head(model).bias, [0.7689414, -0.7689414])  # the bias is never projected
    close(hook.P, [[1, 0], [0, 0.0909091]] if not normalize_p else
          [[0.9958932, 0], [0, 0.0905357]])
    assert set(hook._pending) == {'loss_audio', 'loss_visual', 'alpha', 'p_norm_visual'}
    close(hook._pending['alpha'], 0.1)
    close(hook._pending['p_norm_visual'], 1.0041237)  # sqrt(1 + 0.090909^2)


# --------------------------------------------------------------------------- spec test 4
def test_entropy_fusion_values():
    s_a = torch.tensor([[2., 0., 0.], [0., 0., 0.]])
    s_v = torch.tensor([[0., 0., 0.], [0., 3., 0.]])
    # row [2, 0, 0]: p = [e^2, 1, 1] / (e^2 + 2) = [0.786986, 0.106507, 0.106507],
    # H = -sum p ln p = 0.665573; a uniform row has H = ln 3 = 1.098612;
    # row [0, 3, 0]: p = [0.047426, 0.905148, 0.047426], H = 0.366594
    close(sample_entropy(s_a), [0.6655733, 1.0986123])
    close(sample_entropy(s_v), [1.0986123, 0.3665945])
    # lambda_a = 1 / (1 + exp(H_a - H_v)) = [0.606599, 0.324752]
    lam = entropy_weights({'audio': s_a, 'visual': s_v})
    close(lam, [[0.6065990, 0.3247520], [0.3934010, 0.6752480]])
    fusion = tiny_fusion(num_classes=3)
    f = fusion({'audio': s_a, 'visual': s_v})
    # f = lambda_a s_a + lambda_v s_v = [[2 * 0.606599, 0, 0], [0, 3 * 0.675248, 0]]
    close(f, [[1.2131980, 0, 0], [0, 2.0257440, 0]])


def test_entropy_fusion_reference_compat_uses_the_batch_softmax():
    s_a = torch.tensor([[2., 0., 0.], [0., 0., 0.]])
    s_v = torch.tensor([[0., 0., 0.], [0., 3., 0.]])
    # softmax over the batch (dim 0), entropy summed over the batch:
    # s_a: column 0 softmax([2, 0]) = [0.880797, 0.119203], H = 0.365334; columns 1, 2: ln 2
    #      each -> H_a = 0.365334 + 2 ln 2 = 1.751628
    # s_v: column 1 softmax([0, 3]) = [0.047426, 0.952574], H = 0.190865 -> H_v = 1.577159
    # w_a = 1 / (1 + exp(H_a - H_v)) = 1 / (1 + exp(0.174469)) = 0.456493, w_v = 0.543507
    close(batch_entropy_weights({'audio': s_a, 'visual': s_v}), [0.4564931, 0.5435069])
    fusion = tiny_fusion(num_classes=3, reference_compat=True)
    f = fusion({'audio': s_a, 'visual': s_v})
    # the same weights for both rows: [[2 w_a, 0, 0], [0, 3 w_v, 0]]
    close(f, [[0.9129862, 0, 0], [0, 1.6305208, 0]])


def tiny_fusion(num_classes, **kw):
    """A SharedHeadFusion whose head is the identity, so logits = features (d = C)."""
    fusion = MODELS.build(dict(type='SharedHeadFusion', num_classes=num_classes,
                               in_channels=dict(audio=num_classes, visual=num_classes), **kw))
    with torch.no_grad():
        fusion.fc.weight.copy_(torch.eye(num_classes))
        fusion.fc.bias.zero_()
    return fusion


def test_fixed_fusion_and_the_weights_carry_no_gradient():
    s_a = torch.tensor([[2., 0., 0.]], requires_grad=True)
    s_v = torch.tensor([[0., 1., 0.]], requires_grad=True)
    fixed = tiny_fusion(3, eval_fusion='fixed', weights=dict(audio=0.55, visual=0.45))
    close(fixed({'audio': s_a, 'visual': s_v}), [[1.1, 0.45, 0]])  # 0.55*2, 0.45*1
    # entropy fusion: the weights are constants for autograd, d f / d s_a = lambda_a
    f = tiny_fusion(3)({'audio': s_a, 'visual': s_v})
    f[0, 0].backward()
    lam_a = float(entropy_weights({'audio': s_a, 'visual': s_v})[0, 0])
    close(s_a.grad, [[lam_a, 0, 0]])
    close(s_v.grad, [[1 - lam_a, 0, 0]])


def test_shared_head_logits_and_metrics_read_the_analytic_logits():
    model = tiny_model()
    with torch.no_grad():
        head(model).weight.copy_(torch.tensor([[1., 2.], [3., 4.]]))
        head(model).bias.copy_(torch.tensor([0.5, -0.5]))
    inputs, samples = tiny_batch()
    # s_a = W [1, 0] + b = [1.5, 2.5]; s_v = W [0, 1] + b = [2.5, 3.5]
    only_visual = model.run(inputs, trainable=['visual'])
    assert list(only_visual.logits('analytic')) == ['visual']
    (result, ) = model(inputs, samples, mode='predict')
    close(result['modality_scores']['audio'], [1.5, 2.5])
    close(result['modality_scores']['visual'], [2.5, 3.5])
    assert model.fusion.shared_head is head(model)


def test_shared_head_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"same size; in_channels=\{'audio': 4, 'visual': 3\}"):
        MODELS.build(dict(type='SharedHeadFusion', num_classes=2,
                          in_channels=dict(audio=4, visual=3)))
    with pytest.raises(ValueError, match="needs weights with one entry per modality"):
        MODELS.build(dict(type='SharedHeadFusion', num_classes=2, eval_fusion='fixed',
                          weights=dict(audio=1.0), in_channels=dict(audio=2, visual=2)))
    with pytest.raises(ValueError, match="eval_fusion='mean'"):
        MODELS.build(dict(type='SharedHeadFusion', num_classes=2, eval_fusion='mean',
                          in_channels=dict(audio=2, visual=2)))
    with pytest.raises(ValueError, match='only used with'):
        MODELS.build(dict(type='SharedHeadFusion', num_classes=2, weights=dict(audio=1.0),
                          in_channels=dict(audio=2, visual=2)))


# --------------------------------------------------------------------------- spec test 5
def test_first_sub_step_of_the_run_leaves_P_and_the_gradient_alone():
    model = tiny_model()
    hook = MLAHook()
    hook.setup(model)
    stepper = Stepper(model, [hook], lr=1.0)
    grads = []
    original = hook.edit_grads

    def record(ctx):
        original(ctx)
        grads.append((head(model).weight.grad.clone(), hook.P.clone()))

    hook.edit_grads = record
    stepper(*tiny_batch())
    (audio_grad, audio_P), (visual_grad, _) = grads
    close(audio_grad, [[-0.5, 0], [0.5, 0]])  # unprojected
    assert torch.equal(audio_P, torch.eye(2, dtype=torch.float64))
    close(visual_grad, [[0, -0.0243488], [0, 0.0243488]])  # projected (test 3)


def test_resume_with_exp_count_projects_from_its_first_sub_step():
    # A resumed run restores P = I and exp_count = 2: its audio sub-step is projected.
    # audio: r = [1, 0], alpha = 0.1 -> P^1 = diag(0.090536, 0.995893);
    #   W[:, 0] = -0.090536 * [-0.5, 0.5] = [0.045268, -0.045268]
    # visual: s = W z_v + b = b = [0.5, -0.5] (bias unprojected), L_v = 0.313262;
    #   r = [0, 1]: q = [0, 0.995893], P[1, 1] = 0.995893 - 0.995893^2 / 1.095893 = 0.090875,
    #   P = diag(0.090536, 0.090875) / 0.128278 = diag(0.705783, 0.708428);
    #   W[:, 1] = 0.268941 * 0.708428 = [0.190526, -0.190526]
    # W_v gets (W^T (p - y)) x_v^T with W[:, 0] = +-0.045268: W_v[0, 1] = 2 * 0.045268 * 0.268941
    model = tiny_model()
    hook = MLAHook()
    hook.setup(model)
    hook.load_state_dict({'P': torch.eye(2, dtype=torch.float64), 'exp_count': 2})
    log = Stepper(model, [hook], lr=1.0)(*tiny_batch())
    close(log['visual/loss_mla'], 0.3132617)
    close(head(model).weight, [[0.0452679, 0.1905256], [-0.0452679, -0.1905256]])
    close(hook.P, [[0.7057831, 0], [0, 0.7084280]])
    close(model.encoders['visual'].layers[0].weight, [[1, 0.0243488], [0, 1]])
    assert hook.exp_count == 4


def mlp_model(seed=0):
    torch.manual_seed(seed)
    return MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=3, out_channels=4,
                                 hidden_channels=(5, )),
                      visual=dict(type='MLPEncoder', in_channels=2, out_channels=4)),
        fusion=dict(type='SharedHeadFusion', num_classes=3), head=None))


def mlp_batch(seed, b=8):
    g = torch.Generator().manual_seed(seed)
    return ({'audio': torch.randn(b, 3, generator=g), 'visual': torch.randn(b, 2, generator=g)},
            {'gt_label': torch.randint(0, 3, (b, ), generator=g)})


def test_resume_through_the_checkpoint_is_exact(tmp_path):
    kw = dict(lr=0.1, momentum=0.9, weight_decay=1e-4)
    full = mlp_model()
    hook = MLAHook()
    hook.setup(full)
    stepper = Stepper(full, [hook], **kw)
    for it in range(3):
        stepper(*mlp_batch(it), it=it, batch_idx=it, num_batches=3)

    part = mlp_model()
    hook_a = MLAHook()
    hook_a.setup(part)
    stepper_a = Stepper(part, [hook_a], **kw)
    stepper_a(*mlp_batch(0), it=0, batch_idx=0, num_batches=3)
    checkpoint = {'state_dict': part.state_dict(),
                  'optimizer': stepper_a.optim_wrapper.state_dict()}
    hook_a.before_save_checkpoint(None, checkpoint)
    torch.save(checkpoint, tmp_path / 'ckpt.pth')
    loaded = torch.load(tmp_path / 'ckpt.pth', weights_only=True)
    assert loaded['balance_hooks']['mla']['exp_count'] == 2
    resumed = mlp_model(seed=1)  # different init: everything comes from the checkpoint
    resumed.load_state_dict(loaded['state_dict'])
    hook_b = MLAHook()
    hook_b.setup(resumed)
    hook_b.after_load_checkpoint(None, loaded)
    stepper_b = Stepper(resumed, [hook_b], **kw)
    stepper_b.optim_wrapper.load_state_dict(loaded['optimizer'])
    for it in (1, 2):
        stepper_b(*mlp_batch(it), it=it, batch_idx=it, num_batches=3)
    assert hook_b.exp_count == hook.exp_count == 6
    assert torch.equal(hook_b.P, hook.P)
    for (n, p), (_, q) in zip(full.named_parameters(), resumed.named_parameters()):
        assert torch.equal(p, q), n


def test_checkpoint_P_of_another_size_is_refused():
    hook = MLAHook()
    hook.setup(tiny_model())
    with pytest.raises(ValueError, match=r'checkpoint\'s P has shape \(3, 3\)'):
        hook.load_state_dict({'P': torch.eye(3), 'exp_count': 1})


# --------------------------------------------------------------------------- OWM vs element-wise
def test_owm_and_elementwise_forms_differ_off_axis():
    # P = I, r = [0.6, 0.8] (|r| = 1), alpha = 0.1; q = r, r.q = 1
    P = torch.eye(2, dtype=torch.float64)
    r = torch.tensor([0.6, 0.8], dtype=torch.float64)
    # OWM: I - r r^T / 1.1 = [[1 - 0.36/1.1, -0.48/1.1], [-0.48/1.1, 1 - 0.64/1.1]]
    owm = owm_update(P, r, 0.1)
    close(owm, [[0.6727273, -0.4363636], [-0.4363636, 0.4181818]])
    # element-wise: P_ij - r_i r_j / (0.1 + r_i r_j)
    #   = [[1 - 0.36/0.46, -0.48/0.58], [-0.48/0.58, 1 - 0.64/0.74]]
    ew = elementwise_update(P, r, 0.1)
    close(ew, [[0.2173913, -0.8275862], [-0.8275862, 0.1351351]])
    assert (owm - ew).abs().max() > 0.3
    # A second update with r2 = [1, 0] makes the element-wise P asymmetric: q = ew[:, 0] =
    # [0.217391, -0.827586]; P01 = -0.827586 - 0.217391 * (-0.827586) / 0.1 = 0.971514,
    # P10 = -0.827586 - (-0.827586 * 0.217391) / (0.1 - 0.827586) = -1.074856
    ew2 = elementwise_update(ew, torch.tensor([1., 0.], dtype=torch.float64), 0.1)
    close(ew2[0, 1], 0.9715142)
    close(ew2[1, 0], -1.0748560)


def test_owm_and_elementwise_on_random_features():
    # Random r (d = 8): the OWM update keeps P symmetric and satisfies the rank-one identity
    # P_new r = q * alpha / (alpha + r.q) (q = P r), which the element-wise form breaks.
    g = torch.Generator().manual_seed(0)
    P = torch.eye(8, dtype=torch.float64)
    Pe = P.clone()
    for _ in range(3):
        r = torch.rand(8, generator=g, dtype=torch.float64)
        q = P @ r
        P_new = owm_update(P, r, 0.05)
        close(P_new @ r, q * 0.05 / (0.05 + r @ q), rtol=1e-9, atol=1e-12)
        close(P_new, P_new.T, rtol=0, atol=1e-12)
        P = frobenius_normalize(P_new)
        Pe = frobenius_normalize(elementwise_update(Pe, r, 0.05))
    assert (P - Pe).abs().max() > 0.05
    assert (Pe - Pe.T).abs().max() > 1e-3


def test_reference_compat_uses_the_elementwise_form_in_the_step():
    # Through the hook: P = I, r = [0.6, 0.8] (features [[0.6, 0.8]]), alpha = 0.1,
    # normalize_p off; G = [[1, 0], [0, 1]] -> G P^T = P^T (values above)
    for compat, want in ((False, [[0.6727273, -0.4363636], [-0.4363636, 0.4181818]]),
                         (True, [[0.2173913, -0.8275862], [-0.8275862, 0.1351351]])):
        model = tiny_model()
        hook = MLAHook(normalize_p=False, reference_compat=compat)
        hook.setup(model)
        hook.exp_count = 1
        ctx = types.SimpleNamespace(model=model, batch_idx=0, num_batches=4, pass_index=0)
        outputs = model.run({'audio': torch.tensor([[0.6, 0.8]])}, trainable=['audio'])
        hook.after_forward(ctx, outputs, {'gt_label': torch.tensor([0])})
        head(model).weight.grad = torch.eye(2)
        hook.edit_grads(ctx)
        close(hook.P, want)
        close(head(model).weight.grad, want)


# --------------------------------------------------------------------------- order switch
def test_order_switch():
    # project_then_update projects with the P of earlier sub-steps, then updates it.
    # Call 1 (r = [1, 0], alpha = 0.1): G unchanged (P = I), P -> P^1 = diag(0.090536, 0.995893)
    # Call 2 (r = [0, 1], alpha = 0.1^1.5): G P^1^T, then P -> P^2 = diag(0.947195, 0.320659)
    # update_then_project on the same calls: G P^1^T, then G P^2^T.
    G = torch.tensor([[1., 1.], [2., -1.]], dtype=torch.float64)
    r1 = torch.tensor([1., 0.], dtype=torch.float64)
    r2 = torch.tensor([0., 1.], dtype=torch.float64)
    P = torch.eye(2, dtype=torch.float64)
    P1, g1, _ = hgm_step(P, r1, hgm_alpha(0, 10), G, order='project_then_update')
    close(g1, G)
    close(P1, [[0.0905357, 0], [0, 0.9958932]])
    P2, g2, _ = hgm_step(P1, r2, hgm_alpha(5, 10), G, order='project_then_update')
    close(g2, [[0.0905357, 0.9958932], [0.1810714, -0.9958932]])
    close(P2, [[0.9471951, 0], [0, 0.3206592]])
    P1, g1, _ = hgm_step(P, r1, hgm_alpha(0, 10), G)
    close(g1, [[0.0905357, 0.9958932], [0.1810714, -0.9958932]])
    _, g2, _ = hgm_step(P1, r2, hgm_alpha(5, 10), G)
    close(g2, [[0.9471951, 0.3206592], [1.8943902, -0.3206592]])


def test_order_switch_on_the_tiny_model():
    # project_then_update: the visual step is projected with P = I (unchanged: W[:, 1] =
    # +-0.268941, as without HGM) and P becomes diag(0.995893, 0.090536) afterwards.
    model = tiny_model()
    hook = MLAHook(order='project_then_update')
    hook.setup(model)
    Stepper(model, [hook], lr=1.0)(*tiny_batch())
    close(head(model).weight, [[0.5, 0.2689414], [-0.5, -0.2689414]])
    close(hook.P, [[0.9958932, 0], [0, 0.0905357]])


# --------------------------------------------------------------------------- switches, checks
def test_projection_none_is_the_released_code():
    model = tiny_model()
    hook = MLAHook(projection='none')
    hook.setup(model)
    Stepper(model, [hook], lr=1.0)(*tiny_batch())
    close(head(model).weight, [[0.5, 0.2689414], [-0.5, -0.2689414]])
    assert torch.equal(hook.P, torch.eye(2, dtype=torch.float64))
    assert hook.exp_count == 2


def test_legacy_zero_grad_gives_earlier_encoders_an_extra_sgd_step():
    # SGD lr 1, weight decay 0.1. Audio step: W_a's gradient is 0 (the head is 0), so
    # W_a = I - 0.1 I = 0.9 I. Visual step: by default the audio encoder has no gradient and
    # stays 0.9 I; under torch 1.8's zero_grad it holds zeros, so weight decay acts again:
    # 0.9 * 0.9 = 0.81. The visual encoder is trained last and gets no extra step:
    # W_v = [[1, 0.268941], [0, 1]] - 0.1 I = [[0.9, 0.268941], [0, 0.9]] in both.
    for compat, w_a in ((True, 0.9), ('legacy_zero_grad', 0.81)):
        model = tiny_model()
        hook = MLAHook(projection='none', reference_compat=compat)
        hook.setup(model)
        stepper = Stepper(model, [hook], lr=1.0, weight_decay=0.1)
        grads = capture_step_grads(stepper.optim_wrapper, model)
        stepper(*tiny_batch())
        close(model.encoders['audio'].layers[0].weight, [[w_a, 0], [0, w_a]])
        close(model.encoders['visual'].layers[0].weight, [[0.9, 0.2689414], [0, 0.9]])
        close(head(model).weight, [[0.45, 0.2689414], [-0.45, -0.2689414]])
        audio_grad = grads['encoders.audio.layers.0.weight']  # at the visual step
        assert (audio_grad is None) == (compat is True)
        if audio_grad is not None:
            assert torch.equal(audio_grad, torch.zeros(2, 2))


def test_sub_steps_refuse_gradient_accumulation():
    model = tiny_model()
    hook = MLAHook()
    hook.setup(model)
    with pytest.raises(ValueError, match='accumulative_counts=2'):
        Stepper(model, [hook], accumulative_counts=2)(*tiny_batch())
    runner = types.SimpleNamespace(
        train_loop=types.SimpleNamespace(runs_balance_step=True), model=model,
        optim_wrapper=types.SimpleNamespace(_accumulative_counts=2))
    with pytest.raises(ValueError, match='MLAHook .*optim_wrapper.accumulative_counts=2'):
        hook.before_train(runner)


def test_hook_errors_name_the_problem():
    concat = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=2, out_channels=2),
                      visual=dict(type='MLPEncoder', in_channels=2, out_channels=2)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=2)))
    with pytest.raises(TypeError, match="SharedHeadFusion.*the model has ConcatFusion"):
        MLAHook().setup(concat)
    for kw, match in ((dict(projection='ogm'), "projection='ogm'"),
                      (dict(order='random'), "order='random'"),
                      (dict(reference_compat='yes'), "reference_compat='yes'"),
                      (dict(reference_compat=1), 'reference_compat=1')):
        with pytest.raises(ValueError, match=match):
            MLAHook(**kw)


def test_plan_is_one_sub_step_per_modality_in_config_order():
    model = tiny_model()
    plans = MLAHook().plan_passes(types.SimpleNamespace(model=model))
    assert [(p.trainable, p.base_loss, p.logits, p.name) for p in plans] == [
        (['audio'], False, 'analytic', 'audio'), (['visual'], False, 'analytic', 'visual')]


# --------------------------------------------------------------------------- DDP
GLOBAL_BATCH = 8


def _ddp_step(rank, world, out_dir):
    """Two MLA iterations (4 sub-steps, 3 projected) on this rank's shard of the batch."""
    from mmengine.model import MMDistributedDataParallel
    result = {}
    model = mlp_model()
    hook = MLAHook()
    hook.setup(model)
    if world > 1:  # a DDP wrapper that does not look for unused parameters is refused
        plain_ddp = MMDistributedDataParallel(copy.deepcopy(model), device_ids=None)
        runner = types.SimpleNamespace(
            train_loop=types.SimpleNamespace(runs_balance_step=True), model=plain_ddp,
            optim_wrapper=types.SimpleNamespace(_accumulative_counts=1))
        try:
            hook.before_train(runner)
        except ValueError as err:
            result['error'] = str(err)
    net = (MMDistributedDataParallel(model, device_ids=None, find_unused_parameters=True)
           if world > 1 else model)
    stepper = Stepper(model, [hook], net=net, lr=0.1, momentum=0.9, weight_decay=1e-4)
    rs = []
    edit = hook.edit_grads

    def record(ctx):
        rs.append(None if hook.last_r is None else hook.last_r.tolist())
        edit(ctx)

    hook.edit_grads = record
    shard = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    for it in range(2):
        inputs, samples = mlp_batch(10 + it, GLOBAL_BATCH)
        inputs = {m: x[shard] for m, x in inputs.items()}
        samples = {k: v[shard] for k, v in samples.items()}
        stepper(inputs, samples, it=it, batch_idx=it, num_batches=2)
    result.update(r=rs, P=hook.P.flatten().tolist(),
                  params={n: p.detach().flatten().tolist() for n, p in model.named_parameters()})
    with open(os.path.join(out_dir, f'mla_rank{rank}_of{world}.json'), 'w') as f:
        json.dump(result, f)


def test_mla_under_ddp_equals_one_process_on_the_global_batch(tmp_path):
    run_gloo(_ddp_step, str(tmp_path))
    _ddp_step(0, 1, str(tmp_path))
    r0, r1, single = (json.loads((tmp_path / f'mla_{name}.json').read_text())
                      for name in ('rank0_of2', 'rank1_of2', 'rank0_of1'))
    assert 'find_unused_parameters=True' in r0['error']
    r0.pop('error'), r1.pop('error')
    assert r0 == r1  # replicas agree bit for bit: r, P and every parameter
    assert single['r'][0] is None and all(r is not None for r in single['r'][1:])
    for got, want in zip(r0['r'][1:], single['r'][1:]):  # r is the global batch mean
        close(got, want, rtol=1e-6, atol=1e-7)
    close(r0['P'], single['P'], rtol=1e-5, atol=1e-6)
    for name, want in single['params'].items():
        close(r0['params'][name], want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- Runner, resume
MLA_CONFIG = 'configs/mla/mla_r18_avdigits.py'
TRACKED = ('audio/loss_mla', 'visual/loss_mla', 'balance/mla/p_norm_audio',
           'balance/mla/p_norm_visual', 'balance/mla/alpha')


def _train(work_dir, *options, launcher_args=()):
    import sys

    from test_tools.e2e import SMALL, run
    run([sys.executable, 'tools/train.py', MLA_CONFIG, '--work-dir', str(work_dir),
         *launcher_args, '--cfg-options', *SMALL, *options])


def _tracked(work_dir):
    """``{(epoch, iter): {key: value}}`` of the MLA entries of every scalars.json."""
    out = {}
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if 'audio/loss_mla' in rec:
                out[(rec['epoch'], rec['iter'])] = {k: rec.get(k) for k in TRACKED}
    return out


@pytest.mark.slow
def test_runner_resume_restores_P_and_exp_count(tmp_path):
    full, part = tmp_path / 'full', tmp_path / 'part'
    _train(full, 'train_cfg.max_epochs=2', launcher_args=('--no-test', ))
    _train(part, 'train_cfg.max_epochs=1', launcher_args=('--no-test', ))
    from mmbal.utils import safe_checkpoint_loading
    with safe_checkpoint_loading():
        state = torch.load(part / 'epoch_1.pth', weights_only=True)['balance_hooks']['mla']
    assert state['exp_count'] == 12  # 6 batches x 2 sub-steps
    assert state['P'].shape == (64, 64)  # width-8 ResNet18 features
    _train(part, 'train_cfg.max_epochs=2',
           launcher_args=('--resume', str(part / 'epoch_1.pth'), '--no-test'))
    want, got = _tracked(full), _tracked(part)
    epoch2 = {k: v for k, v in want.items() if k[0] == 2}
    assert len(epoch2) == 6
    assert all(v['balance/mla/p_norm_audio'] is not None for v in epoch2.values())  # HGM ran
    assert {k: got[k] for k in epoch2} == epoch2
