"""Per-iteration loss trajectories of the balance methods, as reference data.

Why: the balance core (training step, gradient gates, hook call points) is
about to be refactored. Each method's first iterations are recorded here on the
code before the refactor, with a fixed seed and deterministic settings, and
``test_trajectories.py`` re-runs them afterwards: every loss term and every
``train/balance/...`` scalar must come out the same (1e-6 relative).

A trajectory goes through the public path a user takes (``Config.fromfile`` ->
config edits -> :func:`mmbal.engine.build_runner` -> ``runner.train()``). The
edits (:func:`standard_overrides`) are the same for every method and name only
config fields a user sets (seed, data loader, schedule, default hooks), never an
optimizer-wrapper type or a hook's internals, so they stay valid across the
refactor. G2D/UMT get random-init teachers written here (seeded), passed through
the hook's ``teacher_checkpoints`` field.

Rewrite the reference files (only on the code whose behaviour they pin)::

    PYTHONPATH=. python tests/test_engine/trajectories.py --record

Compare the current code against them without pytest::

    PYTHONPATH=. python tests/test_engine/trajectories.py --check
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import multiprocessing
import os.path as osp
import random
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import mmengine
import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import DefaultScope

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / 'tests' / 'data' / 'trajectories'

SEED = 0
EPOCHS = 2
BATCH_SIZE = 8
RTOL = 1e-6
ATOL = 1e-8
#: Prefix of the scalars balance hooks put in the message hub.
BALANCE_PREFIX = 'train/balance/'
#: Placeholders for run-dependent paths in the recorded overrides.
WORK_DIR_TOKEN = '{work_dir}'
REPO_TOKEN = '{repo}'
UNIQUE_TOKEN = '{unique}'

#: The recorded configs (setting (b), the default AV-Digits set) and their extra
#: arguments of :func:`run_trajectory`. G2D: tau (1, 1) makes epoch 0 a
#: prioritized phase and epoch 1 the joint one (sum(tau) = EPOCHS).
CONFIGS: Dict[str, Dict[str, Any]] = {
    'configs/concat/concat_r18_avdigits.py': {},
    'configs/pdmp/pdmp_r18_avdigits.py': {},
    'configs/ogm_ge/ogm-ge_r18_avdigits.py': {},
    'configs/arl/arl_r18_avdigits.py': {},
    'configs/g2d/g2d_r18_avdigits.py': dict(teachers_for='G2DHook',
                                            hook_fields={'G2DHook': dict(tau=[1, 1])}),
    'configs/umt/umt_r18_avdigits.py': dict(teachers_for='G2DHook'),
}


def data_file(config_path: str) -> Path:
    """``tests/data/trajectories/<config stem>.json``."""
    return DATA_DIR / f'{Path(config_path).stem}.json'


# ----------------------------------------------------------------------------- overrides
def standard_overrides(iters: int) -> Dict[str, Any]:
    """The config edits every method gets, as ``--cfg-options`` style dotted keys.

    ``iters`` iterations = ``EPOCHS`` epochs of the first ``iters / EPOCHS *
    BATCH_SIZE`` training samples (files order, a fixed subset).
    """
    if iters <= 0 or iters % EPOCHS:
        raise ValueError(f'iters={iters} must be a positive multiple of {EPOCHS} (the epochs)')
    return {
        'work_dir': WORK_DIR_TOKEN,
        'randomness': dict(seed=SEED, deterministic=True),
        'train_dataloader.batch_size': BATCH_SIZE,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'train_dataloader.dataset.indices': iters // EPOCHS * BATCH_SIZE,
        'train_cfg.max_epochs': EPOCHS,
        'val_cfg': None,
        'val_dataloader': None,
        'val_evaluator': None,
        'default_hooks.checkpoint': None,
        'default_hooks.logger.interval': 1,
    }


def _fill(value: Any, work_dir: str, unique: str = '') -> Any:
    """Replace the placeholders (work dir, repository, run id) in an override value."""
    if isinstance(value, str):
        return (value.replace(WORK_DIR_TOKEN, work_dir).replace(REPO_TOKEN, str(REPO_ROOT))
                .replace(UNIQUE_TOKEN, unique))
    if isinstance(value, dict):
        return {k: _fill(v, work_dir, unique) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_fill(v, work_dir, unique) for v in value)
    return value


def _num_classes(model_cfg: Mapping) -> int:
    """Class count of a classifier config: the head's, or the late fusion's."""
    head = model_cfg.get('head')
    return int(head['num_classes'] if head else model_cfg['fusion']['num_classes'])


def write_random_teachers(model_cfg: Mapping, out_dir: str, seed: int = SEED) -> Dict[str, str]:
    """Save one seeded random-init unimodal teacher per modality; ``{modality: path}``.

    Why random: the trajectories pin the training step, not the teachers'
    quality; a trained teacher would need a long run. The architecture is
    :func:`~mmbal.balance.teachers.default_teacher_model` of the student's
    encoder, the checkpoint a bare ``state_dict``, as ``load_teachers`` expects.
    """
    from mmbal.balance.teachers import default_teacher_model
    from mmbal.registry import MODELS
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    paths = {}
    with DefaultScope.overwrite_default_scope('mmbal'):
        for i, (m, enc) in enumerate(model_cfg['encoders'].items()):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + i)
                teacher = MODELS.build(default_teacher_model(enc, m, _num_classes(model_cfg)))
            paths[m] = osp.join(out_dir, f'teacher_{m}.pth')
            torch.save({'state_dict': teacher.state_dict()}, paths[m])
    return paths


def _edit_hooks(cfg: Config, fields: Mapping[str, Mapping[str, Any]]) -> None:
    """Update the fields of the custom hooks by type; each named type must be present."""
    hooks = list(cfg.get('custom_hooks') or [])
    for hook_type, updates in fields.items():
        found = [h for h in hooks if h.get('type') == hook_type]
        if len(found) != 1:
            raise ValueError(f'{cfg.filename}: expected one {hook_type} in custom_hooks, '
                             f'found {len(found)}')
        found[0].update(copy.deepcopy(dict(updates)))
    cfg.custom_hooks = hooks


# ----------------------------------------------------------------------------- recording
class TrajectoryRecorder(Hook):
    """Collects, after every other hook, one ``{name: value}`` row per training iteration.

    Row: every log var whose name contains ``'loss'`` (from ``outputs``) and
    every ``train/balance/...`` scalar updated in the message hub since the
    previous iteration.
    """

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.rows: List[Dict[str, float]] = []
        self._sizes: Dict[str, int] = {}

    @staticmethod
    def _balance_sizes(runner) -> Dict[str, int]:
        return {k: len(buf.data[0]) for k, buf in runner.message_hub.log_scalars.items()
                if k.startswith(BALANCE_PREFIX)}

    def before_train(self, runner) -> None:
        self._sizes = self._balance_sizes(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[Mapping[str, Any]] = None) -> None:
        row = {k: float(v.detach() if isinstance(v, torch.Tensor) else v)
               for k, v in (outputs or {}).items() if 'loss' in k}
        sizes = self._balance_sizes(runner)
        for key, size in sizes.items():
            if size > self._sizes.get(key, 0):
                row[key] = float(runner.message_hub.log_scalars[key].current())
        self._sizes = sizes
        bad = sorted(k for k, v in row.items() if not math.isfinite(v))
        if bad:
            raise FloatingPointError(f'iteration {runner.iter}: non-finite {bad}')
        self.rows.append(dict(sorted(row.items())))


@contextlib.contextmanager
def _process_state(threads: int = 1) -> Iterator[None]:
    """Set ``threads`` torch threads; restore the globals a training run changes.

    Restored: torch threads, RNG states (random, numpy, torch), the
    deterministic-algorithms and cuDNN flags, the multiprocessing start method.
    """
    saved_threads = torch.get_num_threads()
    saved_det = (torch.are_deterministic_algorithms_enabled(),
                 torch.is_deterministic_algorithms_warn_only_enabled())
    saved_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    saved_rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    saved_mp = multiprocessing.get_start_method(allow_none=True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved_threads)
        torch.use_deterministic_algorithms(saved_det[0], warn_only=saved_det[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved_cudnn
        random.setstate(saved_rng[0])
        np.random.set_state(saved_rng[1])
        torch.set_rng_state(saved_rng[2])
        multiprocessing.set_start_method(saved_mp, force=True)


def _close_log_files(runner) -> None:
    """Close the run's log file handlers (the work dir is deleted afterwards)."""
    for handler in list(runner.logger.handlers):
        if isinstance(handler, logging.FileHandler):
            handler.close()
            runner.logger.removeHandler(handler)


