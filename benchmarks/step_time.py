"""Training-step time of mmbal's Runner path against a plain PyTorch loop.

Both paths train the same model config on the same in-memory synthetic data
(fixed seed), with the same batch size, optimizer (SGD, momentum 0.9, weight
decay 1e-4), ``default_collate``, ``num_workers=0`` and thread count, in one
process. Blocks of iterations are interleaved (plain, variant 1, variant 2,
plain, ... with the order rotated every repeat) so that drift cancels; the
first ``--warmup`` iterations of every block are discarded.

* **plain**: ``DataLoader`` -> encoders -> fusion -> head -> ``F.cross_entropy``
  -> ``backward`` -> ``SGD.step`` -> ``zero_grad``.
* **variants** (``mmbal``, ...): an ``MMBalRunner`` built from a config dict
  (``configs/_base_/default_runtime.py`` + model + a registered in-memory
  dataset + ``DefaultSampler``), trained with the real ``BalanceTrainLoop`` (an
  ``EpochBasedTrainLoop`` whose iterations run mmbal's training step).
  One epoch is one block. A hook of priority HIGHEST stamps
  ``before_train_iter`` and one of priority LOWEST stamps ``after_train_iter``,
  so the measured step covers data preprocessing, forward, loss, backward,
  optimizer step and every other hook's per-iteration work.

Step time excludes the data-loader fetch (``next(iterator)``; for the Runner the
gap between one iteration's end stamp and the next one's start stamp); "step +
fetch" includes it. Peak memory of each path is measured in a fresh ``spawn``
subprocess (``VmHWM`` of ``/proc/self/status``; ``max_memory_allocated`` on
CUDA) that runs one block.

A variant is a dict of config overrides (``model``, ``default_hooks``, ...) and
extra ``custom_hooks``; add balance-method rows to :data:`VARIANTS`, e.g.
``'ogm_ge': dict(custom_hooks=[dict(type='OGMGEHook', ...)])``.

Example (the demo setting, ~1.5 minutes on 2 CPU cores; results in benchmarks/README.md)::

    python benchmarks/step_time.py --setting demo --out work_dirs/benchmarks/step_time_demo.json
"""
from __future__ import annotations

import argparse
import copy
import cProfile
import io
import json
import math
import os
import os.path as osp
import platform
import pstats
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from torch.utils.data import DataLoader, Dataset

import mmbal
from mmbal.engine import BalanceTrainStep, build_runner
from mmbal.registry import DATASETS, HOOKS, MODELS

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_RUNTIME = osp.join(REPO_ROOT, 'configs', '_base_', 'default_runtime.py')

# ----------------------------------------------------------------------------- settings
SETTINGS: Dict[str, dict] = {
    # AV-Digits demo: spectrogram 1x129x63, one 1x28x28 frame, ResNet18 width 16.
    'demo': dict(audio_shape=(1, 129, 63), visual_shape=(1, 1, 28, 28), base_channels=16,
                 visual_in_channels=1, num_classes=10, batch_size=64,
                 iters=18, warmup=2, repeats=10),
    # CREMA-D (the papers): spectrogram 1x257x188, one 3x224x224 frame, width 64.
    # Several seconds per step on a CPU: few steps only.
    'paper': dict(audio_shape=(1, 257, 188), visual_shape=(3, 1, 224, 224), base_channels=64,
                  visual_in_channels=3, num_classes=6, batch_size=64,
                  iters=3, warmup=1, repeats=2),
}

# ----------------------------------------------------------------------------- variants
# Each variant is timed against the same plain loop. Keys: ``description``,
# ``cfg`` (nested overrides merged into the runner config; ``model`` entries
# override the model config), ``custom_hooks`` (placed between the timing hooks).
_NO_DEFAULT_HOOKS = dict(runtime_info=None, timer=None, logger=None, param_scheduler=None,
                         checkpoint=None, sampler_seed=None)
