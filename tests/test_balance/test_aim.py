"""AIM's functional core: eqs. 3-15 against hand computations on small tensors."""
import math

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from mmbal.balance.aim import (BlockParams, DecouplingModule, DenseMap, DepthAdaptivePrototypes,
                               KroneckerMap, block_loss, block_score, block_weights, build_map,
                               carried_logits, class_mean_inputs, depth_coefficient, depth_loss,
                               frozen_logits, frozen_share, map_size, modulation_loss, pam_terms,
                               prototype_logits)
from mmbal.models.backbones.mlp import MLPEncoder
from mmbal.models.backbones.resnet import ResNet18
from mmbal.models.classifiers import MultimodalClassifier

pytestmark = pytest.mark.usefixtures('one_thread')
D = torch.float64


def softmax_list(values):
    e = [math.exp(v) for v in values]
    return [x / sum(e) for x in e]


def tiny_resnet(seed: int = 0) -> ResNet18:
    torch.manual_seed(seed)
    return ResNet18(in_channels=1, base_channels=4).double()


def buffers_of(module: nn.Module):
    return {n: b.clone() for n, b in module.named_buffers()}


# --- eqs. 9-10: logits, score, loss ------------------------------------------------------------
def test_prototype_logits_score_loss_by_hand():
    # Two samples of per-sample shape (1, 2); two prototypes of the same shape.
    h = torch.tensor([[[3., 4.]], [[1., 2.]]], dtype=D, requires_grad=True)
    protos = torch.tensor([[[0., 0.]], [[1., 1.]]], dtype=D)
    y = torch.tensor([0, 1])
    logits = prototype_logits(h, protos)
    # distances: |(3,4)-(0,0)| = 5, |(3,4)-(1,1)| = sqrt(13),
    #            |(1,2)-(0,0)| = sqrt(5), |(1,2)-(1,1)| = 1
    expected = torch.tensor([[-5., -math.sqrt(13)], [-math.sqrt(5), -1.]], dtype=D)
    torch.testing.assert_close(logits, expected)
    p00 = softmax_list([-5., -math.sqrt(13)])[0]
    p11 = softmax_list([-math.sqrt(5), -1.])[1]
    s = block_score(logits, y)
    assert s.dtype == D and not s.requires_grad
    assert s.item() == pytest.approx((p00 + p11) / 2, rel=1e-12)
    loss = block_loss(logits, y)
    assert loss.item() == pytest.approx(-(math.log(p00) + math.log(p11)) / 2, rel=1e-12)
    loss.backward()
    assert h.grad is not None and h.grad.abs().sum() > 0


def test_prototype_logits_pool_switch_and_shape_error():
    h = torch.tensor([[[1., 3.]], [[2., 2.]]], dtype=D)           # (B=2, C=1, L=2)
    protos = torch.tensor([[[0., 0.]], [[4., 6.]]], dtype=D)
    pooled = prototype_logits(h, protos, pool=lambda t: t.mean(dim=2))  # -> (B, 1)
    # means: samples 2 and 2, prototypes 0 and 5: distances |2-0| = 2, |2-5| = 3
    torch.testing.assert_close(pooled, torch.tensor([[-2., -3.], [-2., -3.]], dtype=D))
    with pytest.raises(ValueError, match=r'block output per sample \(1, 2\).*\(1, 3\)'):
        prototype_logits(h, torch.zeros(2, 1, 3, dtype=D))