def run_trajectory(config_path: str, iters: int = 30, *,
                   hook_fields: Optional[Mapping[str, Mapping[str, Any]]] = None,
                   teachers_for: Optional[str] = None,
                   cfg_options: Optional[Mapping[str, Any]] = None,
                   work_dir: Optional[str] = None) -> Dict[str, Any]:
    """Train ``config_path`` for ``iters`` iterations and return its trajectory.

    Args:
        config_path: Config file, relative to the repository root or absolute.
        iters: Iterations, ``EPOCHS`` epochs of a fixed training subset.
        hook_fields: ``{custom hook type: {field: value}}`` updates.
        teachers_for: Custom hook type that gets seeded random-init teachers in
            its ``teacher_checkpoints`` field (G2D, UMT).
        cfg_options: Further dotted-key edits, applied after the standard ones.
        work_dir: Run directory; a temporary one (deleted afterwards) if None.

    Returns:
        ``{config, overrides, torch, mmengine, iters: [{name: value}, ...]}``,
        the overrides with ``{work_dir}`` / ``{repo}`` / ``{unique}`` placeholders.
    """
    from mmbal.engine import build_runner
    rel = Path(config_path)
    path = rel if rel.is_absolute() else REPO_ROOT / rel
    try:
        rel = path.resolve().relative_to(REPO_ROOT)
    except ValueError:
        rel = path
    overrides = standard_overrides(iters)
    cfg = Config.fromfile(str(path))
    data_root = cfg.train_dataloader.dataset.get('data_root')
    if data_root and not osp.isabs(data_root):  # the configs' roots are relative to the repo
        overrides['train_dataloader.dataset.data_root'] = f'{REPO_TOKEN}/{data_root}'
    # A fresh name per run: MMEngine keys its logger, message hub and visualizer by it.
    overrides['experiment_name'] = f'trajectory_{path.stem}_{UNIQUE_TOKEN}'
    overrides.update(cfg_options or {})
    hook_fields = copy.deepcopy({k: dict(v) for k, v in (hook_fields or {}).items()})
    if teachers_for is not None:
        hook_fields.setdefault(teachers_for, {})['teacher_checkpoints'] = {
            m: f'{WORK_DIR_TOKEN}/teachers/teacher_{m}.pth' for m in cfg.model.encoders}

    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix='trajectory_'))
        cfg.merge_from_dict(_fill(overrides, work_dir, uuid.uuid4().hex[:8]))
        # Recorded in the default memory layout: an encoder's channels_last changes the
        # float rounding (and so, over iterations, the trajectory), not a method's math.
        for encoder in cfg.model.get('encoders', {}).values():
            if 'channels_last' in encoder:
                encoder.channels_last = False
        _edit_hooks(cfg, _fill(hook_fields, work_dir))
        stack.enter_context(_process_state(threads=1))
        if teachers_for is not None:
            written = write_random_teachers(cfg.model, osp.join(work_dir, 'teachers'))
            expected = _fill(hook_fields[teachers_for]['teacher_checkpoints'], work_dir)
            if written != expected:
                raise RuntimeError(f'teachers written to {written}, the hook reads {expected}')
        runner = build_runner(cfg, str(path))
        recorder = TrajectoryRecorder()
        runner.register_hook(recorder, priority='LOWEST')
        try:
            runner.train()
        finally:
            _close_log_files(runner)
    if len(recorder.rows) != iters:
        raise RuntimeError(f'{rel}: recorded {len(recorder.rows)} iterations, expected {iters}')
    recorded = dict(overrides)
    recorded.update({f'custom_hooks[type={t}].{k}': v
                     for t, fields in hook_fields.items() for k, v in fields.items()})
    return dict(config=str(rel), overrides=json.loads(json.dumps(recorded)),
                torch=torch.__version__, mmengine=mmengine.__version__, iters=recorder.rows)


