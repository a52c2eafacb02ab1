"""Modality analysis: which modality is better alone (m_p), which learns faster (m_o).

Trains one unimodal model per modality (same encoder and schedule as the
multimodal config) and an unmodulated joint model, all selected and scored on
the val split, and writes a JSON artifact that PDMP reads (docs/methods/pdmp.md,
modality analysis):

* m_p = argmax of the unimodal models' final-epoch val accuracy;
* m_o = argmax of the joint model's per-modality branch accuracy (analytic
  logits) after ``--m-o-epochs`` epochs (``--m-o-source joint``, Algorithm 1),
  or of the unimodal models' accuracy after that many epochs
  (``--m-o-source unimodal_early``).

Example::

    python tools/analysis/modality_analysis.py configs/concat/concat_r18_avdigits.py \
        --work-dir work_dirs/analysis_avdigits

Teachers for G2D/UMT (``--teacher``): only the unimodal runs, on the whole
training split with the config's full schedule (no joint run); the artifact
marks them ``qualifies_as_teacher`` and records each encoder config and teacher
model, which the G2D hook compares with the student's::

    python tools/analysis/modality_analysis.py configs/g2d/g2d_r18_avdigits.py --teacher \
        --work-dir work_dirs/teachers_avdigits

``--iters N`` trains every run (unimodal and joint) for N iterations instead of
epochs (validation after iteration N); such runs never qualify as teachers.

A line is printed when each run starts and ends (``[2/3] unimodal_visual: done
in 41m10s, fused acc 91.20; ETA 5m00s (1 run to go)``), and
``WORK_DIR/journal.jsonl`` records every start and end (status, seconds,
reason, log). A finished run is reused and an interrupted one resumed (see
:func:`run`); the journal gives a rerun its ETA.
"""
import argparse
import copy
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
from mmengine.config import Config, DictAction

from mmbal.balance.teachers import plain_config
from mmbal.utils import merge_cfg_options
from mmbal.utils.progress import Progress, RunJournal, accuracy_summary

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ('joint', 'unimodal_early')
# Written into a run's work dir once tools/train.py has returned successfully.
FINISHED = 'FINISHED'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Find m_p and m_o of a multimodal config')
    parser.add_argument('config', help='multimodal baseline config (e.g. concat)')
    parser.add_argument('--work-dir', default=None)
    parser.add_argument('--subset', type=float, default=100.0,
                        help='percent of the training split used (seeded random subset)')
    parser.add_argument('--epochs', type=int, default=None,
                        help='override the schedule length of the unimodal runs')
    parser.add_argument('--iters', type=int, default=None,
                        help='train every run for this many iterations instead of epochs '
                        '(validated once, at the end); the runs do not qualify as teachers')
    parser.add_argument('--teacher', action='store_true',
                        help='train only the unimodal models, on the full training split with '
                        'the full schedule, as G2D/UMT teachers (no joint run)')
    parser.add_argument('--m-o-epochs', type=int, default=1)
    parser.add_argument('--m-o-source', choices=SOURCES, default='joint')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=None, help='artifact path (default WORK_DIR/analysis.json)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='overrides applied to every run')
    return parser.parse_args()


# --- pure role logic (unit-tested) -------------------------------------------------------
def argmax_modality(values: Dict[str, float], order: Sequence[str]) -> str:
    """The modality with the largest value; ties go to the first in config order."""
    best = max(values[m] for m in order)
    return next(m for m in order if values[m] == best)


def value_at_epoch(curve: Sequence[Sequence[float]], epoch: int) -> float:
    """Accuracy logged at ``epoch`` (1-based, as MMEngine's val step)."""
    for e, acc in curve:
        if int(e) == epoch:
            return acc
    raise KeyError(f'no val accuracy logged at epoch {epoch}; logged epochs: '
                   f'{[int(e) for e, _ in curve]}')


def ranking_flips(curves: Dict[str, Sequence[Sequence[float]]], order: Sequence[str],
                  epochs: int) -> List[str]:
    """Leaders over the first ``epochs`` epochs, if the leader changes (else [])."""
    leaders = []
    for epoch in range(1, epochs + 1):
        try:
            leaders.append(argmax_modality({m: value_at_epoch(curves[m], epoch) for m in order},
                                           order))
        except KeyError:
            break
    return leaders if len(set(leaders)) > 1 else []


