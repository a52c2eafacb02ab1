"""Dataset passes: eval mode, split loaders, global sums, and DDP equal to one process."""
import copy
import math
import random
import re
from collections import OrderedDict
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from dist_utils import run_gloo
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate, pseudo_collate
from mmengine.registry import DefaultScope
from torch import nn
from torch.utils.data import DataLoader

from mmbal.balance import build_split_loader, dataset_pass, eval_mode, mean_of, per_class_sums
from mmbal.balance.dataset_pass import random_fraction
from mmbal.models.data_preprocessors import MultimodalDataPreprocessor
from mmbal.registry import DATASETS

ROOT = Path(__file__).resolve().parents[2]
DATA_ROOT = str(ROOT / 'data' / 'avdigits')
VISUAL = ('visual', )
# The two pipelines differ on every pixel: the train one adds seeded noise and
# normalizes differently, so a sample tells which pipeline made it.
TRAIN_PIPELINE = [dict(type='DegradeImage', noise_std=0.5, seed=3),
                  dict(type='Normalize', mean=[0.5], std=[0.5]),
                  dict(type='PackMultimodalInputs', modalities=VISUAL)]
VAL_PIPELINE = [dict(type='Normalize', mean=[0.1307], std=[0.3081]),
                dict(type='PackMultimodalInputs', modalities=VISUAL)]
NUM_CLASSES = 10


def tiny_cfg(train_indices: int = 9, val_test_mode: bool = False, batch_size: int = 4) -> Config:
    """Train/val/test loaders over a few AV-Digits rows, visual only (fast)."""
    def loader(split, pipeline, indices, **extra):
        return dict(batch_size=batch_size, num_workers=0,
                    sampler=dict(type='DefaultSampler', shuffle=split == 'train'),
                    collate_fn=dict(type='default_collate'),
                    dataset=dict(type='AVDigitsDataset', data_root=DATA_ROOT, split=split,
                                 modalities=VISUAL, pipeline=pipeline, indices=indices,
                                 **extra))
    return Config(dict(train_dataloader=loader('train', TRAIN_PIPELINE, train_indices),
                       val_dataloader=loader('val', VAL_PIPELINE, 5, test_mode=val_test_mode),
                       test_dataloader=loader('test', VAL_PIPELINE, 5)))


def batches(loader):
    """``(visual (N, ...), sample_idx (N,))`` of every batch, concatenated."""
    data = list(loader)
    return (torch.cat([b['inputs']['visual'] for b in data]),
            torch.cat([b['data_samples']['sample_idx'] for b in data]))


class TinyModel(nn.Module):
    """A data preprocessor plus a linear layer and a BN, in float64; records its mode."""

    def __init__(self, in_dim: int = 784, out_dim: int = 6) -> None:
        super().__init__()
        self.data_preprocessor = MultimodalDataPreprocessor()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim)).double()
        self.modes = []

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.net(x.flatten(1).double())


def prototype_fn(model: TinyModel, data) -> dict:
    """Per-class feature sums and counts (PMR's prototypes)."""
    feats = model.features(data['inputs']['visual'])
    sums, counts = per_class_sums(feats, data['data_samples']['gt_label'], NUM_CLASSES)
    return {'feat': sums, 'class_count': counts}


def module_flags(*modules):
    return [sub.training for m in modules for sub in m.modules()]


def bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if 'running' in k
            or 'num_batches' in k}


# --------------------------------------------------------------------------- eval_mode
def test_eval_mode_restores_every_flag_also_on_error():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4),
                          nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(4)))
    model.train()
    model[2][1].eval()  # a frozen BN inside a training model must stay frozen
    other = nn.BatchNorm1d(2).eval()
    before = module_flags(model, other)
    assert True in before and False in before
    with eval_mode(model, None, other):
        assert not any(module_flags(model, other))
    assert module_flags(model, other) == before
    with pytest.raises(RuntimeError, match='boom'):
        with eval_mode(model):
            raise RuntimeError('boom')
    assert module_flags(model, other) == before
    with pytest.raises(TypeError, match='argument 1 is a str'):
        with eval_mode(model, 'head'):
            pass


def test_pass_leaves_bn_statistics_untouched():
    torch.manual_seed(0)
    model = TinyModel(in_dim=3)
    model.train()
    samples = [{'inputs': {'visual': torch.randn(3)}, 'data_samples': {'gt_label': i % 2}}
               for i in range(8)]
    loader = DataLoader(samples, batch_size=4, collate_fn=default_collate)
    before = bn_state(model)
    dataset_pass(loader, lambda d: {'f': model.features(d['inputs']['visual']).sum(0)}, model)
    after = bn_state(model)
    assert before.keys() == after.keys() and len(before) == 3
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.modes == [False, False] and model.training and model.net[1].training
    model.features(next(iter(loader))['inputs']['visual'])  # sanity: training moves them
    assert not torch.equal(bn_state(model)['net.1.running_mean'], before['net.1.running_mean'])


