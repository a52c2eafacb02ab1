"""Dataset passes: score a whole split once, in eval mode, identically with or without DDP.

Several methods need a statistic of a whole split rather than of the current
batch: D&R's representation purity (train split, test-time transforms), PMR's
class prototypes (train split, every epoch), G-Blending's weights (val split),
G2D's ``ranking='dataset'`` confidences (train split, training transforms).
This module is the one place that does it:

* :func:`build_split_loader` gives this rank's share of a split, every sample
  exactly once across ranks, with the pipeline of choice;
* :func:`dataset_pass` runs a function over it under ``no_grad`` and
  :func:`eval_mode`, adds up the per-batch *sums* it returns and all-reduces
  them, so every rank gets the sums over the whole split;
* means are ``sums / count`` (:func:`mean_of`), taken after the reduction,
  which is why a DDP run equals one process over the whole split (up to
  float64 rounding of the addition order).
"""
import copy
import random
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Tuple, Union)

import numpy as np
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.dataset import default_collate  # noqa: F401  (registers the collate functions)
from mmengine.dist import get_dist_info
from mmengine.model import is_model_wrapper
from mmengine.registry import FUNCTIONS, DefaultScope
from torch import nn
from torch.utils.data import DataLoader, Subset

from mmbal.registry import DATASETS
from .functional import all_reduce_sum

SPLITS = ('train', 'val', 'test')
PIPELINES = ('train', 'eval')
COUNT_KEY = 'count'
CfgLike = Union[Config, Mapping]


# --- eval mode ----------------------------------------------------------------------------------
@contextmanager
def eval_mode(*modules: Optional[nn.Module]) -> Iterator[None]:
    """Put ``modules`` in eval mode; on exit give every submodule back its own ``training`` flag.

    The flags are restored one by one (not with ``train()``, which would
    overwrite submodules that were deliberately in eval mode, e.g. frozen BN),
    also when the body raises. In eval mode BatchNorm uses and never updates
    its running statistics, so a pass leaves them untouched.

    Args:
        modules: Modules such as the encoders, the fusion and the head; ``None``
            entries (e.g. a model without a head) are skipped.
    """
    roots = []
    for i, module in enumerate(modules):
        if module is None:
            continue
        if not isinstance(module, nn.Module):
            raise TypeError(f'eval_mode: argument {i} is a {type(module).__name__}; '
                            f'expected an nn.Module or None')
        roots.append(module)
    flags = [(sub, sub.training) for root in roots for sub in root.modules()]
    try:
        for root in roots:
            root.eval()
        yield
    finally:
        for sub, flag in flags:
            sub.training = flag


# --- the split loader ---------------------------------------------------------------------------
@contextmanager
def _mmbal_scope() -> Iterator[None]:
    """Default scope ``'mmbal'`` while building, so nested builds (the dataset's
    pipeline, built by MMEngine's ``Compose``) find mmbal's transforms without
    the caller having run ``init_default_scope``."""
    current = DefaultScope.get_current_instance()
    if current is not None and current.scope_name == 'mmbal':
        yield
    else:
        with DefaultScope.overwrite_default_scope('mmbal'):
            yield


def _check_cfg(cfg: CfgLike) -> None:
    """A dict or an mmengine ``Config`` (which is not a ``Mapping`` but has ``get``)."""
    if not (isinstance(cfg, Mapping) or (hasattr(cfg, 'get') and hasattr(cfg, 'keys'))):
        raise TypeError(f'build_split_loader: cfg is a {type(cfg).__name__}; expected the '
                        f'full config (mmengine Config or dict)')


def _loader_cfg(cfg: CfgLike, split: str, why: str) -> Mapping:
    key = f'{split}_dataloader'
    loader = cfg.get(key)
    if loader is None:
        present = sorted(k for k in cfg.keys() if str(k).endswith('_dataloader'))
        raise KeyError(f'build_split_loader: {why} needs cfg.{key}, which the config lacks '
                       f'(dataloaders present: {present})')
    if not isinstance(loader, Mapping) or not isinstance(loader.get('dataset'), Mapping):
        raise ValueError(f'build_split_loader: cfg.{key} must be a dict with a dataset dict '
                         f'(as in configs/_base_/datasets/), got {loader!r}')
    return loader


