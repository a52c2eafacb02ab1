"""MMCosine's CosineFusion against values computed by hand (docs/methods/mmcosine.md)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmbal.registry import MODELS

Z_A, W_A = [3., 4.], [[1., 0.], [0., 2.]]
Z_V, W_V = [1., 0.], [[1., 1.], [-1., 1.]]
FUSED = [13.071068, 0.928932]  # 10 * ([0.6, 0.8] + [0.707107, -0.707107])


def fusion(scale=10.0, reference_compat=False, dims=(2, 2), names=('audio', 'visual')):
    neck = MODELS.build(dict(type='CosineFusion', in_channels=dict(zip(names, dims)),
                             num_classes=2, scale=scale, reference_compat=reference_compat))
    if dims == (2, 2):
        with torch.no_grad():
            neck.fc.weight.copy_(torch.tensor([a + v for a, v in zip(W_A, W_V)]))
    return neck


def features(z_a=Z_A, z_v=Z_V, grad=False):
    feats = {'audio': torch.tensor([z_a]), 'visual': torch.tensor([z_v])}
    return {m: z.requires_grad_(grad) for m, z in feats.items()}


def test_hand_computed_logits_and_loss():
    neck = fusion()
    # W_cat = [W_a | W_v]: the class rows of each block are normalised on their own
    assert neck.fc.weight.tolist() == [[1., 0., 1., 1.], [0., 2., -1., 1.]]
    assert neck.fc.bias is None and 'eval_bias' not in dict(neck.named_buffers())
    feats = features()
    s = neck.analytic_logits(feats)
    torch.testing.assert_close(s['audio'], torch.tensor([[6.0, 8.0]]))
    torch.testing.assert_close(s['visual'], torch.tensor([[7.071068, -7.071068]]))
    f = neck(feats)
    torch.testing.assert_close(f, torch.tensor([FUSED]))
    assert F.cross_entropy(f, torch.tensor([1])).item() == pytest.approx(12.142141, abs=1e-5)
    assert F.cross_entropy(f, torch.tensor([0])).item() == pytest.approx(5.3644e-6, rel=1e-3)


def test_logits_are_invariant_to_feature_and_weight_norms():
    neck = fusion()
    before = neck(features())
    with torch.no_grad():
        neck.fc.weight[:, :2] *= 7  # W_a scaled
    torch.testing.assert_close(neck(features(z_a=[0.3, 0.4])), before)  # z_a scaled by 0.1
    compat = fusion(reference_compat=True)
    compat.eval_bias.fill_(5.0)  # a bias never enters the trained (cosine) logits
    torch.testing.assert_close(compat.train()(features()), before)


def test_zero_feature_gives_zero_cosine_and_finite_gradients():
    neck = fusion()
    feats = features(z_a=[0., 0.], grad=True)
    s = neck.analytic_logits(feats)
    assert s['audio'].tolist() == [[0., 0.]]
    f = neck(feats)
    F.cross_entropy(f, torch.tensor([1])).backward()
    assert all(torch.isfinite(z.grad).all() for z in feats.values())
    assert torch.isfinite(neck.fc.weight.grad).all()


def test_feature_gradient_is_hand_computed_and_orthogonal_to_the_feature():
    neck = fusion()
    feats = features(grad=True)
    F.cross_entropy(neck(feats), torch.tensor([1])).backward()
    grad = feats['audio'].grad[0]
    torch.testing.assert_close(grad, torch.tensor([2.239988, -1.679991]))
    assert torch.dot(grad, feats['audio'].detach()[0]).item() == pytest.approx(0, abs=1e-5)


def test_reference_compat_evaluates_with_the_raw_linear_layer_and_its_bias():
    neck = fusion(reference_compat=True)
    neck.eval_bias.copy_(torch.tensor([0.3, -0.3]))
    assert [n for n, _ in neck.named_parameters()] == ['fc.weight']  # the bias is not trained
    neck.eval()
    raw = neck(features())
    torch.testing.assert_close(raw, torch.tensor([[4.3, 6.7]]))
    assert raw.argmax(1).item() == 1
    # the per-modality logits stay cosine, and so does the paper's evaluation
    torch.testing.assert_close(sum(neck.analytic_logits(features()).values()),
                               torch.tensor([FUSED]))
    assert fusion().eval()(features()).argmax(1).item() == 0
    assert neck.train()(features()).argmax(1).item() == 0


def test_compat_bias_has_the_linear_layer_init_and_the_weight_does_not_depend_on_compat():
    torch.manual_seed(3)
    paper = fusion(dims=(3, 5))
    torch.manual_seed(3)
    compat = fusion(dims=(3, 5), reference_compat=True)
    torch.manual_seed(3)
    linear = torch.nn.Linear(8, 2)
    assert torch.equal(paper.fc.weight, linear.weight)
    assert torch.equal(compat.fc.weight, linear.weight)
    assert torch.equal(compat.eval_bias, linear.bias)


@pytest.mark.parametrize('names,dims', [(('audio', 'visual'), (6, 4)),
                                        (('rgb', 'depth', 'ir'), (2, 3, 5))])
def test_classifier_with_cosine_fusion_sums_the_modality_terms(names, dims):
    encoders = {m: dict(type='MLPEncoder', in_channels=3, out_channels=d)
                for m, d in zip(names, dims)}
    model = MODELS.build(dict(type='MultimodalClassifier', encoders=encoders,
                              fusion=dict(type='CosineFusion', num_classes=5, scale=15),
                              head=None))
    torch.manual_seed(0)
    out = model.run({m: torch.randn(4, 3) for m in names})
    analytic, probe = out.logits('analytic'), out.logits('probe')
    torch.testing.assert_close(sum(analytic.values()), out.fused_logits)
    for m in names:
        torch.testing.assert_close(probe[m], analytic[m])
        assert analytic[m].abs().max() <= 15 + 1e-5  # |s cos| <= s
    assert model.num_classes == 5


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r'CosineFusion: scale=0; expected a finite number > 0'):
        fusion(scale=0)
    with pytest.raises(ValueError, match=r'scale=nan'):
        fusion(scale=math.nan)
    with pytest.raises(ValueError, match=r"reference_compat must be True or False, got 'yes'"):
        fusion(reference_compat='yes')
    with pytest.raises(ValueError, match=r'num_classes=0; expected an int >= 1'):
        MODELS.build(dict(type='CosineFusion', in_channels=dict(a=2), num_classes=0))
    with pytest.raises(ValueError, match='CosineFusion ends in class logits; set head=None'):
        MODELS.build(dict(type='MultimodalClassifier',
                          encoders=dict(a=dict(type='MLPEncoder', in_channels=3,
                                               out_channels=2)),
                          fusion=dict(type='CosineFusion', num_classes=2),
                          head=dict(type='LinearClsHead', num_classes=2)))
