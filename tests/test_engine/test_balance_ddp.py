"""Under 2-process gloo DDP, batch statistics are all-reduced and noise is shared."""
import json
import os

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

    from mmbal.engine import BalanceOptimWrapper, OGMGEHook
    init_default_scope('mmbal')
    model = _model()
    # BN in eval mode: per-sample logits must not depend on how the batch is split,
    # so that the 1-process run on the global batch is comparable.
    model.apply(lambda mod: mod.eval() if isinstance(mod, torch.nn.BatchNorm2d) else None)
    hook = OGMGEHook(alpha=0.8, variant='OGM_GE', seed=5)
    hook.setup(model)
    model.register_balance_hook(hook)
    hook.model = model
    hook.iter = 11
    wrapper = BalanceOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    wrapper.register_balance_hook(hook)
    inputs, samples = _batch()
    shard = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    inputs = {m: x[shard] for m, x in inputs.items()}
    samples = {k: v[shard] for k, v in samples.items()}
    net = MMDistributedDataParallel(model, device_ids=None) if world > 1 else model
    loss = net(inputs, samples, mode='loss')['loss']
    k = {m: float(v) for m, v in hook.k.items()}
    captured = {}
    orig_step = wrapper.optimizer.step

    def step(*args, **kwargs):
        conv = model.encoders['visual'].stem[0].weight.grad
        captured['grad'] = conv.flatten()[:20].tolist()
        return orig_step(*args, **kwargs)

    wrapper.optimizer.step = step
    wrapper.update_params(loss)
    with open(os.path.join(out_dir, f'rank{rank}_of{world}.json'), 'w') as f:
        json.dump({'k': k, 'grad': captured['grad']}, f)


def test_ogm_ge_coefficients_and_noise_agree_across_ranks(tmp_path):
    run_gloo(_step, str(tmp_path))
    _step(0, 1, str(tmp_path))  # one process on the same global batch
    r0, r1, single = (json.loads((tmp_path / name).read_text())
                      for name in ('rank0_of2.json', 'rank1_of2.json', 'rank0_of1.json'))
    assert r0['k'] == r1['k']
    for m, k in single['k'].items():
        assert abs(r0['k'][m] - k) < 1e-6
    assert any(v != 1.0 for v in single['k'].values())  # the test exercises a suppression
    # DDP averages the gradients, then the same GE noise is added on both ranks.
    assert r0['grad'] == r1['grad']