# --- runs -----------------------------------------------------------------------------------
def unimodal_config(cfg: Config, modality: str) -> Config:
    """The config with one encoder, concat fusion and a linear head; no balance hooks."""
    out = copy.deepcopy(cfg)
    model = out.model
    num_classes = (model.head.num_classes if model.get('head') else
                   model.fusion.get('num_classes', model.fusion.get('out_channels')))
    model.encoders = {modality: model.encoders[modality]}
    model.fusion = dict(type='ConcatFusion')
    model.head = dict(type='LinearClsHead', num_classes=num_classes)
    model.modality_logits = 'analytic'
    out.custom_hooks = []
    return out


def iter_based(cfg: Config, iters: int) -> Config:
    """The config trained for ``iters`` iterations, validated and checkpointed at the end."""
    out = copy.deepcopy(cfg)
    out.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters)
    out.default_hooks.checkpoint.update(by_epoch=False, interval=iters)
    out.default_hooks.logger.log_metric_by_epoch = False
    out.log_processor = dict(out.get('log_processor', {}), by_epoch=False)
    # Epoch-based lr schedulers stay as they are: the iteration loop runs one "epoch",
    # so they step at most once, after the last iteration.
    return out


def joint_config(cfg: Config) -> Config:
    """The multimodal config without balance hooks (the unmodulated baseline)."""
    out = copy.deepcopy(cfg)
    out.custom_hooks = []
    if str(out.optim_wrapper.get('type', '')).startswith('Balance'):
        out.optim_wrapper.type = out.optim_wrapper.type.replace('Balance', '', 1)
    return out


def run(cfg: Config, work_dir: Path) -> None:
    """Train with tools/train.py (val selection, no test) unless already done.

    A finished run is reused only if it was trained with the same config (schedule,
    data, encoder), so that e.g. a shortened run is never relabelled as a teacher.
    A run is finished once ``tools/train.py`` has returned successfully (``FINISHED``
    marker); an interrupted one (checkpoints but no marker) is resumed, never reused.
    """
    path = work_dir / 'analysis_config.py'
    request = work_dir / 'analysis_request.txt'  # the runner rewrites analysis_config.py
    finished = work_dir / FINISHED
    done, started = finished.exists(), (work_dir / 'last_checkpoint').exists()
    if (done or started) and request.exists() and request.read_text() != cfg.pretty_text:
        raise RuntimeError(f'{work_dir} holds a run with a different config '
                           f'(see {request}); use another --work-dir or delete it')
    if done:
        return
    work_dir.mkdir(parents=True, exist_ok=True)
    request.write_text(cfg.pretty_text)
    cfg.dump(str(path))
    cmd = [sys.executable, 'tools/train.py', str(path), '--work-dir', str(work_dir), '--no-test']
    if started:
        cmd.append('--resume')
    with open(work_dir / 'stdout.log', 'a' if started else 'w') as log:
        if subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT) != 0:
            raise RuntimeError(f'{" ".join(cmd)} failed; see {work_dir / "stdout.log"}')
    finished.touch()