VARIANTS: Dict[str, dict] = {
    'mmbal': dict(description='Runner, concat fusion, train_accuracy=True, default hooks'),
    'mmbal_noacc': dict(description='as mmbal with model.train_accuracy=False',
                        cfg=dict(model=dict(train_accuracy=False))),
    # (A huge LoggerHook interval is not enough: it still logs at every epoch end.)
    'mmbal_nolog': dict(description='as mmbal without the LoggerHook (diagnostic)',
                        cfg=dict(default_hooks=dict(logger=None))),
    'mmbal_bare': dict(description='train_accuracy=False and no default hooks at all: '
                                   'train_step only (diagnostic)',
                       cfg=dict(model=dict(train_accuracy=False),
                                default_hooks=_NO_DEFAULT_HOOKS)),
    'mmbal_channels_last': dict(
        description='as mmbal with the ResNet18 weights channels-last (the AV-Digits configs)',
        cfg=dict(model=dict(encoders=dict(audio=dict(channels_last=True),
                                          visual=dict(channels_last=True))))),
    # Balance methods: each hook's cost relative to plain joint training (the 'mmbal' row).
    'pdmp': dict(description='mmbal + PDMPHook (gamma_p 15, m_p visual, m_o audio)',
                 custom_hooks=[dict(type='PDMPHook', gamma_p=15.0, dominant='visual',
                                    optim_dominant='audio')]),
    'ogm': dict(description='mmbal + OGMGEHook variant OGM',
                custom_hooks=[dict(type='OGMGEHook', alpha=0.8, variant='OGM')]),
    'ogm_ge': dict(description='mmbal + OGMGEHook variant OGM_GE (GE noise)',
                   custom_hooks=[dict(type='OGMGEHook', alpha=0.8, variant='OGM_GE')]),
    'arl': dict(description='mmbal + ARLHook (gamma 4, T 4; probe logits, unimodal losses)',
                custom_hooks=[dict(type='ARLHook', gamma=4.0, temperature=4.0)]),
    # G2D rows: the teachers are random-init unimodal models written by runner_config (a
    # trained teacher costs the same); tau puts half the blocks in the prioritized phase.
    'g2d': dict(description='mmbal + G2DHook (online teachers, SMP)',
                custom_hooks=[dict(type='G2DHook')]),
    'g2d_cache': dict(description='as g2d with the per-sample teacher cache',
                      custom_hooks=[dict(type='G2DHook', cache=True)]),
    # M + 2 backward passes: d CE(f)/d(encoders), one per aux head's CE, the step's own.
    'mmpareto': dict(description='mmbal + MMParetoHook (aux heads, per-loss gradients, gamma 1.5)',
                     custom_hooks=[dict(type='MMParetoHook', gamma=1.5)]),
    # The step only (aux heads and the blended loss): the estimation's cost is counted in copy
    # epochs (docs/methods/gblend.md), so this row fixes the weights.
    'gblend': dict(description='mmbal + GBlendHook with fixed weights (aux heads, blended loss, '
                               'no estimation)',
                   custom_hooks=[dict(type='GBlendHook', mode='offline',
                                      weights=dict(audio=0.2, visual=0.3, fused=0.5))]),
    # MLA changes the model (one head shared by both modalities, sized for the setting by
    # runner_config) and runs two sub-steps (forward, backward, SGD step) per batch.
    'mla': dict(description='mmbal + MLAHook (SharedHeadFusion, one sub-step per modality, '
                            'head gradient projection)',
                cfg=dict(model=dict(fusion=dict(type='SharedHeadFusion'), head=None)),
                custom_hooks=[dict(type='MLAHook')]),
    # ReconBoost changes the model (the shared head with beta) and, in its boosting phase, trains
    # one encoder while the others run under no_grad as targets (pretrained: they are in the
    # ensemble from the start); epochs_per_stage keeps every timed block in that phase.
    'reconboost': dict(description='mmbal + ReconBoostHook, boosting phase (one trained '
                                   'encoder, the other encoded as target)',
                       cfg=dict(model=dict(fusion=dict(type='SharedHeadFusion',
                                                       eval_fusion='boost', boost_rate=1.0),
                                           head=None)),
                       custom_hooks=[dict(type='ReconBoostHook', epochs_per_stage=10**6,
                                          pretrained=True)]),
    # Greedy changes the model (MMTM blocks between the encoders' stages 1-3, one classifier
    # per branch) and reads every gradient after backward; no warm-up, so that re-balancing
    # steps (the cared branch on its running-average excitation) are timed too.
    'greedy': dict(description='mmbal + GreedyHook (MMTMFusion after stages 1-3, LateFusion, '
                               'speed ratios after backward, no warm-up)',
                   cfg=dict(model=dict(encoder_fusion=dict(type='MMTMFusion', stages=(1, 2, 3)),
                                       fusion=dict(type='LateFusion'), head=None)),
                   custom_hooks=[dict(type='GreedyHook', warmup_epochs=0)]),
    # AGM: M + 1 extra eval-mode forwards per step (each modality muted in turn) for the
    # Shapley mono-modal logits, then the per-logit gradient scales and its clipping.
    'agm': dict(description='mmbal + AGMHook (alpha 1.5, muted-input passes, clipping)',
                custom_hooks=[dict(type='AGMHook', alpha=1.5, clamp=10.0, clip_threshold=1.0,
                                   clip_max_norm=1.0)]),
    # PMR: the prototypes come from a pass at each epoch (block) start, untimed (the whole
    # small synthetic set: a 10 % subset of it can miss a class); the step adds the prototype
    # CE and entropy terms (E_r beyond every block).
    'pmr': dict(description='mmbal + PMRHook (prototype CE + entropy, E_r = all blocks)',
                custom_hooks=[dict(type='PMRHook', per_epochs=10**6, alpha=1.0, mu=1e-2,
                                   momentum=0.2, subset=1.0, pipeline='train')]),
    # MMCosine changes only the classifier (per-modality cosine logits, scale 10); no hook.
    'mmcosine': dict(description='mmbal with CosineFusion (s = 10), no hook',
                     cfg=dict(model=dict(fusion=dict(type='CosineFusion', scale=10.0),
                                         head=None))),
    # AIM rows: the class means come from one pass over the synthetic set (its items are
    # already tensors: an empty pipeline), untimed in before_train. switch_epoch 0 times the
    # L_mod phase (the blocks re-run with a graph); 'aim_pre' the phase before E.
    'aim': dict(description='mmbal + AIMHook after E (DAP step, PAM modules, L_mod through '
                            'the re-run blocks; kron maps, rank 8)',
                custom_hooks=[dict(type='AIMHook', switch_epoch=0, class_mean_pipeline=[])]),
    'aim_pre': dict(description='mmbal + AIMHook before E (CE + L_pdm + DAP step, scores '
                                'without a graph)',
                    custom_hooks=[dict(type='AIMHook', switch_epoch=10**6,
                                       class_mean_pipeline=[])]),
    'aim_nopam': dict(description='as aim with pam=False (no decoupling modules)',
                      custom_hooks=[dict(type='AIMHook', switch_epoch=0, pam=False,
                                         class_mean_pipeline=[])]),
}
DEFAULT_VARIANTS = ('mmbal', 'mmbal_noacc', 'pdmp', 'ogm', 'ogm_ge', 'arl', 'g2d', 'g2d_cache',
                    'mmpareto', 'mla')