# --------------------------------------------------------------------------- split loader
def test_train_split_with_eval_pipeline_gets_the_val_transforms():
    cfg = tiny_cfg(train_indices=6, val_test_mode=True)
    loader = build_split_loader(cfg, 'train', 'eval', batch_size=4)
    dataset = loader.dataset.dataset
    assert (dataset.split, dataset.test_mode, len(dataset)) == ('train', True, 6)
    assert loader.batch_size == 4 and not loader.drop_last
    visual, idx = batches(loader)
    assert idx.tolist() == list(range(6)) and visual.shape == (6, 1, 1, 28, 28)

    with DefaultScope.overwrite_default_scope('mmbal'):  # the reference, built by hand
        raw = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))  # train pipeline
        val_transforms = Compose(copy.deepcopy(VAL_PIPELINE))
    expected = torch.stack([val_transforms(raw.get_data_info(i))['inputs']['visual']
                            for i in range(6)])
    augmented = torch.stack([raw[i]['inputs']['visual'] for i in range(6)])
    assert torch.equal(visual, expected)
    assert not torch.allclose(visual, augmented)

    train_view = build_split_loader(cfg, 'train', 'train')
    assert train_view.batch_size == 4 and not train_view.dataset.dataset.test_mode
    assert torch.equal(batches(train_view)[0], augmented)
    explicit = build_split_loader(cfg, 'val', VAL_PIPELINE[1:], batch_size=5)  # no Normalize
    assert explicit.dataset.dataset.test_mode is True  # the val split's own
    assert batches(explicit)[0].max() > 1  # raw 0-255 pixels


def test_shipped_avdigits_config_both_modalities():
    cfg = Config.fromfile(str(ROOT / 'configs/_base_/datasets/avdigits.py'))
    for split in ('train', 'val'):
        cfg[f'{split}_dataloader'].dataset.update(data_root=DATA_ROOT, indices=3)
    data = list(build_split_loader(cfg, 'train', 'eval'))
    assert len(data) == 1 and data[0]['inputs']['audio'].shape == (3, 1, 129, 63)
    assert data[0]['inputs']['visual'].shape == (3, 1, 1, 28, 28)
    assert data[0]['data_samples']['gt_label'].shape == (3, )


def test_builds_without_and_under_a_foreign_default_scope(monkeypatch):
    monkeypatch.setattr(DefaultScope, '_instance_dict', OrderedDict())
    assert DefaultScope.get_current_instance() is None
    assert len(build_split_loader(tiny_cfg(train_indices=2), 'train').dataset) == 2
    assert DefaultScope.get_current_instance() is None  # no scope left behind
    DefaultScope.get_instance('test-foreign', scope_name='mmengine')
    assert len(build_split_loader(tiny_cfg(train_indices=2), 'train').dataset) == 2
    assert DefaultScope.get_current_instance().scope_name == 'mmengine'


@pytest.mark.parametrize('world', [2, 3])
def test_every_sample_exactly_once_across_ranks(world):
    cfg = tiny_cfg(train_indices=7, batch_size=2)
    shards = [batches(build_split_loader(cfg, 'train', rank=r, world_size=world))[1].tolist()
              for r in range(world)]
    assert shards[0] == list(range(0, 7, world))  # rank r: r, r + W, ... in order
    assert sorted(sum(shards, [])) == list(range(7))
    assert [len(s) for s in shards] == [len(range(r, 7, world)) for r in range(world)]


def test_fraction_is_one_seeded_subset_shared_by_every_rank():
    cfg = tiny_cfg(train_indices=9, batch_size=2)
    whole = batches(build_split_loader(cfg, 'train', fraction=0.5, seed=4))[1].tolist()
    assert len(whole) == 4 and whole == sorted(set(whole))  # round(0.5 * 9), in order
    shards = [batches(build_split_loader(cfg, 'train', rank=r, world_size=2, fraction=0.5,
                                         seed=4))[1].tolist() for r in range(2)]
    assert shards == [whole[0::2], whole[1::2]]  # the same draw on every rank, then sharded
    assert len({tuple(random_fraction(9, 0.5, s)) for s in range(6)}) > 1  # the seed decides
    state = torch.get_rng_state()
    assert random_fraction(9, 0.01, 0) != [] and len(random_fraction(9, 0.01, 0)) == 1
    assert torch.equal(torch.get_rng_state(), state)  # the global random state did not move
    for bad in (0, 1.5, True, '0.1'):
        with pytest.raises(ValueError, match=re.escape(f'fraction={bad!r}; expected a number '
                                                       f'in (0, 1]')):
            random_fraction(9, bad, 0)


