"""Fusion necks and the two per-modality logit modes of SPEC."""
import pytest
import torch
from torch import nn

from mmbal.registry import MODELS


def build(fusion, head=dict(type='LinearClsHead', num_classes=5), dims=(6, 4),
          names=('audio', 'visual'), **kwargs):
    encoders = {m: dict(type='MLPEncoder', in_channels=3, out_channels=d)
                for m, d in zip(names, dims)}
    return MODELS.build(dict(type='MultimodalClassifier', encoders=encoders, fusion=fusion,
                             head=head, **kwargs))


def batch(names=('audio', 'visual'), b=4):
    torch.manual_seed(0)
    return {m: torch.randn(b, 3) for m in names}


@pytest.mark.parametrize('names,dims', [(('audio', 'visual'), (6, 4)),
                                        (('rgb', 'depth', 'ir'), (2, 3, 5))])
def test_concat_analytic_logits_sum_to_fused(names, dims):
    model = build(dict(type='ConcatFusion'), dims=dims, names=names)
    out = model.run(batch(names))
    s = out.logits('analytic')
    assert list(s) == list(names)
    torch.testing.assert_close(sum(s.values()), out.fused_logits)


def test_concat_analytic_is_column_block_plus_bias_share():
    model = build(dict(type='ConcatFusion'))
    out = model.run(batch())
    w, b = model.head.fc.weight, model.head.fc.bias
    z_a, z_v = out.features['audio'], out.features['visual']
    s = out.logits('analytic')
    torch.testing.assert_close(s['audio'], z_a @ w[:, :6].T + b / 2)
    torch.testing.assert_close(s['visual'], z_v @ w[:, 6:].T + b / 2)


def test_concat_probe_is_column_block_plus_full_bias():
    model = build(dict(type='ConcatFusion'), modality_logits='probe')
    out = model.run(batch())
    w, b = model.head.fc.weight, model.head.fc.bias
    p = out.logits('probe')
    torch.testing.assert_close(p['audio'], out.features['audio'] @ w[:, :6].T + b)
    torch.testing.assert_close(p['visual'], out.features['visual'] @ w[:, 6:].T + b)


def test_sum_and_late_probes_are_their_own_branch():
    """SPEC "Clarifications": sum -> W_m z_m + b_m, late -> h_m(z_m) (the analytic logits),
    not the fusion with the partner zeroed (which adds b_other, or gives (h_m + b_other)/2)."""
    x = batch()
    model = build(dict(type='SumFusion', out_channels=5), head=None, modality_logits='probe')
    assert model.fusion.probe_is_branch
    with torch.no_grad():
        for proj in model.fusion.projections.values():
            proj.bias.uniform_(1.0, 2.0)  # biases far from 0: leaking one would show
    out = model.run(x)
    p, proj = out.logits('probe'), model.fusion.projections
    for m, other in (('audio', 'visual'), ('visual', 'audio')):
        z = out.features[m]
        assert torch.equal(p[m], proj[m](z))
        torch.testing.assert_close(p[m], z @ proj[m].weight.T + proj[m].bias)
        zeroed = model.classify({m: z, other: torch.zeros_like(out.features[other])})
        torch.testing.assert_close(zeroed, p[m] + proj[other].bias)  # what is avoided
    torch.testing.assert_close(p['audio'], out.logits('analytic')['audio'])

    model = build(dict(type='LateFusion', num_classes=5), head=None, modality_logits='probe')
    assert model.fusion.probe_is_branch
    with torch.no_grad():
        for h in model.fusion.heads.values():
            h.bias.uniform_(1.0, 2.0)
    out = model.run(x)
    p, heads = out.logits('probe'), model.fusion.heads
    for m, other in (('audio', 'visual'), ('visual', 'audio')):
        z = out.features[m]
        torch.testing.assert_close(p[m], z @ heads[m].weight.T + heads[m].bias)
        zeroed = model.classify({m: z, other: torch.zeros_like(out.features[other])})
        torch.testing.assert_close(zeroed, (p[m] + heads[other].bias) / 2)  # what is avoided
    assert torch.equal(p['visual'], out.logits('analytic')['visual'])


def test_sum_with_head_probe_is_its_branch_through_the_full_head():
    """Ours (SPEC names the headless sum): head(W_m z_m + b_m), the head's full bias."""
    model = build(dict(type='SumFusion', out_channels=7), modality_logits='probe')
    out = model.run(batch())
    p, proj, fc = out.logits('probe'), model.fusion.projections, model.head.fc
    for m in ('audio', 'visual'):
        branch = out.features[m] @ proj[m].weight.T + proj[m].bias
        torch.testing.assert_close(p[m], branch @ fc.weight.T + fc.bias)


