"""Frozen unimodal teachers for distillation methods (G2D, UMT).

G2D's teachers (docs/methods/g2d.md): one unimodal model per modality with the student's exact
encoder, trained on the whole training split with the student's recipe,
frozen, in eval mode, run online under ``no_grad`` on the exact batch the
student sees. They come from the artifact of
``tools/analysis/modality_analysis.py`` (``--teacher`` mode, or a full-data,
full-schedule analysis) or from explicit checkpoint paths.

Teachers are plain Python objects held by the hook, never submodules of the
student: the optimizer, the student's ``state_dict`` and its checkpoints do not
see their parameters, and ``model.train()`` does not switch them out of eval
mode.
"""
import copy
import json
import logging
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from torch import nn

from mmbal.datasets.transforms.randomness import (describe_random_steps, is_random_transform,
                                                  random_steps)
from mmbal.registry import MODELS
from mmbal.utils import literal_config, safe_checkpoint_loading

# The only model type a teacher config read from a file may build.
TEACHER_MODEL_TYPE = 'MultimodalClassifier'

TEACHER_COMMAND = ('python tools/analysis/modality_analysis.py {config} --teacher '
                   '--work-dir {work_dir}')


def teacher_command(config: Optional[str], analysis: Optional[str]) -> str:
    """The command that trains teachers into the artifact ``analysis``."""
    work_dir = osp.dirname(analysis) if analysis else 'work_dirs/teachers'
    cmd = TEACHER_COMMAND.format(config=config or 'CONFIG', work_dir=work_dir or '.')
    if analysis and osp.basename(analysis) != 'analysis.json':
        cmd += f' --out {analysis}'
    return cmd


def plain_config(cfg) -> object:
    """A JSON-comparable copy of a config value (ConfigDict -> dict, tuple -> list)."""
    if hasattr(cfg, 'to_dict'):
        cfg = cfg.to_dict()
    return json.loads(json.dumps(cfg, default=repr))


def encoder_mismatch(teacher_cfg, student_cfg) -> List[str]:
    """Keys in which two encoder configs differ, as ``'key: teacher vs student'`` lines."""
    teacher, student = plain_config(teacher_cfg), plain_config(student_cfg)
    if not isinstance(teacher, dict) or not isinstance(student, dict):
        return [] if teacher == student else [f'{teacher!r} vs {student!r}']
    lines = []
    for key in sorted(set(teacher) | set(student)):
        a, b = teacher.get(key, '<unset>'), student.get(key, '<unset>')
        if a != b:
            lines.append(f'{key}: {a!r} vs {b!r}')
    return lines


def check_same_encoder(modality: str, teacher_cfg, student_cfg, source: str) -> None:
    """Raise unless the teacher of ``modality`` used the student's exact encoder config."""
    diff = encoder_mismatch(teacher_cfg, student_cfg)
    if diff:
        raise ValueError(
            f'the {modality!r} teacher from {source} was trained with a different encoder '
            f'than the student (teacher vs student): {"; ".join(diff)}. G2D/UMT need the '
            f"student's exact encoder: retrain the teachers with the student's config.")


def default_teacher_model(encoder_cfg, modality: str, num_classes: int) -> dict:
    """The unimodal model of ``modality_analysis.unimodal_config``: encoder, concat, linear head."""
    return dict(type='MultimodalClassifier', encoders={modality: plain_config(encoder_cfg)},
                fusion=dict(type='ConcatFusion'),
                head=dict(type='LinearClsHead', num_classes=num_classes),
                modality_logits=None, train_accuracy=False)