def _pipeline_of(cfg: CfgLike, pipeline: Union[str, Sequence]) -> Tuple[List, Optional[bool]]:
    """``(transforms, test_mode)`` named by ``pipeline``; test_mode None: keep the split's."""
    if isinstance(pipeline, str):
        if pipeline not in PIPELINES:
            raise ValueError(f'build_split_loader: pipeline={pipeline!r}; expected one of '
                             f'{PIPELINES} or a list of transforms')
        source = 'train' if pipeline == 'train' else 'val'
        dataset = _loader_cfg(cfg, source, f'pipeline={pipeline!r}')['dataset']
        if 'pipeline' not in dataset:
            raise KeyError(f"build_split_loader: pipeline={pipeline!r} takes "
                           f"cfg.{source}_dataloader.dataset.pipeline, which is not set "
                           f"(dataset wrappers are not supported)")
        return list(copy.deepcopy(dataset['pipeline'])), bool(dataset.get('test_mode', False))
    if isinstance(pipeline, Sequence):
        return list(copy.deepcopy(pipeline)), None
    raise TypeError(f'build_split_loader: pipeline is a {type(pipeline).__name__}; expected '
                    f'one of {PIPELINES} or a list of transforms')


def _collate_fn(loader: Mapping) -> Callable:
    """The loader's collate function, as the Runner resolves it (default pseudo_collate)."""
    spec = loader.get('collate_fn', dict(type='pseudo_collate'))
    if callable(spec):
        return spec
    if not isinstance(spec, Mapping) or 'type' not in spec:
        raise TypeError(f'build_split_loader: collate_fn={spec!r}; expected a callable or a '
                        f"dict with a 'type'")
    kwargs = dict(spec)
    kind = kwargs.pop('type')
    fn = FUNCTIONS.get(kind) if isinstance(kind, str) else kind
    if not callable(fn):
        raise KeyError(f'build_split_loader: collate_fn type {kind!r} is not a registered '
                       f'function (mmengine FUNCTIONS, e.g. default_collate, pseudo_collate)')
    return partial(fn, **kwargs)


def build_split_loader(cfg: CfgLike, split: str = 'train',
                       pipeline: Union[str, Sequence[Union[dict, Callable]]] = 'eval',
                       batch_size: Optional[int] = None, num_workers: int = 0,
                       rank: Optional[int] = None, world_size: Optional[int] = None,
                       fraction: Optional[float] = None, seed: int = 0) -> DataLoader:
    """This rank's share of a split, in order, each sample on exactly one rank.

    The dataset is ``cfg.<split>_dataloader.dataset`` (``indices`` and every
    other argument kept) with its pipeline replaced, built through mmbal's
    ``DATASETS`` (no ``init_default_scope`` needed). Rank ``r`` of ``W`` takes
    indices ``r, r + W, ...``: no padding duplicates, no shuffling, no dropped
    tail, so sums over all ranks are sums over the split.

    Args:
        cfg: The full config (``runner.cfg``) with ``train_dataloader``,
            ``val_dataloader``, ``test_dataloader`` dicts.
        split: ``'train'``, ``'val'`` or ``'test'``: whose dataset to read.
        pipeline: ``'eval'`` (the val loader's transforms and ``test_mode``: the
            test-time view, e.g. D&R, PMR), ``'train'`` (the train loader's, e.g.
            G2D's dataset ranking), or an explicit list of transforms (the
            split's ``test_mode`` is kept).
        batch_size: Default: the split loader's ``batch_size``.
        num_workers: Loader workers (0: in this process).
        rank, world_size: Override the process group's (for tests and tools).
        fraction: Keep only a random ``round(fraction * N)`` of the split's ``N``
            samples (at least one), drawn from ``seed`` alone, so every rank
            draws the same subset and then takes its share of it (PMR's
            prototype subset). None: the whole split.
        seed: Seed of that draw.

    Returns:
        A ``DataLoader`` over a ``Subset`` of the dataset, collated with the
        train loader's ``collate_fn`` (the split loader's if there is no train
        loader), so batches look like training batches.
    """
    if split not in SPLITS:
        raise ValueError(f'build_split_loader: split={split!r}; expected one of {SPLITS}')
    _check_cfg(cfg)
    loader = _loader_cfg(cfg, split, f'split={split!r}')
    transforms, test_mode = _pipeline_of(cfg, pipeline)
    dataset_cfg = copy.deepcopy(dict(loader['dataset']))
    dataset_cfg['pipeline'] = transforms
    if test_mode is not None:
        dataset_cfg['test_mode'] = test_mode
    dist_rank, dist_world = get_dist_info()
    rank = dist_rank if rank is None else int(rank)
    world = dist_world if world_size is None else int(world_size)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f'build_split_loader: rank={rank}, world_size={world}; expected '
                         f'world_size >= 1 and 0 <= rank < world_size')
    batch_size = loader.get('batch_size', 1) if batch_size is None else batch_size
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f'build_split_loader: batch_size={batch_size!r}; expected an int >= 1')
    collate_src = cfg.get('train_dataloader') or loader
    collate_fn = _collate_fn(collate_src)
    with _mmbal_scope():
        dataset = DATASETS.build(dataset_cfg)
    indices = list(range(len(dataset)))
    if fraction is not None:
        indices = random_fraction(len(dataset), fraction, seed)
    return DataLoader(Subset(dataset, indices[rank::world]),
                      batch_size=int(batch_size), shuffle=False, drop_last=False,
                      num_workers=int(num_workers), collate_fn=collate_fn)