# ----------------------------------------------------------------------------- comparing
def compare_trajectories(expected: Mapping[str, Any], actual: Mapping[str, Any],
                         rtol: float = RTOL, atol: float = ATOL) -> List[str]:
    """Differences between two trajectories, one line each (empty when they agree).

    Same overrides, same iteration count, same keys per iteration, and every
    value within ``|a - e| <= max(rtol * |e|, atol)``.
    """
    name = expected.get('config', '?')
    problems = []
    if expected.get('overrides') != actual.get('overrides'):
        problems.append(f'{name}: overrides differ: recorded {expected.get("overrides")}, '
                        f'now {actual.get("overrides")}')
    exp_rows, act_rows = expected['iters'], actual['iters']
    if len(exp_rows) != len(act_rows):
        problems.append(f'{name}: {len(act_rows)} iterations, recorded {len(exp_rows)}')
    for i, (e_row, a_row) in enumerate(zip(exp_rows, act_rows)):
        missing, extra = sorted(set(e_row) - set(a_row)), sorted(set(a_row) - set(e_row))
        if missing or extra:
            problems.append(f'{name} iteration {i}: keys missing {missing}, unexpected {extra}')
        for key in sorted(set(e_row) & set(a_row)):
            e, a = e_row[key], a_row[key]
            if not abs(a - e) <= max(rtol * abs(e), atol):
                rel = abs(a - e) / abs(e) if e else math.inf
                problems.append(f'{name} iteration {i} key {key!r}: recorded {e!r}, got {a!r} '
                                f'(rel diff {rel:.3g})')
    return problems