def _load_state_dict(path: str) -> Tuple[Dict[str, torch.Tensor], Optional[dict]]:
    """``(state_dict, model cfg saved in the checkpoint's meta or None)``.

    The checkpoint is loaded with ``weights_only=True`` and its ``meta['cfg']``
    (Python source written by MMEngine's CheckpointHook) is read as data by
    :func:`mmbal.utils.literal_config`, never executed: a downloaded teacher
    checkpoint cannot run code. When the model cfg is not readable as data the
    caller falls back to the artifact's ``teacher_model`` or the default model.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'teacher checkpoint {path!r} does not exist')
    with safe_checkpoint_loading(f'teacher checkpoint {path!r}'):
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise ValueError(f'teacher checkpoint {path!r} holds a {type(state).__name__}; '
                         f'expected a state dict or a dict with a "state_dict" key')
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    cfg_text = meta.get('cfg') if isinstance(meta, dict) else None
    return state, None if cfg_text is None else _saved_model_cfg(cfg_text, path)


def _saved_model_cfg(cfg_text: object, path: str) -> Optional[dict]:
    """The ``model`` dict of a checkpoint's ``meta['cfg']`` read as data, or None (logged)."""
    source = f"meta['cfg'] of teacher checkpoint {path!r}"
    skipped: List[str] = []
    try:
        model_cfg = literal_config(cfg_text, source, skipped).get('model')
    except ValueError as err:
        why = str(err)
    else:
        if isinstance(model_cfg, dict):
            return model_cfg
        why = ("its `model` is not a literal dict (only constants, lists, tuples, dicts and "
               "dict(...) are read; nothing is executed)" if 'model' in skipped else
               'it has no `model = dict(...)` entry')
    print_log(f'{source} was not readable as data: {why}. Using the artifact\'s '
              f'teacher_model or the default teacher model instead.', logger='current',
              level=logging.WARNING)
    return None


def check_teacher_model_cfg(model_cfg: object, source: str) -> None:
    """Raise unless ``model_cfg`` is a dict of type ``'MultimodalClassifier'``.

    Teacher configs come from artifacts and checkpoints, i.e. from files a user
    may have downloaded: they must not choose which registered class is built.
    """
    if not isinstance(model_cfg, dict):
        raise TypeError(f'the teacher model config of {source} must be a dict, got '
                        f'{type(model_cfg).__name__}')
    if model_cfg.get('type') != TEACHER_MODEL_TYPE:
        raise ValueError(f'the teacher model config of {source} has type '
                         f'{model_cfg.get("type")!r}; a teacher must be a '
                         f'{TEACHER_MODEL_TYPE!r}')


def build_teacher(modality: str, model_cfg: dict, checkpoint: str,
                  state: Optional[Dict[str, torch.Tensor]] = None) -> nn.Module:
    """Build a one-encoder classifier, load ``checkpoint`` strictly, freeze it, eval mode.

    ``model_cfg`` must be of type ``'MultimodalClassifier'`` (it is read from
    files). ``state``: the checkpoint's state dict when the caller has already read it.
    """
    model_cfg = copy.deepcopy(plain_config(model_cfg))
    check_teacher_model_cfg(model_cfg, f'the {modality!r} teacher ({checkpoint})')
    model_cfg.pop('data_preprocessor', None)
    model_cfg.update(modality_logits=None, train_accuracy=False)
    teacher = MODELS.build(model_cfg)
    if list(getattr(teacher, 'modalities', [])) != [modality]:
        raise ValueError(f'the {modality!r} teacher config builds a model of modalities '
                         f'{getattr(teacher, "modalities", None)}; expected [{modality!r}]')
    if state is None:
        state, _ = _load_state_dict(checkpoint)
    result = teacher.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f'teacher checkpoint {checkpoint!r} does not fit the {modality!r} '
                         f'teacher model: missing {result.missing_keys}, unexpected '
                         f'{result.unexpected_keys}')
    teacher.requires_grad_(False)
    return teacher.eval()


