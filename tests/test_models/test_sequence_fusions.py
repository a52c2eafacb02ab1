"""Cross-attention (MulT-style), transformer (mmFormer-style) and SE fusions."""
import pytest
import torch
import torch.nn.functional as F

from mmbal.models import MultimodalClassifier
from mmbal.structures import pad_sequences

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py

LENGTHS = {'a': (3, 5, 1), 'b': (4, 2, 6)}
DIMS = {'a': 3, 'b': 2}
STEP_FUSIONS = {
    'cross': dict(type='CrossAttentionFusion', embed_dims=8, num_heads=2),
    'transformer': dict(type='TransformerFusion', embed_dims=8, num_heads=2, num_layers=2),
}


def classifier(fusion: dict, keep_steps: bool = True, modality_logits='probe'):
    torch.manual_seed(0)
    encoders = dict(
        a=dict(type='TransformerEncoder', in_channels=3, embed_dims=4, num_layers=1,
               num_heads=1, keep_steps=keep_steps),
        b=dict(type='GRUEncoder', in_channels=2, hidden_channels=5, keep_steps=keep_steps))
    return MultimodalClassifier(encoders=encoders, fusion=fusion,
                                head=dict(type='LinearClsHead', num_classes=3),
                                modality_logits=modality_logits, train_accuracy=False)


def raw(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return {m: [torch.randn(t, DIMS[m], generator=g) for t in ts] for m, ts in LENGTHS.items()}


def batch(seqs):
    return {m: pad_sequences(s) for m, s in seqs.items()}


@pytest.mark.parametrize('kind', STEP_FUSIONS)
def test_step_fusions_ignore_the_padding(kind):
    model = classifier(STEP_FUSIONS[kind]).eval()
    seqs = raw()
    fused = model(batch(seqs))
    assert fused.shape == (3, 3)
    for i in range(3):
        alone = model({m: s[i][None] for m, s in seqs.items()})
        torch.testing.assert_close(fused[i:i + 1], alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize('kind', [*STEP_FUSIONS, 'se'])
def test_probe_of_a_modality_depends_on_it_only(kind):
    fusion = dict(type='SEFusion', reduction=2) if kind == 'se' else STEP_FUSIONS[kind]
    model = classifier(fusion, keep_steps=kind != 'se')
    seqs, other = raw(1), raw(2)
    probes = model.run(batch(seqs)).logits('probe')
    for m in LENGTHS:
        mixed = {n: seqs[n] if n == m else other[n] for n in LENGTHS}
        assert torch.equal(model.run(batch(mixed)).logits('probe')[m], probes[m])
        changed = {n: other[n] if n == m else seqs[n] for n in LENGTHS}
        assert not torch.allclose(model.run(batch(changed)).logits('probe')[m], probes[m])


def test_a_modality_that_is_no_target_has_a_degenerate_probe():
    model = classifier(dict(STEP_FUSIONS['cross'], targets=['a']))
    outputs = model.run(batch(raw()))
    assert outputs.fused_logits.shape == (3, 3)
    assert model.fusion.out_channels == 8
    with pytest.raises(ValueError, match="the probe of modality 'b' through CrossAttentionFusion "
                                         "does not depend on 'b'"):
        outputs.logits('probe')


@pytest.mark.parametrize('kind', [*STEP_FUSIONS, 'se'])
def test_no_analytic_logits_and_every_parameter_trains(kind):
    fusion = dict(type='SEFusion') if kind == 'se' else STEP_FUSIONS[kind]
    keep = kind != 'se'
    with pytest.raises(ValueError, match='has no analytic per-modality logits'):
        classifier(fusion, keep_steps=keep, modality_logits='analytic')
    model = classifier(fusion, keep_steps=keep).train()
    outputs = model.run(batch(raw()))
    labels = torch.tensor([0, 2, 1])
    loss = F.cross_entropy(outputs.fused_logits, labels)
    loss = loss + sum(F.cross_entropy(s, labels) for s in outputs.logits('probe').values())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_se_fusion_by_hand():
    model = classifier(dict(type='SEFusion', reduction=3), keep_steps=False)
    fusion = model.fusion
    assert fusion.out_channels == 9 and fusion.squeeze.out_features == 3
    feats = {'a': torch.randn(2, 4), 'b': torch.randn(2, 5)}
    z = torch.cat([feats['a'], feats['b']], dim=1)
    gate = torch.sigmoid(fusion.excite.weight @ torch.relu(fusion.squeeze.weight @ z.T
                                                           + fusion.squeeze.bias[:, None])
                         + fusion.excite.bias[:, None]).T
    torch.testing.assert_close(fusion(feats), z * gate)


def test_fusions_name_the_features_they_expect():
    with pytest.raises(ValueError, match=r"the feature of 'a' has shape \(3, 4\); expected "
                                         r'per-step features \(B, T, 5\): build its encoder'
                                         r'.*keep_steps=True'):
        classifier(STEP_FUSIONS['cross'], keep_steps=False)(batch(raw()))
    with pytest.raises(ValueError, match=r"SEFusion: the feature of 'a' has shape \(3, 5, 5\); "
                                         r'expected pooled features \(B, 4\)'):
        classifier(dict(type='SEFusion'))(batch(raw()))
    with pytest.raises(ValueError, match="targets='c' is not one of the fused modalities"):
        classifier(dict(STEP_FUSIONS['cross'], targets=['c']))
    with pytest.raises(ValueError, match='TransformerFusion attends across modalities; it '
                                         r"needs at least two, got \['a'\]"):
        MultimodalClassifier(
            encoders=dict(a=dict(type='GRUEncoder', in_channels=3, keep_steps=True)),
            fusion=STEP_FUSIONS['transformer'], head=dict(type='LinearClsHead', num_classes=2))
    with pytest.raises(ValueError, match='SEFusion: reduction=0'):
        classifier(dict(type='SEFusion', reduction=0), keep_steps=False)


def test_attention_to_an_absent_modality_contributes_nothing():
    from mmbal.models.utils.attention import MaskedAttention
    torch.manual_seed(0)
    attn = MaskedAttention(4, 2)
    query, key = torch.randn(2, 3, 4), torch.randn(2, 5, 4, requires_grad=True)
    key_mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    out = attn(query, key, key_mask)
    assert torch.all(out[1] == 0) and torch.all(out[0] != 0)
    out.sum().backward()
    assert torch.isfinite(key.grad).all() and torch.all(key.grad[0, 2:] == 0)