@dataclass
class BenchConfig:
    """Everything that defines one benchmark run (picklable for subprocesses)."""

    setting: str = 'demo'
    batch_size: int = 64
    iters: int = 18
    warmup: int = 2
    repeats: int = 10
    device: str = 'cpu'
    threads: int = 2
    seed: int = 0
    lr: float = 1e-3
    variants: Tuple[str, ...] = DEFAULT_VARIANTS
    extra_blocks: int = 0  # untimed Runner blocks (--breakdown, --profile)
    shape: dict = field(default_factory=dict)

    @property
    def block_iters(self) -> int:
        """Iterations per block (= one epoch of the synthetic dataset)."""
        return self.warmup + self.iters

    @property
    def num_samples(self) -> int:
        return self.batch_size * self.block_iters


def model_cfg(bc: BenchConfig) -> dict:
    """The model config both paths build."""
    s = bc.shape
    return dict(
        type='MultimodalClassifier',
        encoders=dict(
            audio=dict(type='ResNet18', in_channels=s['audio_shape'][0],
                       base_channels=s['base_channels']),
            visual=dict(type='ResNet18', in_channels=s['visual_in_channels'],
                        base_channels=s['base_channels'])),
        fusion=dict(type='ConcatFusion'),
        head=dict(type='LinearClsHead', num_classes=s['num_classes']),
        modality_logits='analytic', train_accuracy=True,
        data_preprocessor=dict(type='MultimodalDataPreprocessor'))


def dataset_cfg(bc: BenchConfig) -> dict:
    """The registered synthetic dataset both paths read."""
    s = bc.shape
    return dict(type='StepTimeBenchDataset', num_samples=bc.num_samples,
                audio_shape=tuple(s['audio_shape']), visual_shape=tuple(s['visual_shape']),
                num_classes=s['num_classes'], seed=bc.seed,
                pipeline=[])  # set, so that a hook's pass over the train split finds it