class UnimodalTeachers:
    """Frozen per-modality teachers run on the student's batch.

    Args:
        teachers: ``{modality: one-encoder MultimodalClassifier}``.
        sources: ``{modality: checkpoint path}``, for the log.
    """

    def __init__(self, teachers: Dict[str, nn.Module], sources: Optional[Dict[str, str]] = None
                 ) -> None:
        self.teachers = dict(teachers)
        self.sources = dict(sources or {})
        for t in self.teachers.values():
            t.requires_grad_(False)
            t.eval()

    @property
    def modalities(self) -> List[str]:
        return list(self.teachers)

    def to(self, device) -> 'UnimodalTeachers':
        for t in self.teachers.values():
            t.to(device)
        return self

    @torch.no_grad()
    def __call__(self, inputs: Dict[str, torch.Tensor]
                 ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """Pooled features ``{m: (B, C_m)}`` and logits ``{m: (B, K)}`` of every teacher."""
        feats, logits = {}, {}
        for m, teacher in self.teachers.items():
            if teacher.training:  # someone called .train() on it: teachers stay in eval mode
                teacher.eval()
            if m not in inputs:
                raise KeyError(f'the batch has no {m!r} input for its teacher; it has '
                               f'{list(inputs)}')
            z = teacher.encoders[m](inputs[m])
            feats[m] = z
            logits[m] = teacher.classify({m: z})
        return feats, logits


def load_teachers(modalities: Sequence[str], student_encoders: Dict[str, dict],
                  num_classes: int, analysis: Optional[str] = None,
                  checkpoints: Optional[Dict[str, str]] = None, which: str = 'best',
                  config: Optional[str] = None) -> UnimodalTeachers:
    """Resolve the teacher of every modality.

    Args:
        modalities: The student's modalities, in config order.
        student_encoders: ``{m: encoder cfg}`` of the student (compared exactly).
        num_classes: Classes of the student (teachers must predict the same).
        analysis: Path of a modality-analysis artifact whose unimodal runs qualify.
        checkpoints: ``{m: path}``; overrides the artifact for the modalities it names.
        which: ``'best'`` (val-selected) or ``'last'`` checkpoint of the artifact's runs.
        config: The student's config path (only to print the teacher command).
    """
    if which not in ('best', 'last'):
        raise ValueError(f"teacher checkpoint must be 'best' or 'last', got {which!r}")
    checkpoints = dict(checkpoints or {})
    unknown = [m for m in checkpoints if m not in modalities]
    if unknown:
        raise ValueError(f'teacher checkpoints name {unknown}, which are not modalities of '
                         f'the student {list(modalities)}')
    artifact = None
    missing = [m for m in modalities if m not in checkpoints]
    if missing:
        if analysis is None:
            raise ValueError(f'no teacher for {missing}: set the hook\'s `analysis` (a '
                             f'modality-analysis artifact) or `teacher_checkpoints`; train '
                             f'teachers with: {teacher_command(config, None)}')
        if not osp.isfile(analysis):
            raise FileNotFoundError(
                f'teacher artifact {analysis!r} does not exist. Train the unimodal teachers '
                f'(full training split, full schedule) with:\n    '
                f'{teacher_command(config, analysis)}')
        with open(analysis) as f:
            artifact = json.load(f)
    teachers, sources = {}, {}
    for m in modalities:
        model_cfg = None
        if m in checkpoints:
            path = checkpoints[m]
            source = repr(path)
        else:
            runs = artifact.get('unimodal') or {}
            if m not in runs:
                raise KeyError(f'teacher artifact {analysis!r} has no unimodal run of {m!r} '
                               f'(it has {list(runs)})')
            run = runs[m]
            if not run.get('qualifies_as_teacher'):
                raise ValueError(
                    f'the {m!r} run in {analysis!r} does not qualify as a teacher (trained on '
                    f'a subset, with --epochs or with --iters). Train teachers on the full '
                    f'training split with the full schedule:\n    '
                    f'{teacher_command(config, analysis)}')
            if 'encoder' not in run:
                raise KeyError(f'teacher artifact {analysis!r} does not record the encoder '
                               f'of {m!r}; re-run the analysis tool with --teacher')
            check_same_encoder(m, run['encoder'], student_encoders[m], repr(analysis))
            path = run.get(f'checkpoint_{which}') or run.get('checkpoint_last')
            if not path:
                raise KeyError(f'teacher artifact {analysis!r} lists no checkpoint of {m!r}')
            source = f'{analysis!r} ({path})'
            model_cfg = run.get('teacher_model')
        state, saved_model = _load_state_dict(path)
        if saved_model is not None:  # the config saved in the checkpoint itself
            saved_encoders = saved_model.get('encoders', {})
            if not isinstance(saved_encoders, dict) or m not in saved_encoders:
                trained_on = (list(saved_encoders) if isinstance(saved_encoders, dict)
                              else saved_encoders)
                raise ValueError(f'teacher checkpoint {path!r} was trained on '
                                 f'{trained_on!r}, not {m!r}')
            check_same_encoder(m, saved_encoders[m], student_encoders[m], source)
        model_cfg = model_cfg or saved_model or default_teacher_model(
            student_encoders[m], m, num_classes)
        teacher = build_teacher(m, model_cfg, path, state)
        out = getattr(teacher.head, 'num_classes', None) if teacher.head is not None else \
            getattr(teacher.fusion, 'out_channels', None)
        if out is not None and out != num_classes:
            raise ValueError(f'the {m!r} teacher ({path}) predicts {out} classes; the student '
                             f'{num_classes}')
        teachers[m], sources[m] = teacher, path
    return UnimodalTeachers(teachers, sources)


# --- per-sample cache -------------------------------------------------------------------------
# Randomness is what transforms declare (``is_random``), never their names; the rules live
# in mmbal.datasets.transforms.randomness, which a pipeline cache will reuse.
def random_transforms(pipeline) -> List[str]:
    """The random and undeclared transforms of a pipeline (a Compose or a list), as text."""
    return [str(step) for step in random_steps(pipeline)]


def dataset_pipeline(dataset):
    """The pipeline of a dataset, looking through MMEngine's dataset wrappers."""
    if hasattr(dataset, 'pipeline'):
        return [dataset.pipeline]
    if hasattr(dataset, 'datasets'):
        return [p for d in dataset.datasets for p in dataset_pipeline(d)]
    if hasattr(dataset, 'dataset'):
        return dataset_pipeline(dataset.dataset)
    raise TypeError(f'cannot find the pipeline of dataset {type(dataset).__name__}')


def check_cacheable(dataset) -> None:
    """Refuse the teacher cache when the training pipeline is random."""
    found = [step for p in dataset_pipeline(dataset) for step in random_steps(p)]
    if found:
        raise ValueError(
            f'the teacher cache is only valid for a deterministic training pipeline, but '
            f'it has {describe_random_steps(found)}. A cached teacher output would not match '
            f'the augmented batch the student sees; set cache=False (teachers then run '
            f'online on every batch).')


class TeacherCache:
    """Teacher features and logits per ``sample_idx`` (deterministic pipelines only)."""

    def __init__(self) -> None:
        self.feats: Dict[int, Dict[str, torch.Tensor]] = {}
        self.logits: Dict[int, Dict[str, torch.Tensor]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.feats)

    def get(self, indices: Sequence[int]):
        """Stacked ``(feats, logits)`` if every index is cached, else None."""
        if not all(i in self.feats for i in indices):
            self.misses += 1
            return None
        self.hits += 1
        modalities = list(self.feats[indices[0]])
        feats = {m: torch.stack([self.feats[i][m] for i in indices]) for m in modalities}
        logits = {m: torch.stack([self.logits[i][m] for i in indices]) for m in modalities}
        return feats, logits

    def put(self, indices: Sequence[int], feats: Dict[str, torch.Tensor],
            logits: Dict[str, torch.Tensor]) -> None:
        for row, i in enumerate(indices):
            self.feats[i] = {m: f[row].detach().clone() for m, f in feats.items()}
            self.logits[i] = {m: t[row].detach().clone() for m, t in logits.items()}


__all__ = ['UnimodalTeachers', 'TeacherCache', 'load_teachers', 'build_teacher',
           'check_teacher_model_cfg',
           'plain_config', 'check_same_encoder', 'encoder_mismatch', 'is_random_transform',
           'random_transforms', 'check_cacheable', 'teacher_command', 'default_teacher_model']