class TrackedRuns:
    """The runs of one analysis with a progress line and a journal entry each.

    Args:
        names: Run names (their work dirs under ``work_dir``), in the order they run.
        groups: Runs of about the same duration share a group (the ETA).
    """

    def __init__(self, work_dir: Path, names: Sequence[str], groups: Sequence[str]) -> None:
        self.work_dir = work_dir
        self.names, self.groups = list(names), list(groups)
        self.journal = RunJournal(work_dir / 'journal.jsonl')
        self.earlier = self.journal.last()
        self.progress = Progress(self.names, self.groups,
                                 todo=[not (work_dir / n / FINISHED).exists() for n in names],
                                 history=self.journal.durations())

    def run(self, name: str, cfg: Config) -> Path:
        """:func:`run` with progress and journal; the run's work dir."""
        index, run_dir = self.names.index(name), self.work_dir / name
        group = self.groups[index]
        if (run_dir / FINISHED).exists():
            run(cfg, run_dir)  # checks that it was trained with this config
            self.progress.note(index, f'finished earlier, {self.summary(run_dir)}')
            return run_dir
        resumed = ' (interrupted earlier: resuming)' if (run_dir / 'last_checkpoint').exists() \
            else ''
        self.progress.start(index, f'log {run_dir / "stdout.log"}{resumed}')
        self.journal.start(name, group=group)
        start = time.time()
        try:
            run(cfg, run_dir)
        except RuntimeError as err:
            seconds = time.time() - start
            self.journal.end(name, 'failed', seconds, group=group, reason=str(err),
                             log=str(run_dir / 'stdout.log'))
            self.progress.end(index, seconds, False, str(err))
            raise
        seconds = time.time() - start
        self.journal.end(name, 'done', seconds, group=group)
        self.progress.end(index, seconds, True, self.summary(run_dir))
        return run_dir

    @staticmethod
    def summary(run_dir: Path) -> str:
        """The last val accuracies of a run: 'fused acc 91.20, ...'."""
        last = {k: c[-1][1] for k, c in val_curves(run_dir).items() if c}
        return 'val ' + (accuracy_summary(last) or 'accuracy not logged')


def val_curves(work_dir: Path) -> Dict[str, List[List[float]]]:
    """``{metric: [[epoch, value], ...]}`` of the val lines of a run's scalars.json."""
    curves: Dict[str, Dict[int, float]] = {}
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)  # data only: a log line is never executed
            except ValueError as err:
                raise ValueError(f'{path}:{lineno}: not a JSON object ({err})') from err
            if not isinstance(rec, dict):
                raise ValueError(f'{path}:{lineno}: not a JSON object')
            if 'iter' in rec:  # a training line
                continue
            for key, value in rec.items():
                if key.startswith(('accuracy/', 'f1/')):
                    if isinstance(value, bool) or not isinstance(value, (int, float)):
                        raise ValueError(f'{path}:{lineno}: {key!r} must be a number, got '
                                         f'{value!r}')
                    curves.setdefault(key, {})[int(rec['step'])] = value
    return {k: [[e, v] for e, v in sorted(c.items())] for k, c in curves.items()}


def check_args(args: argparse.Namespace) -> None:
    """Reject option combinations that cannot mean what they say."""
    if args.iters is not None and args.iters < 1:
        raise ValueError(f'--iters must be >= 1, got {args.iters}')
    if args.iters is not None and args.epochs is not None:
        raise ValueError('--iters and --epochs both set the schedule length; give one')
    if args.teacher:
        shortened = [opt for opt, on in (('--subset', args.subset < 100),
                                          ('--epochs', args.epochs is not None),
                                          ('--iters', args.iters is not None)) if on]
        if shortened:
            raise ValueError(f'--teacher trains on the whole training split with the '
                             f'full schedule of the config; drop {" ".join(shortened)}')


