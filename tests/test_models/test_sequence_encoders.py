"""Sequence encoders on the BaseEncoder interface: masking, stages, re-init, AIM's uses."""
import pytest
import torch
from torch import nn
from torch.func import functional_call

from mmbal.balance.aim import BlockParams, DepthAdaptivePrototypes
from mmbal.balance.aim.scores import carried_logits, prototype_logits
from mmbal.models import (Conv1dEncoder, GRUEncoder, LSTMEncoder, MeanPoolMLPEncoder,
                          TransformerEncoder)
from mmbal.structures import PaddedSequence, pad_sequences, split_steps

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py

D = 4
MAKERS = {
    'transformer': lambda **kw: TransformerEncoder(D, embed_dims=8, num_layers=3, num_heads=2,
                                                   **kw),
    'gru_last': lambda **kw: GRUEncoder(D, hidden_channels=6, num_layers=2, **kw),
    'lstm_mean': lambda **kw: LSTMEncoder(D, hidden_channels=5, num_layers=2, pooling='mean',
                                          **kw),
    'conv1d': lambda **kw: Conv1dEncoder(D, channels=(6, 5), kernel_size=3, **kw),
    'mean_mlp': lambda **kw: MeanPoolMLPEncoder(D, out_channels=3, hidden_channels=(6, ),
                                                **kw),
}
IDS = list(MAKERS)
LENGTHS = (3, 6, 1)


def build(name: str, **kw):
    torch.manual_seed(0)
    return MAKERS[name](**kw).eval()


def sequences():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(t, D, generator=g) for t in LENGTHS]