# ----------------------------------------------------------------------------- dataset
_DATA_CACHE: Dict[tuple, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


@DATASETS.register_module()
class StepTimeBenchDataset(Dataset):
    """Fixed random spectrograms, frames and labels held in memory.

    Instances with the same arguments share one set of tensors, so the plain
    loop and every Runner read the very same data. Items have the layout of
    mmbal datasets after their pipeline.
    """

    def __init__(self, num_samples: int, audio_shape: Sequence[int],
                 visual_shape: Sequence[int], num_classes: int, seed: int = 0,
                 pipeline: Sequence = (), test_mode: bool = False) -> None:
        if list(pipeline):  # a dataset pass (AIM's class means) may set an empty one
            raise ValueError(f'StepTimeBenchDataset: pipeline={pipeline!r}; its items are '
                             f'fixed tensors, expected no transforms')
        key = (num_samples, tuple(audio_shape), tuple(visual_shape), num_classes, seed)
        if key not in _DATA_CACHE:
            g = torch.Generator().manual_seed(seed)
            _DATA_CACHE[key] = (
                torch.randn((num_samples, *audio_shape), generator=g),
                torch.randn((num_samples, *visual_shape), generator=g),
                torch.randint(num_classes, (num_samples, ), generator=g))
        self.audio, self.visual, labels = _DATA_CACHE[key]
        self.labels: List[int] = labels.tolist()
        self.metainfo = dict(classes=tuple(str(i) for i in range(num_classes)))
        self.pipeline: List = []  # items are fixed tensors, so a teacher cache is valid
        self.test_mode = test_mode  # a dataset pass sets it; the items do not depend on it

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> dict:
        return {'inputs': {'audio': self.audio[idx], 'visual': self.visual[idx]},
                'data_samples': {'gt_label': self.labels[idx], 'sample_idx': idx}}


# ----------------------------------------------------------------------------- hooks
def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


@HOOKS.register_module()
class StepTimeStartHook(Hook):
    """Stamps ``perf_counter`` before any other hook's ``before_train_iter``."""

    priority = 'HIGHEST'

    def __init__(self) -> None:
        self.stamps: List[float] = []
        self.cpu: List[float] = []

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.cpu.append(time.process_time())
        self.stamps.append(time.perf_counter())


@HOOKS.register_module()
class StepTimeEndHook(Hook):
    """Stamps ``perf_counter`` after every other hook's ``after_train_iter``."""

    priority = 'LOWEST'

    def __init__(self, device: str = 'cpu') -> None:
        self.device = device
        self.stamps: List[float] = []
        self.cpu: List[float] = []

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        _sync(self.device)
        self.stamps.append(time.perf_counter())
        self.cpu.append(time.process_time())


@HOOKS.register_module()
class StepTimeBlockGateHook(Hook):
    """Ends ``train_loop.run()`` after each epoch so blocks can be interleaved.

    Uses the loop's ``stop_training`` flag (as ``EarlyStoppingHook`` does);
    the benchmark clears it and calls ``train_loop.run()`` for the next block.
    """

    priority = 'LOWEST'

    def after_train_epoch(self, runner) -> None:
        runner.train_loop.stop_training = True


# ----------------------------------------------------------------------------- paths
@dataclass
class BlockTimes:
    """Per-iteration times (s) of one block; ``fetch`` is NaN when unknown.

    ``cpu`` is the process CPU time (all threads) of each step: unlike wall
    time it grows less when other processes compete for the cores. ``wall`` is
    the whole block, so ``wall - sum(step) - sum(fetch[1:])`` is the per-epoch
    work outside the iterations (epoch hooks, checkpoint saving, first fetch).
    """

    step: List[float]
    fetch: List[float]
    cpu: List[float]
    wall: float = math.nan

    @property
    def outside_iters(self) -> float:
        return self.wall - sum(self.step) - sum(self.fetch[1:])


class PlainPath:
    """The plain PyTorch loop over the same model config and data."""

    name = 'plain'

    def __init__(self, bc: BenchConfig) -> None:
        self.bc = bc
        init_default_scope('mmbal')
        torch.manual_seed(bc.seed)
        self.model = MODELS.build(model_cfg(bc)).to(bc.device)
        self.model.train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=bc.lr, momentum=0.9,
                                         weight_decay=1e-4)
        dataset = DATASETS.build(dataset_cfg(bc))
        self.loader = DataLoader(dataset, batch_size=bc.batch_size, shuffle=True,
                                 num_workers=0, collate_fn=default_collate,
                                 generator=torch.Generator().manual_seed(bc.seed))
        assert len(self.loader) == bc.block_iters

    def run_block(self) -> BlockTimes:
        """One epoch: per-iteration fetch and step times."""
        model, opt, device = self.model, self.optimizer, self.bc.device
        steps, fetches, cpu = [], [], []
        t_prev = t_block = time.perf_counter()
        it = iter(self.loader)
        for _ in range(self.bc.block_iters):
            batch = next(it)
            c_data = time.process_time()
            t_data = time.perf_counter()
            inputs = {m: x.to(device, non_blocking=True) for m, x in batch['inputs'].items()}
            labels = batch['data_samples']['gt_label'].to(device, non_blocking=True)
            feats = {m: enc(inputs[m]) for m, enc in model.encoders.items()}
            logits = model.head(model.fusion(feats))
            loss = F.cross_entropy(logits, labels)
            loss.backward()
            opt.step()
            opt.zero_grad()
            _sync(device)
            t_end = time.perf_counter()
            cpu.append(time.process_time() - c_data)
            fetches.append(t_data - t_prev)
            steps.append(t_end - t_data)
            t_prev = t_end
        return BlockTimes(steps, fetches, cpu, time.perf_counter() - t_block)


