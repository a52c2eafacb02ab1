"""AIMHook under 2-process gloo DDP equals one process on the global batch, in both phases."""
import json
import os

import pytest
import torch
from dist_utils import run_gloo

GLOBAL_BATCH = 8
K = 3
#: (epoch of each step): two steps before switch_epoch=1, two after.
EPOCHS = (0, 0, 1, 1)
#: Logged statistics that must be global-batch values on every rank.
STATS = ('s/', 'rho/', 'alpha/', 's_aux/', 'rho_aux/', 'mask/')


def _model():
    from mmbal.models.classifiers import MultimodalClassifier
    torch.manual_seed(0)
    # No BN, no dropout: per-sample outputs do not depend on how the batch is split.
    return MultimodalClassifier(
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=3, out_channels=4,
                                 hidden_channels=(5, )),
                      visual=dict(type='MLPEncoder', in_channels=2, out_channels=4,
                                  hidden_channels=(6, ))),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=K))


def _batch(it: int):
    g = torch.Generator().manual_seed(10 + it)
    return ({'audio': torch.randn(GLOBAL_BATCH, 3, generator=g),
             'visual': torch.randn(GLOBAL_BATCH, 2, generator=g)},
            {'gt_label': torch.randint(0, K, (GLOBAL_BATCH, ), generator=g)})


def _class_means():
    g = torch.Generator().manual_seed(2)
    return {'audio': torch.randn(K, 3, generator=g, dtype=torch.float64),
            'visual': torch.randn(K, 2, generator=g, dtype=torch.float64)}


def _state(model, hook):
    named = [*model.named_parameters(), *hook.dap.named_parameters(prefix='dap'),
             *hook.modules_.named_parameters(prefix='modules')]
    return {n: p.detach().flatten().tolist() for n, p in named}


def _aim_steps(rank, world, out_dir, options):
    """Four AIM steps (two per phase) on this rank's shard of each global batch."""
    from mmengine.model import MMDistributedDataParallel
    from mmengine.registry import init_default_scope
    from step_utils import Stepper

    from mmbal.engine.hooks import AIMHook
    init_default_scope('mmbal')
    model = _model()
    hook = AIMHook(switch_epoch=1, latent=16, rank=2, **options)  # small modules: a fast test
    torch.manual_seed(3 + rank)  # the replicas draw different prototypes and modules
    hook.prepare(model, _class_means())
    net = MMDistributedDataParallel(model, device_ids=None) if world > 1 else model
    stepper = Stepper(model, [hook], net=net, lr=0.1, momentum=0.9)
    shard = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    result = {'logs': [], 'states': []}
    for it, epoch in enumerate(EPOCHS):
        inputs, samples = _batch(it)
        stepper({m: x[shard] for m, x in inputs.items()},
                {k: v[shard] for k, v in samples.items()}, epoch=epoch, it=it)
        result['logs'].append({k: float(v) for k, v in hook._pending.items()
                               if k.startswith(STATS)})
        hook._pending = {}
        if it % 2:  # after each phase's two steps
            result['states'].append(_state(model, hook))
    with open(os.path.join(out_dir, f'rank{rank}_of{world}.json'), 'w') as f:
        json.dump(result, f)


# The method as specified; and label scores with CE(f, y) kept on from E, where the encoders'
# gradient is DDP's (CE) plus the step's (L_mod) and the head learns.
@pytest.mark.parametrize('options', [{}, dict(score_source='label', ce_after_switch=True)],
                         ids=['prototype', 'label-ce'])
def test_aim_hook_under_ddp_equals_one_process_on_the_global_batch(tmp_path, options):
    run_gloo(_aim_steps, str(tmp_path), options)
    _aim_steps(0, 1, str(tmp_path), options)
    r0, r1, single = (json.loads((tmp_path / f'{name}.json').read_text())
                      for name in ('rank0_of2', 'rank1_of2', 'rank0_of1'))
    assert r0 == r1  # replicas: the same statistics, parameters, prototypes and modules
    for got, want in zip(r0['logs'], single['logs']):
        assert got.keys() == want.keys() and any(k.startswith('rho_aux/') for k in want)
        for key, value in want.items():
            assert abs(got[key] - value) <= 1e-7 + 1e-6 * abs(value), key
    assert any(v > 0 for log in single['logs'] for k, v in log.items() if k.startswith('alpha/'))
    for phase, (got, want) in enumerate(zip(r0['states'], single['states'])):
        for name, value in want.items():
            assert torch.allclose(torch.tensor(got[name]), torch.tensor(value), rtol=1e-5,
                                  atol=1e-6), (phase, name)
    # Each phase moved the encoders (CE before the switch, L_mod after it).
    first, second = single['states']
    assert first['encoders.audio.layers.0.weight'] != second['encoders.audio.layers.0.weight']
    assert (first['head.fc.weight'] != second['head.fc.weight']) == ('ce_after_switch' in options)