def random_fraction(size: int, fraction: float, seed: int) -> List[int]:
    """Sorted ``max(1, round(fraction * size))`` indices of ``range(size)``, drawn from ``seed``.

    A generator of its own: the global random states do not move, and every
    process that passes the same ``seed`` gets the same indices.
    """
    if (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
            or not 0 < fraction <= 1):
        raise ValueError(f'build_split_loader: fraction={fraction!r}; expected a number in '
                         f'(0, 1]')
    keep = min(size, max(1, int(round(fraction * size))))
    order = torch.randperm(size, generator=torch.Generator().manual_seed(int(seed)))
    return sorted(order[:keep].tolist())


# --- the pass -----------------------------------------------------------------------------------
def _batch_count(data: Any) -> int:
    """Samples in a batch: ``len(data_samples['gt_label'])`` or ``len(data_samples)``."""
    samples = data.get('data_samples') if isinstance(data, Mapping) else None
    if isinstance(samples, Mapping) and 'gt_label' in samples:
        return len(samples['gt_label'])
    if isinstance(samples, (list, tuple)):
        return len(samples)
    raise ValueError(f"dataset_pass: cannot count the batch's samples (no "
                     f"data_samples['gt_label'] nor a list of data_samples); let fn return "
                     f"{COUNT_KEY!r} itself")


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device('cpu')