def test_concat_and_multiplicative_fusions_keep_the_zeroed_partner_probe():
    assert not any(MODELS.get(f).probe_is_branch
                   for f in ('ConcatFusion', 'FiLMFusion', 'GatedFusion'))


def test_sum_without_head_is_the_reference_sum_model():
    model = build(dict(type='SumFusion', out_channels=5), head=None)
    out = model.run(batch())
    s = out.logits('analytic')
    proj = model.fusion.projections
    torch.testing.assert_close(s['audio'], proj['audio'](out.features['audio']))
    torch.testing.assert_close(s['visual'], proj['visual'](out.features['visual']))
    torch.testing.assert_close(s['audio'] + s['visual'], out.fused_logits)


def test_sum_with_linear_head_splits_head_bias():
    model = build(dict(type='SumFusion', out_channels=7))
    out = model.run(batch())
    s = out.logits('analytic')
    torch.testing.assert_close(s['audio'] + s['visual'], out.fused_logits)


def test_late_fusion_is_mean_of_unimodal_heads():
    model = build(dict(type='LateFusion', num_classes=5), head=None)
    out = model.run(batch())
    s = out.logits('analytic')
    torch.testing.assert_close((s['audio'] + s['visual']) / 2, out.fused_logits)
    torch.testing.assert_close(s['visual'], model.fusion.heads['visual'](out.features['visual']))


def test_late_fusion_rejects_a_head():
    with pytest.raises(ValueError, match='LateFusion ends in class logits'):
        build(dict(type='LateFusion', num_classes=5))


def test_film_and_gated_have_no_analytic_mode():
    with pytest.raises(ValueError, match="FiLMFusion has no analytic.*probe"):
        build(dict(type='FiLMFusion', condition='audio'), dims=(4, 4))
    with pytest.raises(ValueError, match="GatedFusion has no analytic"):
        build(dict(type='GatedFusion', gate='visual', out_channels=8))


def test_film_forward_matches_formula():
    model = build(dict(type='FiLMFusion', condition='audio'), dims=(4, 4),
                  modality_logits='probe')
    out = model.run(batch())
    za, zv = out.features['audio'], out.features['visual']
    gamma, beta = model.fusion.film(za).chunk(2, dim=1)
    torch.testing.assert_close(out.fused_logits, model.head(gamma * zv + beta))


def test_gated_forward_matches_formula():
    model = build(dict(type='GatedFusion', gate='visual', out_channels=8),
                  modality_logits='probe')
    out = model.run(batch())
    g = torch.sigmoid(model.fusion.gate_proj(out.features['visual']))
    t = model.fusion.target_proj(out.features['audio'])
    torch.testing.assert_close(out.fused_logits, model.head(g * t))


def test_probe_that_ignores_its_modality_raises():
    # Bilinear FiLM: without a bias, a zeroed conditioning modality gives gamma = beta = 0,
    # so the target's probe is constant.
    model = build(dict(type='FiLMFusion', condition='audio'), dims=(4, 4),
                  modality_logits='probe')
    nn.init.zeros_(model.fusion.film.bias)
    with pytest.raises(ValueError, match="probe of modality 'visual' through FiLMFusion"):
        model.run(batch()).logits('probe')


def test_gated_probe_constant_when_target_bias_is_zero():
    model = build(dict(type='GatedFusion', gate='audio', out_channels=8),
                  modality_logits='probe')
    nn.init.zeros_(model.fusion.target_proj.bias)
    with pytest.raises(ValueError, match="probe of modality 'audio' through GatedFusion"):
        model.run(batch()).logits('probe')


def test_fusion_in_channels_mismatch_names_the_modality():
    with pytest.raises(ValueError, match=r"in_channels\['visual'\]=9 but encoder 'visual' "
                                         r"outputs 4 channels"):
        build(dict(type='ConcatFusion', in_channels=dict(audio=6, visual=9)))
    with pytest.raises(ValueError, match='names modalities'):
        build(dict(type='ConcatFusion', in_channels=dict(visual=4, audio=6)))


def test_head_in_channels_mismatch():
    with pytest.raises(ValueError, match='in_channels=3 but fusion ConcatFusion outputs 10'):
        build(dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=5,
                                                   in_channels=3))


def test_two_modality_fusions_reject_other_counts():
    with pytest.raises(ValueError, match='exactly 2 modalities'):
        build(dict(type='FiLMFusion', condition='a'), dims=(4, 4, 4), names=('a', 'b', 'c'),
              modality_logits='probe')
    with pytest.raises(ValueError, match="condition='depth' is not one of"):
        build(dict(type='FiLMFusion', condition='depth'), dims=(4, 4), modality_logits='probe')


def test_misspelt_registry_type_names_it():
    with pytest.raises(KeyError, match='ConcatFusoin'):
        build(dict(type='ConcatFusoin'))