# --- eqs. 11-12, 14-15: weights, depth loss, alpha ---------------------------------------------
def test_weights_depth_loss_and_alpha_by_hand():
    s = torch.tensor([0.2, 0.6], dtype=D)
    s_aux = torch.tensor([0.4, 0.1], dtype=D)
    rho, rho_aux = block_weights(s, s_aux)
    w = softmax_list([-0.2, -0.6, -0.4, -0.1])
    assert rho.tolist() == pytest.approx(w[:2], rel=1e-12)
    assert rho_aux.tolist() == pytest.approx(w[2:], rel=1e-12)
    losses = [torch.tensor(1.5, dtype=D), torch.tensor(0.5, dtype=D)]
    aux_losses = [torch.tensor(2.0, dtype=D), torch.tensor(3.0, dtype=D)]
    l_d = depth_loss(losses, rho, aux_losses, rho_aux)
    assert l_d.item() == pytest.approx(w[0] * 1.5 + w[1] * 0.5 + w[2] * 2.0 + w[3] * 3.0,
                                       rel=1e-12)
    # alpha: mean 0.4, population std 0.2 (the unbiased one would be 0.2 * sqrt(2)).
    alpha = depth_coefficient(s)
    assert alpha.item() == pytest.approx(0.2 / (0.4 + 1e-8), rel=1e-12)
    # Three modalities: mean 0.3, population variance (0.04 + 0.01 + 0.09) / 3.
    alpha3 = depth_coefficient(torch.tensor([0.1, 0.2, 0.6], dtype=D))
    assert alpha3.item() == pytest.approx(math.sqrt(0.14 / 3) / (0.3 + 1e-8), rel=1e-12)
    # L_mod = sum_d alpha_d L_d.
    l_mod = modulation_loss([alpha, alpha3], [l_d, torch.tensor(4.0, dtype=D)])
    assert l_mod.item() == pytest.approx(alpha.item() * l_d.item() + alpha3.item() * 4.0,
                                         rel=1e-12)


def test_ablations_pam_off_and_dam_off():
    s = torch.tensor([0.2, 0.6], dtype=D)
    rho, rho_aux = block_weights(s)
    assert rho_aux is None
    assert rho.tolist() == pytest.approx(softmax_list([-0.2, -0.6]), rel=1e-12)
    losses = [torch.tensor(1.5, dtype=D), torch.tensor(0.5, dtype=D)]
    w = softmax_list([-0.2, -0.6])
    assert depth_loss(losses, rho).item() == pytest.approx(w[0] * 1.5 + w[1] * 0.5, rel=1e-12)
    assert depth_coefficient(s, dam=False).item() == 1.0


def test_weight_and_loss_inputs_are_checked():
    with pytest.raises(ValueError, match='2 original scores but 3 auxiliary'):
        block_weights(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match='give both aux_losses and rho_aux'):
        depth_loss([torch.tensor(1.)], torch.ones(1), aux_losses=[torch.tensor(1.)])
    with pytest.raises(ValueError, match='2 coefficients for 1 depth losses'):
        modulation_loss([torch.tensor(1.)] * 2, [torch.tensor(1.)])


def test_coefficients_are_detached():
    s = torch.tensor([0.2, 0.6], dtype=D, requires_grad=True)
    rho, rho_aux = block_weights(s, s * 2)
    assert not rho.requires_grad and not rho_aux.requires_grad
    assert not depth_coefficient(s).requires_grad


# --- PAM: the decoupling map ---------------------------------------------------------------------
def hand_module() -> DecouplingModule:
    """N = 3 parameters, latent 2, dense maps set by hand; the mask is sigmoid(0) = 0.5."""
    module = DecouplingModule(3, latent=2, pdm_map='dense').double()
    with torch.no_grad():
        module.encoder.linear.weight.copy_(torch.tensor([[1., 0., 0.], [0., 1., 0.]]))
        module.encoder.linear.bias.zero_()
        module.mask.weight.zero_()
        module.mask.bias.zero_()
        module.decoder.linear.weight.copy_(torch.tensor([[1., 0.], [0., 1.], [0., 0.]]))
        module.decoder.linear.bias.copy_(torch.tensor([0., 0., 0.5]))
    return module