def test_loader_named_errors():
    cfg = tiny_cfg(train_indices=2)
    with pytest.raises(ValueError, match="split='trian'"):
        build_split_loader(cfg, 'trian')
    with pytest.raises(ValueError, match="pipeline='aug'"):
        build_split_loader(cfg, 'train', 'aug')
    with pytest.raises(TypeError, match='pipeline is a int'):
        build_split_loader(cfg, 'train', 3)
    with pytest.raises(TypeError, match='cfg is a str'):
        build_split_loader('configs/x.py')
    no_val = Config({k: v for k, v in cfg.items() if k != 'val_dataloader'})
    with pytest.raises(KeyError, match=r"pipeline='eval' needs cfg.val_dataloader"):
        build_split_loader(no_val, 'train')
    assert len(build_split_loader(no_val, 'train', 'train').dataset) == 2
    none_test = copy.deepcopy(cfg)
    none_test.test_dataloader = None
    with pytest.raises(KeyError, match=r"split='test' needs cfg.test_dataloader"):
        build_split_loader(none_test, 'test')
    no_pipe = copy.deepcopy(cfg)
    del no_pipe.val_dataloader.dataset['pipeline']
    with pytest.raises(KeyError, match=r'cfg.val_dataloader.dataset.pipeline'):
        build_split_loader(no_pipe, 'train')
    bad_collate = copy.deepcopy(cfg)
    bad_collate.train_dataloader.collate_fn = dict(type='stack_everything')
    with pytest.raises(KeyError, match="collate_fn type 'stack_everything'"):
        build_split_loader(bad_collate, 'val')
    with pytest.raises(ValueError, match='rank=2, world_size=2'):
        build_split_loader(cfg, rank=2, world_size=2)
    with pytest.raises(ValueError, match='batch_size=0'):
        build_split_loader(cfg, batch_size=0)


# --------------------------------------------------------------------------- dataset_pass
def toy_samples(n: int = 7, dim: int = 3):
    rng = np.random.default_rng(0)
    return [{'inputs': {'visual': torch.from_numpy(rng.normal(size=dim))},
             'data_samples': {'gt_label': i % 3, 'sample_idx': i}} for i in range(n)]


def test_sums_equal_hand_sums():
    samples = toy_samples()
    loader = DataLoader(samples, batch_size=3, collate_fn=default_collate)  # 3 + 3 + 1
    model = TinyModel(in_dim=3).train()

    def fn(data):
        x = data['inputs']['visual']
        assert not model.training and not torch.is_grad_enabled()
        sums, counts = per_class_sums(x, data['data_samples']['gt_label'], 4)
        return {'x': x.sum(0), 'sq': (x ** 2).sum(), 'cls': sums, 'cls_n': counts}

    out = dataset_pass(loader, fn, model=model)
    assert model.training
    rows = [s['inputs']['visual'].tolist() for s in samples]
    labels = [s['data_samples']['gt_label'] for s in samples]
    hand_x = [math.fsum(r[j] for r in rows) for j in range(3)]
    hand_sq = math.fsum(v * v for r in rows for v in r)
    assert out['count'].dtype == torch.float64 and float(out['count']) == 7
    assert torch.allclose(out['x'], torch.tensor(hand_x, dtype=torch.float64), atol=1e-12)
    assert float(out['sq']) == pytest.approx(hand_sq, abs=1e-12)
    assert out['cls_n'].tolist() == [3, 2, 2, 0]
    means = mean_of(out['cls'], out['cls_n'])
    for k in range(3):
        members = [r for r, y in zip(rows, labels) if y == k]
        hand = [math.fsum(r[j] for r in members) / len(members) for j in range(3)]
        assert torch.allclose(means[k], torch.tensor(hand, dtype=torch.float64), atol=1e-12)
    assert torch.isnan(means[3]).all()  # an empty class is NaN, not a silent 0
    assert torch.allclose(mean_of(out['x'], out['count']), out['x'] / 7)