def _merge(base: dict, override: dict) -> dict:
    """Recursive dict merge; a ``None`` value replaces (e.g. disables a default hook)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def runner_config(bc: BenchConfig, variant: str, work_dir: str,
                  log_level: Optional[str] = None) -> Config:
    """Default runtime + model + data + SGD + epoch-based training, with the variant's overrides."""
    spec = VARIANTS[variant]
    cfg = Config.fromfile(DEFAULT_RUNTIME)
    overrides = copy.deepcopy(spec.get('cfg', {}))
    model = _merge(model_cfg(bc), overrides.pop('model', {}))
    if model.get('head') is None:  # the fusion ends in class logits: size it for the setting
        model['fusion'].setdefault('num_classes', bc.shape['num_classes'])
    cfg.model = model
    cfg.work_dir = work_dir
    cfg.experiment_name = f'step_time_{variant}'
    cfg.train_dataloader = dict(
        batch_size=bc.batch_size, num_workers=0, persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=True),
        collate_fn=dict(type='default_collate'),
        dataset=dataset_cfg(bc))
    cfg.optim_wrapper = dict(type='OptimWrapper', optimizer=dict(
        type='SGD', lr=bc.lr, momentum=0.9, weight_decay=1e-4))
    # One epoch per block (+ extra for --breakdown/--profile); the gate hook ends
    # each ``train_loop.run()`` after one epoch.
    cfg.train_cfg = dict(type='BalanceTrainLoop', max_epochs=bc.repeats + bc.extra_blocks,
                         val_interval=1)
    cfg.randomness = dict(seed=bc.seed, deterministic=False)
    # No validation here, as tools/train.py --no-validate does.
    cfg.default_hooks.checkpoint.pop('save_best', None)
    cfg.merge_from_dict(overrides)
    method_hooks = copy.deepcopy(list(spec.get('custom_hooks', [])))
    for hook in method_hooks:
        if hook['type'] == 'G2DHook':
            epochs = cfg.train_cfg['max_epochs']
            hook.update(tau=((epochs + 1) // 2, epochs // 2),
                        teacher_checkpoints=_teacher_checkpoints(bc, work_dir))
    cfg.custom_hooks = ([dict(type='StepTimeStartHook')] + method_hooks
                        + [dict(type='StepTimeEndHook', device=bc.device),
                           dict(type='StepTimeBlockGateHook')])
    if log_level is not None:
        cfg.log_level = log_level
    return cfg


def _teacher_checkpoints(bc: BenchConfig, work_dir: str) -> Dict[str, str]:
    """Random-init unimodal teachers of the benchmark model, saved for G2DHook to load."""
    from mmbal.balance.teachers import default_teacher_model
    init_default_scope('mmbal')
    os.makedirs(work_dir, exist_ok=True)
    paths = {}
    for m, enc in model_cfg(bc)['encoders'].items():
        teacher = MODELS.build(default_teacher_model(enc, m, bc.shape['num_classes']))
        paths[m] = osp.join(work_dir, f'teacher_{m}.pth')
        torch.save({'state_dict': teacher.state_dict()}, paths[m])
    return paths


class RunnerPath:
    """An ``MMBalRunner`` trained one epoch (= one block) at a time."""

    def __init__(self, bc: BenchConfig, variant: str, work_dir: str,
                 log_level: Optional[str] = None) -> None:
        self.bc, self.name = bc, variant
        cfg = runner_config(bc, variant, work_dir, log_level)
        self.runner = build_runner(cfg, osp.join(work_dir, f'{variant}.py'))
        hooks = self.runner.hooks
        self.start = next(h for h in hooks if isinstance(h, StepTimeStartHook))
        self.end = next(h for h in hooks if isinstance(h, StepTimeEndHook))
        # The span must open before and close after every other hook's per-iter work.
        assert hooks[0] is self.start, [type(h).__name__ for h in hooks]
        after_iter = [h for h in hooks if type(h).after_train_iter is not Hook.after_train_iter]
        assert after_iter[-1] is self.end, [type(h).__name__ for h in hooks]
        self.started = False

    def run_block(self) -> BlockTimes:
        """One epoch through the real loop: per-iteration step and fetch times."""
        for h in (self.start, self.end):
            h.stamps.clear()
            h.cpu.clear()
        t_block = time.perf_counter()
        if not self.started:
            self.started = True
            self.runner.train()
        else:
            self.runner.train_loop.stop_training = False
            self.runner.train_loop.run()
        wall = time.perf_counter() - t_block
        s, e = self.start.stamps, self.end.stamps
        assert len(s) == len(e) == self.bc.block_iters, (len(s), len(e))
        steps = [b - a for a, b in zip(s, e)]
        fetches = [math.nan] + [s[i] - e[i - 1] for i in range(1, len(s))]
        cpu = [b - a for a, b in zip(self.start.cpu, self.end.cpu)]
        return BlockTimes(steps, fetches, cpu, wall)


# ----------------------------------------------------------------------------- memory
def _proc_status_mib(key: str) -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) / 1024  # kB -> MiB
    return math.nan


def _memory_child(bc: BenchConfig, path: str) -> dict:
    """In a fresh process: build one path, run one block, report peak memory.

    ``delta_mib`` is the peak over the RSS after imports and the synthetic data
    (model, optimizer state, activations, Runner and hook state).
    """
    torch.set_num_threads(bc.threads)
    init_default_scope('mmbal')
    # Materialize the (shared, cached) data first so both paths start from the same RSS.
    DATASETS.build(dataset_cfg(bc))
    rss_before = _proc_status_mib('VmRSS')
    with tempfile.TemporaryDirectory(prefix='mmbal_step_time_') as tmp:
        runnable = (PlainPath(bc) if path == 'plain' else
                    RunnerPath(bc, path, tmp, log_level='WARNING'))
        if bc.device.startswith('cuda'):
            torch.cuda.reset_peak_memory_stats()
        runnable.run_block()
        out = dict(vm_hwm_mib=_proc_status_mib('VmHWM'), vm_rss_before_mib=rss_before)
        out['delta_mib'] = out['vm_hwm_mib'] - rss_before
        if bc.device.startswith('cuda'):
            out['cuda_max_allocated_mib'] = torch.cuda.max_memory_allocated() / 2**20
    return out


def measure_memory(bc: BenchConfig, paths: Sequence[str]) -> Dict[str, dict]:
    """Peak memory of each path, each in its own ``spawn`` subprocess."""
    ctx = get_context('spawn')
    results = {}
    for path in paths:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as ex:
            results[path] = ex.submit(_memory_child, bc, path).result()
    return results


