"""Under 2-process gloo DDP, batch statistics are all-reduced and noise is shared."""
import json
import os

import pytest
import torch
from dist_utils import run_gloo

GLOBAL_BATCH = 8


def _model():
    from mmbal.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='ResNet18', in_channels=1, base_channels=4),
                      visual=dict(type='ResNet18', in_channels=1, base_channels=4)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=3)))


def _batch():
    g = torch.Generator().manual_seed(3)
    return ({'audio': torch.randn(GLOBAL_BATCH, 1, 16, 16, generator=g),
             'visual': torch.randn(GLOBAL_BATCH, 1, 1, 16, 16, generator=g)},
            {'gt_label': torch.randint(0, 3, (GLOBAL_BATCH, ), generator=g)})


def _step(rank, world, out_dir):
    """One OGM-GE step on this rank's shard; returns k and a conv grad checksum."""
    from mmengine.model import MMDistributedDataParallel
    from mmengine.registry import init_default_scope

    from step_utils import Stepper, capture_step_grads

    from mmbal.engine import OGMGEHook
    init_default_scope('mmbal')
    model = _model()
    # BN in eval mode: per-sample logits must not depend on how the batch is split,
    # so that the 1-process run on the global batch is comparable.
    model.apply(lambda mod: mod.eval() if isinstance(mod, torch.nn.BatchNorm2d) else None)
    hook = OGMGEHook(alpha=0.8, variant='OGM_GE', seed=5)
    hook.setup(model)
    inputs, samples = _batch()
    shard = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    inputs = {m: x[shard] for m, x in inputs.items()}
    samples = {k: v[shard] for k, v in samples.items()}
    net = MMDistributedDataParallel(model, device_ids=None) if world > 1 else model
    stepper = Stepper(model, [hook], net=net)
    grads = capture_step_grads(stepper.optim_wrapper, model)
    k = {}
    edit = hook.edit_grads

    def record_k(ctx):
        k.update({m: float(v) for m, v in hook.k.items()})
        edit(ctx)

    hook.edit_grads = record_k
    stepper(inputs, samples, it=11)
    captured = {'grad': grads['encoders.visual.stem.0.weight'].flatten()[:20].tolist()}
    ratio = hook._pending['ratio_visual']
    with open(os.path.join(out_dir, f'rank{rank}_of{world}.json'), 'w') as f:
        json.dump({'k': k, 'grad': captured['grad'], 'ratio': float(ratio),
                   'ratio_dtype': str(ratio.dtype)}, f)


def test_ogm_ge_coefficients_and_noise_agree_across_ranks(tmp_path):
    run_gloo(_step, str(tmp_path))
    _step(0, 1, str(tmp_path))  # one process on the same global batch
    r0, r1, single = (json.loads((tmp_path / name).read_text())
                      for name in ('rank0_of2.json', 'rank1_of2.json', 'rank0_of1.json'))
    assert r0['k'] == r1['k']
    for m, k in single['k'].items():
        assert abs(r0['k'][m] - k) < 1e-6
    # the scores are all-reduced in float64 (gloo sums it)
    assert r0['ratio_dtype'] == r1['ratio_dtype'] == 'torch.float64'
    assert r0['ratio'] == r1['ratio'] == pytest.approx(single['ratio'], rel=1e-6)
    assert any(v != 1.0 for v in single['k'].values())  # the test exercises a suppression
    # DDP averages the gradients, then the same GE noise is added on both ranks.
    assert r0['grad'] == r1['grad']


def _mlp():
    from mmbal.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=3, out_channels=4,
                                 hidden_channels=(5, )),
                      visual=dict(type='MLPEncoder', in_channels=2, out_channels=4)),
        fusion=dict(type='LateFusion', num_classes=4), head=None, modality_logits=None))


def _mlp_batch():
    g = torch.Generator().manual_seed(4)
    return ({'audio': torch.randn(GLOBAL_BATCH, 3, generator=g),
             'visual': torch.randn(GLOBAL_BATCH, 2, generator=g)},
            {'gt_label': torch.randint(0, 4, (GLOBAL_BATCH, ), generator=g)})


def _extension_step(rank, world, out_dir):
    """Per-loss gradients and sub-steps (one SGD step per modality) on this rank's shard."""
    from mmengine.model import MMDistributedDataParallel
    from mmengine.registry import init_default_scope
    from step_utils import Stepper

    from mmbal.engine import BalanceTerms, BaseBalanceHook, LossGradRequest, PassPlan
    init_default_scope('mmbal')

    class Probe(BaseBalanceHook):
        def after_forward(self, ctx, outputs, samples):
            ce = torch.nn.functional.cross_entropy(outputs.fused_logits, samples['gt_label'])
            params = list(ctx.model.encoders['visual'].parameters())
            return BalanceTerms(loss_grads={'fused': LossGradRequest(ce, params)})

        def edit_grads(self, ctx):
            self.seen = [g.flatten().tolist() for g in ctx.loss_grads(self)['fused']]

    class Alternate(BaseBalanceHook):
        def plan_passes(self, ctx):
            return [PassPlan(trainable=[m], base_loss=False, logits='analytic', name=m)
                    for m in ctx.model.modalities]

        def after_forward(self, ctx, outputs, samples):
            (m, ) = outputs.modalities
            logits = outputs.logits('analytic')[m]  # computed inside the DDP forward
            return BalanceTerms(losses={'loss_m': torch.nn.functional.cross_entropy(
                logits, samples['gt_label'])})

    inputs, samples = _mlp_batch()
    shard = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    inputs = {m: x[shard] for m, x in inputs.items()}
    samples = {k: v[shard] for k, v in samples.items()}
    result = {}
    model = _mlp()
    probe = Probe()
    net = MMDistributedDataParallel(model, device_ids=None) if world > 1 else model
    Stepper(model, [probe], net=net, lr=0.0)(inputs, samples)
    result['loss_grad'] = probe.seen
    model = _mlp()
    net = (MMDistributedDataParallel(model, device_ids=None, find_unused_parameters=True)
           if world > 1 else model)
    stepper = Stepper(model, [Alternate()], net=net, momentum=0.9)
    for it in range(2):
        stepper(inputs, samples, it=it)
    result['params'] = {n: p.detach().flatten().tolist() for n, p in model.named_parameters()}
    with open(os.path.join(out_dir, f'ext_rank{rank}_of{world}.json'), 'w') as f:
        json.dump(result, f)


def test_per_loss_gradients_and_sub_steps_under_ddp_equal_one_process(tmp_path):
    run_gloo(_extension_step, str(tmp_path))
    _extension_step(0, 1, str(tmp_path))
    r0, r1, single = (json.loads((tmp_path / f'ext_{name}.json').read_text())
                      for name in ('rank0_of2', 'rank1_of2', 'rank0_of1'))
    assert r0 == r1  # replicas agree
    for got, want in zip(r0['loss_grad'], single['loss_grad']):
        assert torch.allclose(torch.tensor(got), torch.tensor(want), rtol=1e-5, atol=1e-7)
    assert any(abs(v) > 0 for g in single['loss_grad'] for v in g)
    for name, want in single['params'].items():
        assert torch.allclose(torch.tensor(r0['params'][name]), torch.tensor(want),
                              rtol=1e-5, atol=1e-6), name