def test_reconstruction_and_complementary_loss_by_hand():
    # One stage Linear(2, 1): theta = (w1, w2, b) = (1, 2, 3).
    enc = MLPEncoder(in_channels=2, out_channels=1, hidden_channels=(1, )).double()
    with torch.no_grad():
        enc.layers[0].weight.copy_(torch.tensor([[1., 2.]]))
        enc.layers[0].bias.fill_(3.)
    block = BlockParams(enc, 0)
    assert block.flatten().tolist() == [1., 2., 3.]
    x = torch.tensor([[1., 1.], [2., 0.]], dtype=D)
    y = torch.tensor([0, 1])
    out = pam_terms(hand_module(), block, x, y, lambda h: torch.cat([h, -h], dim=1))
    # z = (1, 2); Psi(z) = (1, 2, 0.5): L_re = (3 - 0.5)^2.
    assert out['loss_re'].item() == pytest.approx(6.25, rel=1e-12)
    # w = 0.5: theta_g = Psi(z / 2) = (0.5, 1, 0.5); the complementary Linear then ReLU
    # gives h = (0.5 + 1 + 0.5, 1 + 0 + 0.5) = (2, 1.5); logits (h, -h).
    p0 = softmax_list([2., -2.])[0]
    p1 = softmax_list([1.5, -1.5])[1]
    assert out['loss_g'].item() == pytest.approx(-(math.log(p0) + math.log(p1)) / 2, rel=1e-12)
    assert out['loss_pdm'].item() == pytest.approx(out['loss_g'].item() + 6.25, rel=1e-12)
    assert out['mask_mean'].item() == 0.5
    # theta_b = Psi(z * w) is the same here: the auxiliary logits are (h, -h) too.
    torch.testing.assert_close(out['aux_logits'],
                               torch.tensor([[2., -2.], [1.5, -1.5]], dtype=D))


def test_kronecker_map_equals_dense_map_with_its_weights():
    torch.manual_seed(1)
    kron = KroneckerMap(37, 13, rank=3).double()
    dense = DenseMap(37, 13).double()
    with torch.no_grad():
        dense.linear.weight.copy_(kron.weight_matrix())
        dense.linear.bias.copy_(kron.bias)
    x = torch.randn(37, dtype=D)
    torch.testing.assert_close(kron(x), dense(x), rtol=0, atol=1e-13)
    # The weight is a sum of Kronecker products: W[i*a2 + j, k*n2 + l] = sum_r A_r[i,k] B_r[j,l].
    n2, a2 = kron.in_grid[1], kron.out_grid[1]
    W = kron.weight_matrix()
    i, j, k, l = 1, 2, 3, 4
    expected = sum(kron.A[r, i, k] * kron.B[r, j, l] for r in range(3))
    assert W[i * a2 + j, k * n2 + l].item() == pytest.approx(expected.item(), rel=1e-12)


def test_structured_module_equals_dense_module_on_a_block():
    enc = tiny_resnet()
    block = BlockParams(enc, 0)
    torch.manual_seed(2)
    kron = DecouplingModule(block.num_params, pdm_map='kron', rank=2).double()
    dense = DecouplingModule(block.num_params, pdm_map='dense').double()
    with torch.no_grad():
        for name in ('encoder', 'decoder'):
            getattr(dense, name).linear.weight.copy_(getattr(kron, name).weight_matrix())
            getattr(dense, name).linear.bias.copy_(getattr(kron, name).bias)
        dense.mask.load_state_dict(kron.mask.state_dict())
    assert kron.latent == dense.latent == 512
    x = torch.randn(3, 1, 16, 16, dtype=D)
    y = torch.tensor([0, 1, 0])
    h_in = enc.prepare(x)
    protos = torch.randn(2, 4, 4, 4, dtype=D)
    outs = [pam_terms(mod, block, h_in, y, lambda h: prototype_logits(h, protos))
            for mod in (kron, dense)]
    for key in ('aux_logits', 'loss_g', 'loss_re', 'mask_mean'):
        torch.testing.assert_close(outs[0][key], outs[1][key], rtol=1e-10, atol=1e-10)


def test_map_size_counts_the_built_modules():
    for kind, n in (('kron', 812), ('kron', 33088), ('dense', 812)):
        module = DecouplingModule(n, pdm_map=kind, rank=4)
        count, nbytes = map_size(n, pdm_map=kind, rank=4)
        assert count == sum(p.numel() for p in module.parameters())
        assert nbytes == 4 * count
    with pytest.raises(ValueError, match=r"pdm_map='conv'; expected one of \('kron', 'dense'\)"):
        build_map('conv', 3, 3)
    with pytest.raises(ValueError, match='rank=0'):
        KroneckerMap(3, 3, rank=0)