@contextmanager
def kept_rng() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's global random states on exit."""
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    cuda = (torch.cuda.get_rng_state_all()
            if torch.cuda.is_available() and torch.cuda.is_initialized() else None)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def _reduce(sums: Dict[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    """Sum ``sums`` over ranks with one all_reduce of a flat float64 buffer.

    The keys and shapes are gathered first, so a rank whose shard is empty
    contributes zeros and a rank whose ``fn`` disagreed fails on every rank
    (instead of hanging or mixing up entries).
    """
    spec = [(k, tuple(v.shape)) for k, v in sorted(sums.items())]
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    specs = [spec if sums else None]
    if distributed:
        specs = [None] * dist.get_world_size()
        dist.all_gather_object(specs, spec if sums else None)
    known = [s for s in specs if s is not None]
    if not known:
        raise ValueError('dataset_pass: the loader yielded no batch on any rank')
    if any(s != known[0] for s in known):
        raise ValueError(f'dataset_pass: fn returned different keys/shapes on different '
                         f'ranks: {specs}')
    spec = known[0]
    if not distributed:
        return dict(sums)
    reduce_device = device
    if dist.get_backend() == 'nccl' and device.type != 'cuda':
        reduce_device = torch.device('cuda', torch.cuda.current_device())
    flat = torch.cat([(sums[k] if sums else torch.zeros(shape, dtype=torch.float64))
                      .to(reduce_device).reshape(-1) for k, shape in spec])
    flat = all_reduce_sum(flat).to(device)
    out, start = {}, 0
    for k, shape in spec:
        size = int(np.prod(shape, dtype=np.int64))
        out[k] = flat[start:start + size].reshape(shape)
        start += size
    return out


def dataset_pass(loader: Iterable, fn: Callable[[Any], Mapping[str, torch.Tensor]],
                 model: Optional[nn.Module] = None, device: Optional[Union[str, torch.device]]
                 = None, keep_rng: bool = True) -> Dict[str, torch.Tensor]:
    """Global sums of ``fn`` over every batch of ``loader`` on every rank.

    Runs under ``no_grad`` and, when ``model`` is given, :func:`eval_mode`
    (flags restored, BN statistics untouched); each batch then goes through
    ``model.data_preprocessor(data, False)`` (stacked inputs on the model's
    device) before ``fn``. ``fn`` returns *sums* over the batch's samples, never
    means: the helper adds them up in float64 and all-reduces them, so
    ``sums[k] / sums['count']`` over 2 ranks equals one process over the whole
    split. The sample count is added under ``'count'``: the number of
    ``data_samples['gt_label']`` (or of the list ``data_samples``), unless
    ``fn`` returns ``'count'`` itself (e.g. when it skips samples).

    Args:
        loader: Batches, typically :func:`build_split_loader` (each rank its own share).
        fn: ``fn(data) -> {key: tensor}``; any shape per key, the same keys and
            shapes every batch and every rank (e.g. ``(M,)`` confidence sums,
            ``(K, C)`` per-class feature sums with ``(K,)`` counts, see
            :func:`per_class_sums`).
        model: Put in eval mode; its data preprocessor prepares each batch
            (model wrappers are unwrapped for that).
        device: Where the sums live and are returned. Default: the model's
            device, else CPU.
        keep_rng: Restore the global random states afterwards, so a pass
            (random training transforms included) does not shift the
            randomness of the training that follows.

    Returns:
        ``{key: float64 tensor}``, the same on every rank, ``'count'`` a 0-d tensor.
    """
    if device is None:
        device = _model_device(model) if model is not None else torch.device('cpu')
    device = torch.device(device)
    preprocess = None
    if model is not None:
        preprocess = (model.module if is_model_wrapper(model) else model).data_preprocessor
    sums: Dict[str, torch.Tensor] = {}
    with torch.no_grad(), eval_mode(model), (kept_rng() if keep_rng else nullcontext()):
        for step, data in enumerate(loader):
            if preprocess is not None:
                data = preprocess(data, False)
            out = fn(data)
            if not isinstance(out, Mapping):
                raise TypeError(f'dataset_pass: fn returned a {type(out).__name__}; expected '
                                f'a dict of per-batch sums')
            out = {k: torch.as_tensor(v).detach().to(device=device, dtype=torch.float64)
                   for k, v in out.items()}
            if COUNT_KEY not in out:
                out[COUNT_KEY] = torch.tensor(float(_batch_count(data)), dtype=torch.float64,
                                              device=device)
            if step == 0:
                sums = out
                continue
            if set(out) != set(sums):
                raise ValueError(f'dataset_pass: batch {step} returned keys {sorted(out)}, '
                                 f'batch 0 {sorted(sums)}; fn must return the same keys')
            for k, v in out.items():
                if v.shape != sums[k].shape:
                    raise ValueError(f'dataset_pass: {k!r} has shape {tuple(v.shape)} in '
                                     f'batch {step} but {tuple(sums[k].shape)} in batch 0')
                sums[k] = sums[k] + v
    return _reduce(sums, device)


# --- helpers for fn and for the means -----------------------------------------------------------
def per_class_sums(values: torch.Tensor, labels: torch.Tensor, num_classes: int
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-class sums and counts of a batch (e.g. for class prototypes).

    Args:
        values: (B, ...) per-sample values, e.g. (B, C) features.
        labels: (B,) class indices in ``[0, num_classes)``.
        num_classes: K.
    Returns:
        ``(sums (K, ...), counts (K,))``, float64, detached.
    """
    labels = torch.as_tensor(labels, device=values.device).reshape(-1).long()
    if labels.numel() != values.shape[0]:
        raise ValueError(f'per_class_sums: {labels.numel()} labels for {values.shape[0]} '
                         f'values; expected one label per row')
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f'per_class_sums: labels span [{int(labels.min())}, '
                         f'{int(labels.max())}]; expected [0, {num_classes - 1}]')
    values = values.detach().to(torch.float64)
    sums = values.new_zeros((num_classes, ) + tuple(values.shape[1:]))
    sums.index_add_(0, labels, values)
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    return sums, counts


def mean_of(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``total / count`` with ``count`` broadcast over ``total``'s trailing dimensions.

    Args:
        total: (...) or per class (K, ...), e.g. ``sums['feat']``.
        count: () or (K,), e.g. ``sums['count']`` or per-class counts.
    Returns:
        Same shape as ``total``; an empty class (count 0) gives NaN, never a silent 0.
    """
    count = count.to(total.dtype)
    if count.dim() > total.dim() or tuple(total.shape[:count.dim()]) != tuple(count.shape):
        raise ValueError(f'mean_of: count of shape {tuple(count.shape)} does not lead total '
                         f'of shape {tuple(total.shape)}')
    return total / count.reshape(tuple(count.shape) + (1, ) * (total.dim() - count.dim()))