def main() -> None:
    args = parse_args()
    try:
        check_args(args)
    except ValueError as err:
        raise SystemExit(f'modality_analysis.py: error: {err}')
    cfg = Config.fromfile(args.config)
    merge_cfg_options(cfg, args.cfg_options)
    cfg.randomness = dict(cfg.get('randomness', {}), seed=args.seed)
    modalities = list(cfg.model.encoders)
    work_dir = Path(args.work_dir or ROOT / 'work_dirs' / f'analysis_{Path(args.config).stem}')
    work_dir = work_dir.resolve()
    full_schedule = args.epochs is None and args.iters is None and args.subset >= 100
    if args.subset < 100:
        from mmengine.registry import init_default_scope
        from mmbal.registry import DATASETS
        init_default_scope('mmbal')
        size = len(DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset)))
        keep = max(1, round(size * args.subset / 100))
        indices = np.sort(np.random.default_rng(args.seed).permutation(size)[:keep])
        cfg.train_dataloader.dataset.indices = indices.tolist()
    if args.epochs is not None:
        cfg.train_cfg.max_epochs = args.epochs
    # Curves are indexed by epoch, or by iteration with --iters (one point, at N).
    unit = 'iteration' if args.iters else 'epoch'
    early_step = args.iters or args.m_o_epochs

    def schedule(run_cfg: Config) -> Config:
        return iter_based(run_cfg, args.iters) if args.iters else run_cfg

    joint_run = args.m_o_source == 'joint' and not args.teacher
    names = [f'unimodal_{m}' for m in modalities] + (['joint'] if joint_run else [])
    runs = TrackedRuns(work_dir, names, ['unimodal'] * len(modalities) + ['joint'] * joint_run)
    unimodal = {}
    for m in modalities:
        uni_cfg = unimodal_config(cfg, m)
        run_dir = runs.run(f'unimodal_{m}', schedule(uni_cfg))
        curve = val_curves(run_dir)['accuracy/fused']
        last = (run_dir / 'last_checkpoint').read_text().strip()
        best = sorted(str(p) for p in run_dir.glob('best_*.pth'))
        unimodal[m] = dict(curve=curve, final_accuracy=curve[-1][1], checkpoint_last=last,
                           checkpoint_best=best[-1] if best else None,
                           qualifies_as_teacher=full_schedule,
                           encoder=plain_config(cfg.model.encoders[m]),
                           teacher_model=plain_config(uni_cfg.model))
    m_p = argmax_modality({m: unimodal[m]['final_accuracy'] for m in modalities}, modalities)

    notes = []
    joint = None
    m_o = None
    flips: List[str] = []
    if joint_run:
        joint_cfg = joint_config(cfg)
        if args.iters:
            joint_cfg = iter_based(joint_cfg, args.iters)
        else:
            joint_cfg.train_cfg.max_epochs = args.m_o_epochs
        run_dir = runs.run('joint', joint_cfg)
        curves = val_curves(run_dir)
        branch = {m: curves[f'accuracy/{m}'] for m in modalities}
        joint = dict(branch_curves=branch, epochs=None if args.iters else args.m_o_epochs,
                     iters=args.iters)
        early = {m: value_at_epoch(branch[m], early_step) for m in modalities}
        if not args.iters:
            flips = ranking_flips(branch, modalities, args.m_o_epochs)
        m_o = argmax_modality(early, modalities)
    elif args.m_o_source == 'unimodal_early':
        curves_u = {m: unimodal[m]['curve'] for m in modalities}
        early = {m: value_at_epoch(curves_u[m], early_step) for m in modalities}
        if not args.iters:
            flips = ranking_flips(curves_u, modalities, max(args.m_o_epochs, 3))
        m_o = argmax_modality(early, modalities)
    else:
        notes.append('teacher mode: no joint run, so m_o (optimization_dominant) is not '
                     'determined')
    if flips:
        notes.append(f'the leading modality changes over the first epochs: {flips}')
        warnings.warn(notes[-1])

    m_o_rule = (f'argmax of the joint model branch val accuracy after {early_step} {unit}(s)'
                if args.m_o_source == 'joint' else
                f'argmax of the unimodal val accuracy after {early_step} {unit}(s)')
    artifact = dict(
        config=str(Path(args.config).resolve()), modalities=modalities, split='val',
        mode='teacher' if args.teacher else 'analysis',
        subset_percent=args.subset, seed=args.seed,
        epochs=None if args.iters else cfg.train_cfg.max_epochs, iters=args.iters,
        unimodal=unimodal, joint=joint,
        performance_dominant=m_p, optimization_dominant=m_o,
        rules=dict(performance_dominant=f'argmax of the unimodal final-{unit} val accuracy',
                   optimization_dominant=None if m_o is None else m_o_rule,
                   m_o_source=args.m_o_source, ties='first modality in config order',
                   qualifies_as_teacher='trained on the whole training split with the '
                   'full schedule (no --subset, --epochs or --iters)'),
        notes=notes)
    out = Path(args.out) if args.out else work_dir / 'analysis.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(artifact, indent=2))
    print(json.dumps({k: artifact[k] for k in ('performance_dominant', 'optimization_dominant')}))
    print(f'artifact: {out}')


if __name__ == '__main__':
    main()