# ----------------------------------------------------------------------------- timing
def run_interleaved(paths: Sequence[Any], repeats: int) -> Dict[str, List[BlockTimes]]:
    """``repeats`` rounds of one block per path; the order rotates every round."""
    blocks: Dict[str, List[BlockTimes]] = {p.name: [] for p in paths}
    n = len(paths)
    for r in range(repeats):
        for k in range(n):
            p = paths[(r + k) % n]
            blocks[p.name].append(p.run_block())
    return blocks


def _ms(x: float) -> float:
    return round(1e3 * x, 3)


def summarize(blocks: Dict[str, List[BlockTimes]], warmup: int, baseline: str = 'plain') -> dict:
    """Median/mean step, step+fetch and fetch per path, ratios to the baseline."""
    stats: Dict[str, dict] = {}
    for name, bl in blocks.items():
        steps = [t for b in bl for t in b.step[warmup:]]
        fetch = [t for b in bl for t in b.fetch[warmup:]]
        total = [s + f for b in bl for s, f in zip(b.step[warmup:], b.fetch[warmup:])]
        stats[name] = dict(
            n=len(steps),
            median_step_ms=_ms(statistics.median(steps)),
            mean_step_ms=_ms(statistics.fmean(steps)),
            p90_step_ms=_ms(sorted(steps)[int(0.9 * (len(steps) - 1))]),
            median_fetch_ms=_ms(statistics.median(fetch)),
            median_step_fetch_ms=_ms(statistics.median(total)),
            median_step_cpu_ms=_ms(statistics.median([t for b in bl for t in b.cpu[warmup:]])),
            block_median_step_ms=[_ms(statistics.median(b.step[warmup:])) for b in bl])
        stats[name]['best_block_median_step_ms'] = min(stats[name]['block_median_step_ms'])
        # The first Runner block also holds runner.train()'s setup: leave it out.
        outside = [b.outside_iters for b in (bl[1:] if len(bl) > 1 else bl)]
        stats[name]['median_outside_iters_per_block_ms'] = _ms(statistics.median(outside))
    base = stats[baseline]
    for name, s in stats.items():
        s['ratio_step'] = round(s['median_step_ms'] / base['median_step_ms'], 4)
        s['ratio_step_fetch'] = round(s['median_step_fetch_ms'] / base['median_step_fetch_ms'], 4)
        s['ratio_mean_step'] = round(s['mean_step_ms'] / base['mean_step_ms'], 4)
        paired = [a / b for a, b in zip(s['block_median_step_ms'], base['block_median_step_ms'])]
        s['ratio_step_paired_blocks'] = round(statistics.median(paired), 4)
        s['ratio_best_block'] = round(
            s['best_block_median_step_ms'] / base['best_block_median_step_ms'], 4)
        s['ratio_step_cpu'] = round(s['median_step_cpu_ms'] / base['median_step_cpu_ms'], 4)
    return stats


def profile_block(path: RunnerPath, top: int) -> str:
    """cProfile one block of a Runner path (not timed); top functions by own and total time."""
    prof = cProfile.Profile()
    prof.enable()
    path.run_block()
    prof.disable()
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf).strip_dirs()
    st.sort_stats('tottime').print_stats(top)
    st.sort_stats('cumulative').print_stats(top)
    return buf.getvalue()


PLAIN_EQUIVALENT = ('  forward (encoders, fusion, head)', '    loss_module (cross-entropy)',
                    '  optim_wrapper.backward', '  optimizer.step', '  optim_wrapper.zero_grad')