def test_block_params_flatten_in_stage_order_and_check_shapes():
    enc = tiny_resnet()
    block = BlockParams(enc, 1)
    params = list(enc.stage_parameters(1))
    assert block.num_params == sum(p.numel() for _, p in params)
    theta = block.flatten()
    torch.testing.assert_close(theta, torch.cat([p.reshape(-1) for _, p in params]))
    for (name, p), (name2, q) in zip(params, block.unflatten(theta).items()):
        assert name == name2 and torch.equal(p, q)
    with pytest.raises(ValueError, match=r'theta of shape \(5,\); stage 1 has'):
        block.unflatten(torch.zeros(5, dtype=D))
    with pytest.raises(ValueError, match='the module maps 7 parameters but stage 1'):
        pam_terms(DecouplingModule(7, latent=4, pdm_map='dense'), block,
                  torch.zeros(1), torch.zeros(1), lambda h: h)


# --- eq. 13, buffers, gradient routing -----------------------------------------------------------
def test_auxiliary_gradient_is_jacobian_transpose_times_loss_gradient():
    torch.manual_seed(3)
    enc = MLPEncoder(in_channels=3, out_channels=2, hidden_channels=(2, )).double()
    block = BlockParams(enc, 0)                      # Linear(3, 2) + ReLU: N = 8
    module = DecouplingModule(block.num_params).double()
    x = torch.randn(4, 3, dtype=D)
    y = torch.tensor([0, 1, 1, 0])
    protos = torch.randn(2, 2, dtype=D)
    rho_aux = 0.37

    def aux_loss(theta_b):
        return block_loss(prototype_logits(block.run(x, theta_b), protos), y)

    out = pam_terms(module, block, x, y, lambda h: prototype_logits(h, protos))
    (rho_aux * block_loss(out['aux_logits'], y)).backward()
    got = torch.cat([p.grad.reshape(-1) for p in block.live()])
    theta = block.flatten().detach()
    J = jacobian(module.auxiliary, theta)            # (N, N): d theta_b / d theta
    theta_b = module.auxiliary(theta).detach().requires_grad_()
    g_b, = torch.autograd.grad(aux_loss(theta_b), theta_b)
    torch.testing.assert_close(got, rho_aux * (J.T @ g_b), rtol=1e-10, atol=1e-12)
    assert got.abs().sum() > 0
    # The auxiliary loss trains the block, never the module.
    assert all(p.grad is None for p in module.parameters())


def test_functional_blocks_leave_bn_running_stats_unchanged():
    enc = tiny_resnet().train()
    block = BlockParams(enc, 1)
    module = DecouplingModule(block.num_params).double()
    h_in = enc.forward_stages(torch.randn(3, 1, 16, 16, dtype=D), 1)[0]
    before = buffers_of(enc)
    protos = torch.randn(2, 8, 2, 2, dtype=D)
    pam_terms(module, block, h_in, torch.tensor([0, 1, 0]), lambda h: prototype_logits(h, protos))
    after = buffers_of(enc)
    assert all(torch.equal(before[n], after[n]) for n in before)
    # Without the cloned buffers the same functional call would move them.
    enc.run_stage(1, h_in, block.unflatten(module(block.flatten().detach())['theta_b']))
    moved = buffers_of(enc)
    assert any(not torch.equal(after[n], moved[n]) for n in after)


def test_pdm_loss_trains_only_the_module():
    enc = tiny_resnet().train()
    block = BlockParams(enc, 1)
    module = DecouplingModule(block.num_params).double()
    x = torch.randn(3, 1, 16, 16, dtype=D)
    h_in = enc.forward_stages(x, 1)[0]
    h_in.retain_grad()
    protos = torch.randn(2, 8, 2, 2, dtype=D)
    out = pam_terms(module, block, h_in, torch.tensor([0, 1, 0]),
                    lambda h: prototype_logits(h, protos))
    out['loss_pdm'].backward()
    assert all(p.grad is None for p in enc.parameters())
    assert h_in.grad is None
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --- score_source='label' ------------------------------------------------------------------------
def test_carried_logits_equal_the_full_forward():
    torch.manual_seed(4)
    enc = MLPEncoder(in_channels=5, out_channels=3, hidden_channels=(4, 4)).double()
    head = nn.Linear(3, 2).double()
    x = torch.randn(6, 5, dtype=D)
    h0 = enc.forward_stages(x, 1)[0]
    torch.testing.assert_close(carried_logits(enc, 0, h0, head), head(enc(x)))
    h2 = enc.forward_stages(x)[-1]
    torch.testing.assert_close(carried_logits(enc, 2, h2, head), head(h2))