@pytest.mark.parametrize('name', IDS)
def test_padded_steps_do_not_change_the_output(name):
    enc = build(name)
    seqs = sequences()
    batch = pad_sequences(seqs)
    # Garbage in the padded steps must not matter either.
    noisy = PaddedSequence(batch.data + 100 * (~batch.mask).unsqueeze(-1), batch.mask)
    out, out_noisy = enc(batch), enc(noisy)
    for i, seq in enumerate(seqs):
        alone = enc(seq[None])  # a plain (1, T, D) tensor: every step real
        torch.testing.assert_close(out[i:i + 1], alone, atol=1e-6, rtol=0)
        torch.testing.assert_close(out_noisy[i:i + 1], alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize('name', [n for n in IDS if n != 'mean_mlp'])
def test_keep_steps_outputs_the_last_stage_with_its_mask(name):
    enc = build(name, keep_steps=True)
    batch = pad_sequences(sequences())
    steps = enc(batch)
    assert steps.shape == (len(LENGTHS), max(LENGTHS), enc.out_channels + 1)
    features, mask = split_steps(steps)
    assert torch.equal(mask, batch.mask)
    assert torch.all(features[~mask] == 0)
    alone = enc(sequences()[0][None])
    torch.testing.assert_close(steps[:1, :LENGTHS[0]], alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize('name', IDS)
def test_forward_is_pool_of_the_last_stage_and_stages_chain(name):
    enc = build(name).train()  # dropout-free, so train mode is deterministic
    batch = pad_sequences(sequences())
    outs = enc.forward_stages(batch)
    assert len(outs) == enc.num_stages
    assert torch.equal(enc(batch), enc.pool(outs[-1]))
    assert enc(batch).shape == (len(LENGTHS), enc.out_channels)
    h = enc.prepare(batch)
    for i in range(enc.num_stages):
        h = enc.run_stage(i, h)
        assert torch.equal(h, outs[i])


@pytest.mark.parametrize('name', IDS)
def test_stage_parameters_partition_the_parameters(name):
    enc = build(name)
    all_params = dict(enc.named_parameters())
    seen = [n for i in range(enc.num_stages) for n, p in enc.stage_parameters(i)
            if all_params[n] is p]
    assert sorted(seen) == sorted(all_params) and len(seen) == len(set(seen))
    assert all(list(enc.stage_parameters(i)) for i in range(enc.num_stages))


def test_stage_counts_and_conv_group():
    assert [build(n).num_stages for n in IDS] == [3, 2, 2, 2, 2]
    assert [n for n, _ in build('conv1d').named_conv_weights()] == [
        'layers.0.conv.weight', 'layers.1.conv.weight']
    assert list(build('transformer').named_conv_weights()) == []


@pytest.mark.parametrize('name', IDS)
def test_init_weights_from_a_seed_equals_a_fresh_construction(name):
    torch.manual_seed(5)
    fresh = MAKERS[name]()
    enc = build(name)
    with torch.no_grad():
        for p in enc.parameters():
            p.fill_(0.37)
    torch.manual_seed(5)
    enc.init_weights()
    for (k, a), b in zip(fresh.state_dict().items(), enc.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize('name', IDS)
def test_functional_stage_run_with_other_parameters(name):
    """The AIM use: a stage on given tensors through torch.func; grads reach those tensors."""
    enc = build(name)
    batch = pad_sequences(sequences())
    outs = [enc.prepare(batch)] + enc.forward_stages(batch)
    for i in range(enc.num_stages):
        params = {n: p.detach().clone().requires_grad_() for n, p in enc.stage_parameters(i)}
        assert torch.equal(enc.run_stage(i, outs[i], params=params), outs[i + 1])
        assert torch.equal(functional_call(enc.stage_module(i), params, (outs[i], )),
                           outs[i + 1])
        scaled = {n: 1.5 * p for n, p in params.items()}
        assert not torch.equal(enc.run_stage(i, outs[i], params=scaled), outs[i + 1])
        enc.run_stage(i, outs[i].detach(), params=params).sum().backward()
        assert all(p.grad is not None for p in params.values())
        assert all(p.grad is None for p in enc.parameters())


def test_aim_runs_on_the_transformer():
    """AIM's per-block pieces: prototypes (plain (K, T, D) inputs), block params, carried logits."""
    enc = build('transformer')
    head = nn.Linear(enc.out_channels, 2)
    batch = pad_sequences(sequences())
    # score_source='label': carrying stage i's output through the rest is the forward.
    outs = enc.forward_stages(batch)
    for i, h in enumerate(outs):
        torch.testing.assert_close(carried_logits(enc, i, h, head), head(enc(batch)))
    # PAM: a block run on its flattened parameters theta equals the stage.
    block = BlockParams(enc, 1)
    torch.testing.assert_close(block.run(outs[0], block.flatten()), outs[1])
    # DAP: depth prototypes are stage outputs on prototype inputs of the batch's (T, D).
    dap = DepthAdaptivePrototypes({'text': (max(LENGTHS), D)}, num_classes=2)
    protos = dap.depth_prototypes('text', enc)
    assert [tuple(p.shape) for p in protos] == [(2, max(LENGTHS), 9)] * 3
    logits = prototype_logits(outs[2], protos[2], pool=enc.pool)
    assert logits.shape == (len(LENGTHS), 2) and torch.isfinite(logits).all()


def test_bad_inputs_are_named_errors():
    enc = build('transformer')
    with pytest.raises(ValueError, match='in_channels=4 but got steps of 3 features'):
        enc(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match=r'a PaddedSequence or a \(B, T, D\) tensor, got shape '
                                         r'\(2, 4\)'):
        enc(torch.randn(2, 4))
    batch = pad_sequences(sequences())
    with pytest.raises(ValueError, match='mask must be a bool tensor'):
        enc(PaddedSequence(batch.data, batch.mask.float()))
    empty = batch.mask.clone()
    empty[1] = False
    with pytest.raises(ValueError, match=r'samples \[1\] of the batch have no real step'):
        enc(PaddedSequence(batch.data, empty))
    gap = batch.mask.clone()
    gap[1, 2] = False
    with pytest.raises(ValueError, match=r'samples \[1\] have a real step after a padded one'):
        build('gru_last')(PaddedSequence(batch.data, gap))
    with pytest.raises(ValueError, match="pooling='max'"):
        GRUEncoder(D, pooling='max')
    with pytest.raises(ValueError, match='kernel_size=2'):
        Conv1dEncoder(D, kernel_size=2)
    with pytest.raises(ValueError, match='keep_steps must be True or False'):
        TransformerEncoder(D, keep_steps='yes')
    with pytest.raises(ValueError, match='embed_dims=6 is not divisible by num_heads=4'):
        TransformerEncoder(D, embed_dims=6, num_heads=4)


def test_a_stage_restores_from_an_encoder_snapshot():
    """The D&R use: reset the parameters of one Transformer block from an init snapshot."""
    enc = build('transformer')
    snapshot = {k: v.clone() for k, v in enc.state_dict().items()}
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(1.0)
    stage = enc.stage_module(1)
    stage.load_state_dict({k: snapshot[k] for k in stage.state_dict()})
    keys = set(stage.state_dict())
    assert keys and all(k.startswith('layers.1.') for k in keys)
    for k, v in enc.state_dict().items():
        assert torch.equal(v, snapshot[k]) == (k in keys), k