def breakdown(path: RunnerPath, blocks: int) -> Dict[str, dict]:
    """Median and mean ms per iteration of each part of a Runner step (untimed blocks).

    Wraps every hook's ``before_train_iter``/``after_train_iter`` and the parts
    of the training step (preprocessor, forward, loss, ``parse_losses``, backward,
    optimizer step, zero_grad) with ``perf_counter``;
    warm-up iterations are not counted. Nested entries are indented. The row
    ``runner overhead`` is, per iteration, the timed span minus the work the
    plain loop also does (:data:`PLAIN_EQUIVALENT`): the cost of everything
    mmbal adds, robust to slow-downs of the big parts.
    """
    runner, bc = path.runner, path.bc
    model, optim = runner.model, runner.optim_wrapper
    cur: Dict[str, float] = {}
    per_iter: Dict[str, List[float]] = {}
    patched: List[Tuple[Any, str]] = []

    def wrap(obj: Any, attr: str, label: str) -> None:
        fn = getattr(obj, attr)
        per_iter[label] = []

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                cur[label] = cur.get(label, 0.0) + time.perf_counter() - t
        setattr(obj, attr, timed)
        patched.append((obj, attr))

    for h in runner.hooks:
        if isinstance(h, (StepTimeStartHook, StepTimeEndHook)):
            continue
        for attr in ('before_train_iter', 'after_train_iter'):
            if getattr(type(h), attr) is not getattr(Hook, attr):
                wrap(h, attr, f'hook {type(h).__name__}.{attr}')
    # The loop builds a new BalanceTrainStep per block: time its class's __call__.
    per_iter['train step'] = []
    call = BalanceTrainStep.__call__

    def timed_call(step, *args, **kwargs):
        t = time.perf_counter()
        try:
            return call(step, *args, **kwargs)
        finally:
            cur['train step'] = cur.get('train step', 0.0) + time.perf_counter() - t
    BalanceTrainStep.__call__ = timed_call
    wrap(model.data_preprocessor, 'forward', '  data_preprocessor')
    wrap(model, 'run', '  forward (encoders, fusion, head)')
    wrap(model, 'loss', '  model.loss')
    wrap(model.loss_module, 'forward', '    loss_module (cross-entropy)')
    wrap(model, 'train_metrics', '  model.train_metrics (train accuracy)')
    wrap(model, 'parse_losses', '  parse_losses')
    wrap(optim, 'backward', '  optim_wrapper.backward')
    wrap(optim.optimizer, 'step', '  optimizer.step')
    wrap(optim, 'zero_grad', '  optim_wrapper.zero_grad')
    spans: List[float] = []
    overhead: List[float] = []

    class _Collect(Hook):
        """Moves this iteration's totals into ``per_iter`` (runs after the end stamp)."""

        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                             outputs=None) -> None:
            if len(path.end.stamps) > bc.warmup:
                for k in per_iter:
                    per_iter[k].append(cur.get(k, 0.0))
                span = path.end.stamps[-1] - path.start.stamps[-1]
                spans.append(span)
                overhead.append(span - sum(cur.get(k, 0.0) for k in PLAIN_EQUIVALENT))
            cur.clear()

    collect = _Collect()
    runner._hooks.append(collect)  # after the end hook: not inside the timed span
    try:
        for _ in range(blocks):
            path.run_block()
    finally:
        runner._hooks.remove(collect)
        BalanceTrainStep.__call__ = call
        for obj, attr in patched:
            delattr(obj, attr)
    per_iter['step (timed span)'] = spans
    per_iter['runner overhead (span - plain-equivalent work)'] = overhead
    return {k: dict(median=_ms(statistics.median(v)), mean=_ms(statistics.fmean(v)))
            for k, v in per_iter.items() if v}