def test_carried_logits_keep_bn_stats_and_frozen_trains_nothing_downstream():
    enc = tiny_resnet().train()
    head = nn.Linear(32, 2).double()
    x = torch.randn(3, 1, 16, 16, dtype=D)
    h0 = enc.forward_stages(x, 1)[0].detach().requires_grad_()
    before = buffers_of(enc)
    live = carried_logits(enc, 0, h0, head)
    assert all(torch.equal(before[n], b) for n, b in enc.named_buffers())
    # In train mode the carried pass normalises with the batch statistics, as the forward does.
    torch.testing.assert_close(live, head(enc.pool(enc.forward_stages(x)[-1])))
    enc.zero_grad(set_to_none=True)
    frozen = carried_logits(enc, 0, h0, lambda z: z @ head.weight.detach().T, frozen=True)
    frozen.sum().backward()
    assert all(p.grad is None for p in enc.parameters()) and h0.grad is not None


def test_frozen_share_is_the_analytic_logit_and_trains_only_the_feature():
    torch.manual_seed(6)
    model = MultimodalClassifier(
        encoders=dict(a=dict(type='MLPEncoder', in_channels=3, out_channels=2),
                      b=dict(type='MLPEncoder', in_channels=3, out_channels=4)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=3))
    z = torch.randn(5, 4, requires_grad=True)
    got = frozen_share(model, 'b')(z)
    # concat: s_b = W_b z_b + bias / M, W_b the head's columns 2..5.
    w, bias = model.head.fc.weight, model.head.fc.bias
    torch.testing.assert_close(got, z @ w[:, 2:].T + bias / 2)
    got.sum().backward()
    assert z.grad is not None and all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="score_source='label' needs the analytic .* Stub"):
        frozen_share(type('Stub', (), {'fusion': type('StubFusion', (), {})()})(), 'a')


# --- DAP -----------------------------------------------------------------------------------------
def test_depth_prototype_shapes_and_eval_mode():
    enc = tiny_resnet().train()
    dap = DepthAdaptivePrototypes({'audio': (1, 16, 16), 'visual': (1, 2, 16, 16)}, 3).double()
    before = buffers_of(enc)
    shapes = [tuple(p.shape) for p in dap.depth_prototypes('audio', enc)]
    # H_0 = ceil(16 / 4) = 4, then 2, 1, 1; channels 4, 8, 16, 32.
    assert shapes == [(3, 4, 4, 4), (3, 8, 2, 2), (3, 16, 1, 1), (3, 32, 1, 1)]
    frames = [tuple(p.shape) for p in dap.depth_prototypes('visual', enc, upto=2)]
    assert frames == [(3, 2, 4, 4, 4), (3, 2, 8, 2, 2)]
    assert enc.training and all(torch.equal(before[n], b) for n, b in enc.named_buffers())
    assert not any(p.requires_grad for p in dap.depth_prototypes('audio', enc))
    mlp = MLPEncoder(in_channels=6, out_channels=3, hidden_channels=(5, 4)).double()
    dap_mlp = DepthAdaptivePrototypes({'feat': (6, )}, 4).double()
    assert [tuple(p.shape) for p in dap_mlp.depth_prototypes('feat', mlp)] == \
        [(4, 5), (4, 4), (4, 3)]


def hand_dap(model_input: str) -> DepthAdaptivePrototypes:
    dap = DepthAdaptivePrototypes({'a': (2, )}, 2, model_input=model_input).double()
    with torch.no_grad():
        dap.prototypes['a'].copy_(torch.tensor([[1., 0.], [0., 2.]]))
        dap.decoders['a'].weight.copy_(torch.tensor([[2., 0.], [0., 1.]]))
        dap.decoders['a'].bias.copy_(torch.tensor([0., 1.]))
    return dap


@pytest.mark.parametrize('model_input, seen', [('raw', [[1., 0.], [0., 2.]]),
                                               ('decoded', [[2., 1.], [0., 3.]])])