def test_count_rules():
    samples = toy_samples(5)
    listed = DataLoader(samples, batch_size=2, collate_fn=pseudo_collate)  # list of samples
    assert float(dataset_pass(listed, lambda d: {})['count']) == 5
    own = dataset_pass(listed, lambda d: {'count': torch.tensor(1.0)})
    assert float(own['count']) == 3  # fn's own count wins (one per batch here)
    bare = DataLoader([torch.ones(2)] * 3, batch_size=2)
    with pytest.raises(ValueError, match="return 'count'"):
        dataset_pass(bare, lambda d: {'s': d.sum()})
    assert float(dataset_pass(bare, lambda d: {'count': len(d)})['count']) == 3


def test_pass_named_errors():
    loader = DataLoader(toy_samples(5), batch_size=2, collate_fn=default_collate)
    with pytest.raises(TypeError, match='fn returned a Tensor'):
        dataset_pass(loader, lambda d: d['inputs']['visual'].sum())
    with pytest.raises(ValueError, match="'x' has shape \\(1, 3\\) in batch 2"):
        dataset_pass(loader, lambda d: {'x': d['inputs']['visual'][:, :3]})
    with pytest.raises(ValueError, match='same keys'):
        dataset_pass(loader, lambda d: {f'n{len(d["inputs"]["visual"])}': torch.tensor(0.)})
    with pytest.raises(ValueError, match='no batch on any rank'):
        dataset_pass([], lambda d: {})


def test_pass_keeps_the_global_random_streams():
    loader = DataLoader(toy_samples(4), batch_size=2, collate_fn=default_collate)

    def noisy(data):
        return {'r': torch.rand(()) + float(np.random.rand()) + random.random()}

    def draws():
        return torch.rand(()).item(), float(np.random.rand()), random.random()

    def seeded():
        torch.manual_seed(1)
        np.random.seed(1)
        random.seed(1)

    seeded()
    expected = draws()
    seeded()
    dataset_pass(loader, noisy)
    assert draws() == expected
    seeded()
    dataset_pass(loader, noisy, keep_rng=False)
    assert draws() != expected


def test_per_class_sums_and_mean_of_errors():
    sums, counts = per_class_sums(torch.tensor([[1., 2.], [3., 4.], [5., 6.]]),
                                  torch.tensor([2, 0, 2]), 3)
    assert sums.tolist() == [[3., 4.], [0., 0.], [6., 8.]] and counts.tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match=r'labels span \[0, 3\]; expected \[0, 2\]'):
        per_class_sums(torch.zeros(2, 1), torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match='2 labels for 3 values'):
        per_class_sums(torch.zeros(3, 1), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match=r'count of shape \(2,\) does not lead'):
        mean_of(torch.zeros(3, 4), torch.ones(2))


# --------------------------------------------------------------------------- DDP
def _ddp_step(rank, world, out_dir):
    torch.manual_seed(0)
    model = TinyModel()
    result = {}
    loader = build_split_loader(tiny_cfg(train_indices=9), 'train', 'eval', batch_size=2)
    result['shard'] = batches(loader)[1].tolist()
    result['sums'] = dataset_pass(loader, partial(prototype_fn, model), model=model)
    one = build_split_loader(tiny_cfg(train_indices=1), 'train', 'eval')  # rank 1: empty
    result['one'] = dataset_pass(one, partial(prototype_fn, model), model=model)
    with pytest.raises(ValueError, match='different keys/shapes on different ranks'):
        dataset_pass(loader, lambda d: {'x': torch.zeros(rank + 1)})
    torch.save(result, f'{out_dir}/rank{rank}.pt')


def test_two_process_gloo_equals_one_process_on_the_whole_split(tmp_path):
    run_gloo(_ddp_step, str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt') for r in (0, 1))
    assert r0['shard'] == [0, 2, 4, 6, 8] and r1['shard'] == [1, 3, 5, 7]
    for key in ('sums', 'one'):
        assert r0[key].keys() == r1[key].keys() == {'feat', 'class_count', 'count'}
        assert all(torch.equal(r0[key][k], r1[key][k]) for k in r0[key])  # replicas agree

    torch.manual_seed(0)
    model = TinyModel()
    for key, n in (('sums', 9), ('one', 1)):
        whole = build_split_loader(tiny_cfg(train_indices=n), 'train', 'eval', batch_size=3,
                                   rank=0, world_size=1)
        ref = dataset_pass(whole, partial(prototype_fn, model), model=model)
        assert float(r0[key]['count']) == float(ref['count']) == n
        assert torch.equal(r0[key]['class_count'], ref['class_count'])
        ddp_means = mean_of(r0[key]['feat'], r0[key]['class_count'])
        ref_means = mean_of(ref['feat'], ref['class_count'])
        assert torch.allclose(ddp_means, ref_means, rtol=0, atol=1e-12, equal_nan=True)
        assert ddp_means.dtype == torch.float64