def markdown_table(stats: dict, memory: Dict[str, dict], device: str) -> str:
    """The results as a small markdown table."""
    cuda = device.startswith('cuda')
    mem_head = 'peak CUDA alloc (MiB)' if cuda else 'peak RSS VmHWM (MiB)'
    lines = [
        f'| path | median step (ms) | step ratio | mean step (ms) | median step+fetch (ms) '
        f'| step+fetch ratio | median fetch (ms) | {mem_head} | peak - RSS after data (MiB) |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for name, s in stats.items():
        m = memory.get(name, {})
        peak = m.get('cuda_max_allocated_mib' if cuda else 'vm_hwm_mib', math.nan)
        delta = m.get('delta_mib', math.nan)
        lines.append(
            f"| {name} | {s['median_step_ms']:.1f} | {s['ratio_step']:.3f} | "
            f"{s['mean_step_ms']:.1f} | {s['median_step_fetch_ms']:.1f} | "
            f"{s['ratio_step_fetch']:.3f} | {s['median_fetch_ms']:.2f} | {peak:.0f} | "
            f'{delta:.0f} |')
    lines += [
        '', '| path | step ratio, paired blocks | best-block median step (ms) | best-block ratio '
        '| median step CPU time (ms) | CPU-time ratio |',
        '|---|---:|---:|---:|---:|---:|']
    for name, s in stats.items():
        lines.append(
            f"| {name} | {s['ratio_step_paired_blocks']:.3f} | "
            f"{s['best_block_median_step_ms']:.1f} | {s['ratio_best_block']:.3f} | "
            f"{s['median_step_cpu_ms']:.1f} | {s['ratio_step_cpu']:.3f} |")
    return '\n'.join(lines)


def _loadavg() -> List[float]:
    try:
        with open('/proc/loadavg') as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return []


# ----------------------------------------------------------------------------- main
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--setting', choices=sorted(SETTINGS), default='demo')
    p.add_argument('--iters', type=int, help='measured iterations per block')
    p.add_argument('--warmup', type=int, help='discarded iterations at the start of every block')
    p.add_argument('--repeats', type=int, help='interleaved blocks per path')
    p.add_argument('--batch-size', type=int)
    p.add_argument('--width', type=int,
                   help="ResNet18 base_channels (default: the setting's, demo 16, paper 64)")
    p.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    p.add_argument('--threads', type=int, default=torch.get_num_threads(),
                   help='torch.set_num_threads for every path (default: %(default)s)')
    p.add_argument('--variants', default=','.join(DEFAULT_VARIANTS),
                   help=f'comma-separated, from: {", ".join(VARIANTS)}')
    p.add_argument('--no-memory', action='store_true', help='skip the memory subprocesses')
    p.add_argument('--profile', type=int, default=0, metavar='N',
                   help='also cProfile one block of the first variant and print the top N')
    p.add_argument('--breakdown', type=int, default=0, metavar='BLOCKS',
                   help='also time the parts of a Runner step over BLOCKS extra blocks per variant')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out',
                   help='JSON output (default work_dirs/benchmarks/step_time_<setting>.json)')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    setting = SETTINGS[args.setting]
    variants = tuple(v.strip() for v in args.variants.split(',') if v.strip())
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise SystemExit(f'unknown or no variants {unknown}; choose from {list(VARIANTS)}')
    if args.device == 'cpu':
        # mmengine puts the model on CUDA whenever it sees a GPU: hide it.
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
    elif not torch.cuda.is_available():
        raise SystemExit(f'--device {args.device} but CUDA is not available')
    bc = BenchConfig(
        setting=args.setting, batch_size=args.batch_size or setting['batch_size'],
        iters=args.iters or setting['iters'],
        warmup=setting['warmup'] if args.warmup is None else args.warmup,
        repeats=args.repeats or setting['repeats'], device=args.device,
        threads=args.threads, seed=args.seed, variants=variants,
        extra_blocks=args.breakdown + (1 if args.profile else 0),
        shape={k: setting[k] for k in ('audio_shape', 'visual_shape', 'base_channels',
                                       'visual_in_channels', 'num_classes')})
    if args.width is not None:
        if args.width < 1:
            raise SystemExit(f'--width {args.width}: expected a positive channel count')
        bc.shape['base_channels'] = args.width
    if bc.warmup < 1:
        raise SystemExit('--warmup must be >= 1 (the first iteration of a block has no '
                         'fetch time for the Runner path)')
    torch.set_num_threads(bc.threads)
    out_path = args.out or osp.join('work_dirs', 'benchmarks', f'step_time_{bc.setting}.json')
    t0 = time.perf_counter()
    load_before = _loadavg()

    with tempfile.TemporaryDirectory(prefix='mmbal_step_time_') as tmp:
        paths: List[Any] = [PlainPath(bc)]
        for v in variants:
            paths.append(RunnerPath(bc, v, osp.join(tmp, v)))
        if torch.get_num_threads() != bc.threads:  # nothing may change it behind our back
            raise RuntimeError(f'torch threads changed to {torch.get_num_threads()}')
        blocks = run_interleaved(paths, bc.repeats)
        parts = {p.name: breakdown(p, args.breakdown) for p in paths[1:]} if args.breakdown else {}
        profile_txt = profile_block(paths[1], args.profile) if args.profile else ''
        del paths
    stats = summarize(blocks, bc.warmup)
    memory = {} if args.no_memory else measure_memory(bc, ['plain', *variants])

    table = markdown_table(stats, memory, bc.device)
    result = dict(
        config=asdict(bc), num_samples=bc.num_samples,
        command=' '.join([osp.relpath(sys.argv[0]) if sys.argv else 'step_time.py',
                          *(argv if argv is not None else sys.argv[1:])]),
        env=dict(torch=torch.__version__, mmbal=mmbal.__version__, python=platform.python_version(),
                 cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                 processor=platform.processor() or platform.machine(),
                 loadavg_before=load_before, loadavg_after=_loadavg()),
        variants={v: VARIANTS[v] for v in variants}, stats=stats, memory=memory,
        breakdown_ms_per_iter=parts,
        wall_time_s=round(time.perf_counter() - t0, 1),
        raw_step_s={k: [b.step for b in bl] for k, bl in blocks.items()},
        raw_fetch_s={k: [[None if math.isnan(t) else t for t in b.fetch] for b in bl]
                     for k, bl in blocks.items()})
    if profile_txt:
        print(profile_txt)
    print(f'\nsetting={bc.setting} width={bc.shape["base_channels"]} batch={bc.batch_size} '
          f'iters={bc.iters} warmup={bc.warmup} repeats={bc.repeats} device={bc.device} '
          f'threads={bc.threads} samples={bc.num_samples} '
          f'loadavg before/after {load_before} / {_loadavg()}\n')
    print(table)
    if load_before and load_before[0] > 0.5:
        print(f'\nNOTE: 1-min load average was {load_before[0]} before the run: other processes '
              f'were using the cores; compare the paired-block and best-block ratios.')
    for name, rows in parts.items():
        print(f'\nper-iteration breakdown of {name} (ms/iter: median, mean):')
        for k, v in rows.items():
            print(f"  {k:50s} {v['median']:9.3f} {v['mean']:9.3f}")
    print()
    for v in variants:
        print(f"{v}: {VARIANTS[v]['description']}")
    print('\nper block (= epoch) outside the iterations (epoch hooks, checkpoint, first fetch): '
          + ', '.join(f"{k} {s['median_outside_iters_per_block_ms']:.0f} ms"
                      for k, s in stats.items()))
    os.makedirs(osp.dirname(osp.abspath(out_path)), exist_ok=True)
    with open(out_path, 'w') as f:
        json.dump(result, f, indent=1, allow_nan=False, default=str)
    print(f'\nwrote {out_path} (wall {result["wall_time_s"]} s)')
    return result


if __name__ == '__main__':
    main()