def test_dap_losses_by_hand(model_input, seen):
    dap = hand_dap(model_input)
    means = {'a': torch.tensor([[1., 1.], [0., 0.]], dtype=D)}
    out = dap.losses(lambda inputs: inputs['a'], means)      # logits = the input itself
    p0 = softmax_list(seen[0])[0]
    p1 = softmax_list(seen[1])[1]
    assert out['loss_cls'].item() == pytest.approx(-(math.log(p0) + math.log(p1)) / 2, rel=1e-12)
    # decoded = (2, 1), (0, 3); minus the means: (1, 0), (0, 3) -> 1 + 9 = 10, over M K = 2.
    assert out['loss_r'].item() == pytest.approx(5.0, rel=1e-12)
    assert out['loss'].item() == pytest.approx(out['loss_cls'].item() + 5.0, rel=1e-12)


def test_dap_step_leaves_the_frozen_model_alone():
    torch.manual_seed(5)
    model = MultimodalClassifier(
        encoders=dict(audio=dict(type='ResNet18', in_channels=1, base_channels=4),
                      feat=dict(type='MLPEncoder', in_channels=6, out_channels=3,
                                hidden_channels=(5, ))),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=3))
    model.train()
    dap = DepthAdaptivePrototypes({'audio': (1, 16, 16), 'feat': (6, )}, 3)
    means = {'audio': torch.zeros(3, 1, 16, 16, dtype=D), 'feat': torch.zeros(3, 6, dtype=D)}
    before = buffers_of(model)
    out = dap.losses(lambda inputs: frozen_logits(model, inputs), means)
    out['loss'].backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dap.parameters())
    assert model.training and all(torch.equal(before[n], b) for n, b in model.named_buffers())


def test_dap_checks_its_arguments():
    with pytest.raises(ValueError, match="model_input='both'; expected one of"):
        DepthAdaptivePrototypes({'a': (2, )}, 2, model_input='both')
    with pytest.raises(ValueError, match='num_classes=1; expected an int >= 2'):
        DepthAdaptivePrototypes({'a': (2, )}, 1)
    dap = DepthAdaptivePrototypes({'a': (2, )}, 2)
    with pytest.raises(KeyError, match=r"no class means for \['a'\]"):
        dap.losses(lambda inputs: inputs['a'], {})
    with pytest.raises(ValueError, match=r"class means of 'a' have shape \(2, 3\); expected"):
        dap.losses(lambda inputs: inputs['a'], {'a': torch.zeros(2, 3)})


class MeanModel(nn.Module):
    """A model with mmbal's data preprocessor and modalities, for the dataset pass."""

    def __init__(self):
        super().__init__()
        from mmbal.models.data_preprocessors import MultimodalDataPreprocessor
        self.data_preprocessor = MultimodalDataPreprocessor()
        self.modalities = ['a', 'b']


def test_class_mean_inputs_by_hand():
    a = torch.tensor([[1., 2.], [3., 4.], [5., 6.], [7., 9.]])
    b = torch.tensor([[[1.]], [[2.]], [[4.]], [[8.]]])
    y = torch.tensor([0, 1, 0, 1])
    loader = [dict(inputs=dict(a=a[:3], b=b[:3]), data_samples=dict(gt_label=y[:3])),
              dict(inputs=dict(a=a[3:], b=b[3:]), data_samples=dict(gt_label=y[3:]))]
    means = class_mean_inputs(loader, MeanModel(), num_classes=2)
    # class 0: rows 0 and 2; class 1: rows 1 and 3.
    torch.testing.assert_close(means['a'], torch.tensor([[3., 4.], [5., 6.5]], dtype=D))
    torch.testing.assert_close(means['b'], torch.tensor([[[2.5]], [[5.]]], dtype=D))
    with pytest.raises(ValueError, match=r'classes \[2\] have no sample'):
        class_mean_inputs(loader, MeanModel(), num_classes=3)
    with pytest.raises(KeyError, match="lacks modality 'c'"):
        class_mean_inputs(loader, MeanModel(), num_classes=2, modalities=['c'])
    from mmbal.structures import pad_sequences
    ragged = [dict(inputs=dict(a=pad_sequences([torch.ones(2, 1), torch.ones(3, 1)]), b=b[:2]),
                   data_samples=dict(gt_label=y[:2]))]
    with pytest.raises(TypeError, match="'a' arrives as a PaddedSequence.*fixed-length"):
        class_mean_inputs(ragged, MeanModel(), num_classes=2)