def load_trajectory(config_path: str) -> Dict[str, Any]:
    """The recorded trajectory of a config."""
    with open(data_file(config_path)) as f:
        return json.load(f)


def save_trajectory(trajectory: Mapping[str, Any], config_path: str) -> Path:
    """Write a trajectory to its data file (one line per iteration)."""
    out = data_file(config_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = {k: v for k, v in trajectory.items() if k != 'iters'}
    lines = [json.dumps(row) for row in trajectory['iters']]
    text = (json.dumps(head, indent=1)[:-2] + ',\n "iters": [\n  ' + ',\n  '.join(lines)
            + '\n ]\n}\n')
    if json.loads(text) != json.loads(json.dumps(trajectory)):
        raise RuntimeError(f'{out}: the hand-made JSON layout does not round-trip')
    out.write_text(text)
    return out


def _use_this_tree() -> None:
    """Import mmbal from this repository (a script's sys.path starts at its own folder,
    so an installed mmbal of another checkout would otherwise be the one recorded)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import mmbal
    where = Path(mmbal.__file__).resolve()
    if REPO_ROOT not in where.parents:
        raise RuntimeError(f'mmbal is imported from {where}, not from {REPO_ROOT}')


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: --record, --check or --dump DIR, for all or some configs."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument('--record', action='store_true', help='rewrite the reference files')
    mode.add_argument('--check', action='store_true', help='compare against them')
    mode.add_argument('--dump', metavar='DIR', help='write fresh trajectories to DIR')
    parser.add_argument('configs', nargs='*', help=f'subset of {list(CONFIGS)}')
    args = parser.parse_args(argv)
    configs = args.configs or list(CONFIGS)
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f'unknown configs {unknown}; choose from {list(CONFIGS)}')
    _use_this_tree()
    failed = 0
    for config in configs:
        if args.check:
            expected = load_trajectory(config)
            problems = compare_trajectories(
                expected, run_trajectory(config, len(expected['iters']), **CONFIGS[config]))
            failed += bool(problems)
            print(f'{config}: ' + ('OK' if not problems else '\n  '.join(['FAIL'] + problems)))
            continue
        trajectory = run_trajectory(config, **CONFIGS[config])
        if args.record:
            print(f'{config}: wrote {save_trajectory(trajectory, config)}')
        else:
            out = Path(args.dump) / data_file(config).name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(trajectory, indent=1))
            print(f'{config}: wrote {out}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
