"""G2D: gradient-guided distillation with sequential modality prioritization (ICCV 2025).

Spec (docs/methods/g2d.md; UMT: docs/methods/umt.md):

* loss: L = CE(f, y) + lambda_feat * sum_m MSE(z_m, z_m^T)
  + lambda_logit * sum_m T^2 KL(softmax(t_m / T) || softmax(f / T)), with MSE the
  mean over batch x feature elements and KL summed over classes, mean over the
  batch; every teacher is distilled into the fused logits f;
* confidence c_m = mean_i softmax(t_m)_i[y_i] from the frozen teachers' logits
  (all-reduced under DDP);
* SMP: modalities ranked by c ascending every iteration (ties: config order);
  tau holds M durations in epochs: phase k < M trains only the k-th least
  confident modality, the last phase trains all jointly; "trains only" zeroes
  every parameter gradient of the other encoders after backward (fusion and
  head never). Under gradient accumulation the confidence sums and counts are
  added up over the micro-batches of an update and the SMP decision is taken
  once, from them, when the gradients are edited (k micro-batches of B equal
  one batch of kB).

UMT is this hook with lambda_logit = 0 and SMP off (tau[0] = 0).
"""
import math
import numbers
import warnings
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmbal.balance.dataset_pass import build_split_loader, dataset_pass, mean_of
from mmbal.balance.functional import (EPS, PARAM_FILTERS, all_reduce_sum, check_param_filter,
                                      filtered_params)
from mmbal.balance.teachers import TeacherCache, UnimodalTeachers, check_cacheable, load_teachers
from mmbal.engine.step import BalanceTerms
from mmbal.registry import HOOKS
from .base_balance_hook import BaseBalanceHook, check_number

RANKINGS = ('batch', 'dataset')
TASKS = ('classification', 'regression')
REG_LOGITS = (None, 'mse')


# --- pure math (unit-tested against hand computation) ------------------------------------------
def feature_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``MSE(z_m, z_m^T)``: mean over batch x feature elements; the teacher is detached."""
    if student.shape != teacher.shape:
        raise ValueError(f'student feature {tuple(student.shape)} and teacher feature '
                         f'{tuple(teacher.shape)} differ: G2D needs the same encoder')
    return F.mse_loss(student, teacher.detach().to(student.dtype), reduction='mean')


def logit_kl(fused: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0
             ) -> torch.Tensor:
    """``T^2 KL(softmax(t/T) || softmax(f/T))``: summed over classes, mean over the batch."""
    t = float(temperature)
    log_student = torch.log_softmax(fused / t, dim=1)
    log_teacher = torch.log_softmax(teacher.detach().to(fused.dtype) / t, dim=1)
    return F.kl_div(log_student, log_teacher, reduction='batchmean', log_target=True) * t * t


def regression_logit_mse(fused: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``MSE(sigmoid(f), sigmoid(t))`` (regression, ``reg_logit='mse'``)."""
    return F.mse_loss(torch.sigmoid(fused), torch.sigmoid(teacher.detach().to(fused.dtype)))


def sample_scores(logits: torch.Tensor, labels: torch.Tensor, task: str = 'classification'
                  ) -> torch.Tensor:
    """Per-sample confidence ``(B,)``, detached float64 (precision of near ties).

    classification: ``softmax(logits)[y]``; regression: ``1 - |sigmoid(logits) - y|``
    with ``y`` scaled to [0, 1].
    """
    logits = logits.detach().double()
    if task == 'classification':
        return torch.softmax(logits, dim=1).gather(1, labels.view(-1, 1).long()).squeeze(1)
    if task == 'regression':
        pred = torch.sigmoid(logits.reshape(logits.shape[0], -1)[:, 0])
        return 1 - (pred - labels.detach().double().reshape(-1)).abs()
    raise ValueError(f'unknown task {task!r}; expected one of {TASKS}')


def rank_ascending(confidence: Dict[str, float], order: Sequence[str]) -> List[str]:
    """Modalities by confidence, least confident first; ties keep config order."""
    return sorted(order, key=lambda m: (float(confidence[m]), list(order).index(m)))


def smp_phase(epoch: int, tau: Sequence[int], reference_compat: bool = False) -> int:
    """The 1-based SMP phase of a 0-based epoch; ``len(tau)`` is the joint phase.

    Phase k < M covers ``sum(tau[:k-1]) <= epoch < sum(tau[:k])``; from
    ``sum(tau[:M-1])`` on, all modalities train jointly. ``tau[0] == 0`` turns
    SMP off (always joint). ``reference_compat``: the last prioritized phase
    also includes epoch ``sum(tau[:M-1])`` (the reference's inclusive window
    ``0 <= e <= 150``).
    """
    m = len(tau)
    if m == 0 or tau[0] == 0:
        return m
    start = 0
    for k in range(m - 1):
        end = start + tau[k]
        last_prioritized = k == m - 2
        if start <= epoch < end or (reference_compat and last_prioritized and epoch == end):
            return k + 1
        start = end
    return m


def partial_coefficient(c_dominant: float, c_weak: float, alpha: float = 1.0) -> float:
    """Table 6 partial suppression: ``1 - tanh(alpha * c_dom / c_weak)``."""
    return 1.0 - math.tanh(alpha * float(c_dominant) / (float(c_weak) + EPS))


def smp_coefficients(ranking: Sequence[str], phase: int, confidence: Dict[str, float],
                     partial: bool = False, alpha: float = 1.0) -> Dict[str, float]:
    """Encoder-gradient coefficient of every modality in ``phase``.

    Joint phase (``phase == len(ranking)``): all 1. Phase k < M: the k-th least
    confident modality p gets 1, every other 0, or with ``partial``
    ``1 - tanh(alpha * c_m / c_p)``.
    """
    m = len(ranking)
    if phase >= m:
        return {mod: 1.0 for mod in ranking}
    prioritized = ranking[phase - 1]
    coefs = {}
    for mod in ranking:
        if mod == prioritized:
            coefs[mod] = 1.0
        elif partial:
            coefs[mod] = partial_coefficient(confidence[mod], confidence[prioritized], alpha)
        else:
            coefs[mod] = 0.0
    return coefs


def check_g2d_args(tau, ranking: str, task: str, reg_logit, hard_freeze: bool,
                   partial_suppression: bool, temperature: float,
                   reference_compat: bool = False, param_filter: Optional[str] = None) -> None:
    """Reject bad hook arguments when the hook is built."""
    if tau is None or len(tau) < 2:
        raise ValueError(f'G2DHook: tau must list one duration (epochs) per modality '
                         f'(M >= 2), got {tau!r}')
    if any(isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t)
           or int(t) != t or t < 0 for t in tau):
        raise ValueError(f'G2DHook: tau entries are durations in epochs (integers >= 0), '
                         f'got {list(tau)}')
    if tau[0] == 0 and any(t > 0 for t in tau[1:-1]):
        raise ValueError(f'G2DHook: tau[0] = 0 turns SMP off, but tau={list(tau)} gives '
                         f'later prioritized phases a duration; set them to 0 too')
    if ranking not in RANKINGS:
        raise ValueError(f'G2DHook: ranking={ranking!r}; expected one of {RANKINGS}')
    if task not in TASKS:
        raise ValueError(f'G2DHook: task={task!r}; expected one of {TASKS}')
    if reg_logit not in REG_LOGITS:
        raise ValueError(f'G2DHook: reg_logit={reg_logit!r}; expected one of {REG_LOGITS}')
    if hard_freeze and partial_suppression:
        raise ValueError('G2DHook: hard_freeze (gradients set to None) and '
                         'partial_suppression (gradients scaled by k) exclude each other')
    check_number('G2DHook', 'temperature', temperature, low=0, low_open=True,
                 meaning='T of the logit distillation')
    if param_filter is not None:
        if not reference_compat:
            raise ValueError(f'G2DHook: param_filter={param_filter!r} chooses the parameters '
                             f'reference_compat gates; without reference_compat every '
                             f'parameter of the other encoders is gated. Set '
                             f'reference_compat=True or drop param_filter')
        if param_filter not in PARAM_FILTERS:
            raise ValueError(f'G2DHook: param_filter={param_filter!r}; expected one of '
                             f'{PARAM_FILTERS}')


@HOOKS.register_module()
class G2DHook(BaseBalanceHook):
    """Distil frozen unimodal teachers into the student; prioritize modalities by confidence.

    Args:
        lambda_feat: Weight of sum_m MSE(z_m, z_m^T) (paper 1; 0 turns it off).
        lambda_logit: Weight of sum_m T^2 KL into the fused logits (paper 1; UMT 0).
        temperature: T (paper 1).
        tau: M durations in epochs, in ranking order: phase k < M trains only the
            k-th least confident modality, the last entry is the joint phase.
            ``tau[0] = 0`` turns SMP off. Paper CREMA-D (150, 150).
        analysis: Modality-analysis artifact whose unimodal runs are the teachers
            (``tools/analysis/modality_analysis.py CONFIG --teacher``).
        teacher_checkpoints: ``{modality: checkpoint}``; overrides the artifact.
        teacher_checkpoint: ``'best'`` (val-selected) or ``'last'`` run checkpoint.
        ranking: ``'batch'`` (c_m of the current batch, paper) or ``'dataset'`` (c_m
            averaged once over the training split under the training transforms).
        hard_freeze: Set the gated encoders' gradients to None (momentum and
            weight decay do not move them either) instead of multiplying by 0.
        reference_compat: Gate only 4-D conv weights and include epoch
            ``sum(tau[:M-1])`` in the prioritized window, as the reference code.
        param_filter: With ``reference_compat``, which parameters are gated:
            ``'conv'`` (default, the reference's: every 4-D convolution weight) or
            ``'weights'`` (ours: every parameter with >= 2 dims). Setup raises,
            naming the encoder, if it selects nothing while SMP is on.
        partial_suppression: Table 6 ablation: inside the prioritized window the
            other encoders get ``1 - tanh(alpha c_m / c_p)`` instead of 0.
        alpha: alpha of the partial suppression (paper 1).
        task: ``'classification'`` or ``'regression'`` (one sigmoid output, y in [0, 1]).
        reg_logit: Regression logit term: None (off) or ``'mse'`` (MSE of sigmoids).
        cache: Keep teacher features/logits per ``sample_idx`` (deterministic
            training pipelines only; refused otherwise).
    """

    method = 'g2d'

    def __init__(self, lambda_feat: float = 1.0, lambda_logit: float = 1.0,
                 temperature: float = 1.0, tau: Sequence[int] = (150, 150),
                 analysis: Optional[str] = None,
                 teacher_checkpoints: Optional[Dict[str, str]] = None,
                 teacher_checkpoint: str = 'best', ranking: str = 'batch',
                 hard_freeze: bool = False, reference_compat: bool = False,
                 partial_suppression: bool = False, alpha: float = 1.0,
                 task: str = 'classification', reg_logit: Optional[str] = None,
                 cache: bool = False, param_filter: Optional[str] = None) -> None:
        super().__init__()
        tau = list(tau) if tau is not None else None
        check_g2d_args(tau, ranking, task, reg_logit, hard_freeze, partial_suppression,
                       temperature, reference_compat, param_filter)
        for field, value in (('lambda_feat', lambda_feat), ('lambda_logit', lambda_logit)):
            check_number('G2DHook', field, value, low=0, meaning='a loss weight; 0 turns '
                         'the term off')
        check_number('G2DHook', 'alpha', alpha, low=0,
                     meaning='partial suppression 1 - tanh(alpha c_m / c_p)')
        self.lambda_feat = float(lambda_feat)
        self.lambda_logit = float(lambda_logit)
        self.temperature = float(temperature)
        self.tau = [int(t) for t in tau]
        self.analysis = analysis
        self.teacher_checkpoints = dict(teacher_checkpoints or {})
        self.teacher_checkpoint = teacher_checkpoint
        self.ranking = ranking
        self.hard_freeze = hard_freeze
        self.reference_compat = reference_compat
        # reference_compat gates a parameter group (default the 4-D conv weights)
        self.param_filter = (param_filter or 'conv') if reference_compat else None
        self.partial_suppression = partial_suppression
        self.alpha = float(alpha)
        self.task = task
        self.reg_logit = reg_logit
        self.cache: Optional[TeacherCache] = TeacherCache() if cache else None
        self.teachers: Optional[UnimodalTeachers] = None  # resolved in setup, or injected
        self.dataset_confidence: Optional[Dict[str, float]] = None
        # [teacher sums (M), student sums (M, if logged), count] of the current update
        self.conf_sums: Optional[torch.Tensor] = None
        self.k: Dict[str, float] = {}

    @property
    def smp(self) -> bool:
        return self.tau[0] > 0

    # --- setup ----------------------------------------------------------------------------
    def setup(self, model) -> None:
        """Cheap checks at every ``before_run`` (also of val/test runs, which need no teachers)."""
        modalities = list(model.modalities)
        if len(modalities) < 2:
            raise ValueError('G2DHook needs at least two modalities')
        if len(self.tau) != len(modalities):
            raise ValueError(f'G2DHook: tau={self.tau} has {len(self.tau)} entries but the '
                             f'model has {len(modalities)} modalities {modalities}: one '
                             f'duration per phase, the last one joint')
        if self.param_filter is not None and self.smp:
            check_param_filter({m: model.encoders[m] for m in modalities}, self.param_filter,
                               'G2DHook(reference_compat=True)')

    def before_train(self, runner) -> None:
        """Resolve the teachers (and the dataset ranking) once, when training starts."""
        super().before_train(runner)
        self.resolve(runner.model.module if is_model_wrapper(runner.model) else runner.model,
                     runner)

    def resolve(self, model, runner=None) -> None:
        """Load teachers (unless injected), check them, compute the dataset ranking.

        ``runner`` (used here only, never kept) gives the config the teachers are
        checked against and the training split of the dataset ranking.
        """
        modalities = list(model.modalities)
        if self.teachers is None:
            self.teachers = self._load_teachers(model, runner)
        missing = [m for m in modalities if m not in self.teachers.modalities]
        if missing:
            raise ValueError(f'G2DHook: no teacher for modalities {missing}')
        device = next(model.parameters()).device
        self.teachers.to(device)
        for m in modalities:
            t_dim = getattr(self.teachers.teachers[m].encoders[m], 'out_channels', None)
            s_dim = getattr(model.encoders[m], 'out_channels', None)
            if t_dim is not None and s_dim is not None and t_dim != s_dim:
                raise ValueError(f'G2DHook: the {m!r} teacher outputs {t_dim} features, the '
                                 f'student encoder {s_dim}')
        if runner is not None:
            self._check_schedule(runner)
            if self.cache is not None:
                check_cacheable(runner.train_dataloader.dataset)
            if self.ranking == 'dataset' and self.dataset_confidence is None:
                self.dataset_confidence = self.compute_dataset_confidence(
                    model, self._ranking_loader(runner))
        if self.ranking == 'dataset' and self.dataset_confidence is None:
            raise ValueError("G2DHook: ranking='dataset' needs the training split; run it "
                             'through a Runner or set hook.dataset_confidence')
        print_log(f'G2DHook: teachers {self.teachers.sources}, lambda_feat={self.lambda_feat}, '
                  f'lambda_logit={self.lambda_logit}, T={self.temperature}, tau={self.tau} '
                  f'(SMP {"on" if self.smp else "off"}), ranking={self.ranking}, '
                  f'hard_freeze={self.hard_freeze}, reference_compat={self.reference_compat}, '
                  f'param_filter={self.param_filter}, '
                  f'partial_suppression={self.partial_suppression}, task={self.task}, '
                  f'cache={self.cache is not None}', logger='current')
        if self.dataset_confidence is not None:
            print_log(f'G2DHook: teacher confidence over the training split '
                      f'{self.dataset_confidence}', logger='current')

    def _load_teachers(self, model, runner) -> UnimodalTeachers:
        cfg = getattr(runner, 'cfg', None)
        if cfg is None or 'model' not in cfg:
            raise ValueError('G2DHook needs the runner config to compare the teachers\' '
                             'encoders with the student\'s; or set hook.teachers')
        encoders = cfg.model.encoders
        num_classes = (model.head.num_classes if model.head is not None
                       else model.fusion.out_channels)
        return load_teachers(model.modalities, {m: encoders[m] for m in model.modalities},
                             num_classes, analysis=self.analysis,
                             checkpoints=self.teacher_checkpoints,
                             which=self.teacher_checkpoint, config=cfg.filename)

    def _check_schedule(self, runner) -> None:
        if not self.smp:
            return
        from mmengine.runner import EpochBasedTrainLoop
        loop = runner.train_loop
        if not isinstance(loop, EpochBasedTrainLoop):
            raise ValueError(f'G2DHook: SMP durations tau={self.tau} are in epochs; the train '
                             f'loop is {type(loop).__name__}. Use an epoch-based train_cfg '
                             f'or tau[0]=0')
        if loop.max_epochs != sum(self.tau):
            msg = (f'G2DHook: max_epochs={loop.max_epochs} differs from sum(tau)='
                   f'{sum(self.tau)} (tau={self.tau}); the paper trains sum(tau) epochs')
            warnings.warn(msg)
            print_log(msg, logger='current', level=30)

    @staticmethod
    def _ranking_loader(runner):
        """This rank's share of the whole training split under the training transforms.

        Built from ``runner.cfg`` by :func:`mmbal.balance.build_split_loader`
        (``split='train'``, ``pipeline='train'``): every sample on exactly one
        rank, in order, the train loader's batch size, workers and collate.
        """
        cfg = getattr(runner, 'cfg', None)
        if cfg is None or cfg.get('train_dataloader') is None:
            raise ValueError("G2DHook: ranking='dataset' reads the training split from the "
                             'runner config (cfg.train_dataloader), which is missing; or set '
                             'hook.dataset_confidence')
        workers = int(cfg.train_dataloader.get('num_workers', 0) or 0)
        return build_split_loader(cfg, split='train', pipeline='train', num_workers=workers)

    def compute_dataset_confidence(self, model, loader) -> Dict[str, float]:
        """c_m averaged over every sample ``loader`` yields on every rank, once.

        Runs :func:`mmbal.balance.dataset_pass` (no_grad, eval mode, the model's
        data preprocessor; float64 sums all-reduced; the global random states
        restored afterwards, so the pass does not shift the training's
        randomness, random training transforms included).
        """
        modalities = list(model.modalities)

        def confidence_sums(data) -> Dict[str, torch.Tensor]:
            samples = data['data_samples']
            _, logits = self.teacher_outputs(data['inputs'], samples)
            labels = samples['gt_label']
            return {'conf': torch.stack([sample_scores(logits[m], labels, self.task).sum()
                                         for m in modalities])}

        sums = dataset_pass(loader, confidence_sums, model=model)
        if sums['count'] == 0:
            raise ValueError('G2DHook: the training split is empty')
        conf = mean_of(sums['conf'], sums['count'])
        return {m: float(conf[i]) for i, m in enumerate(modalities)}

    # --- per iteration ---------------------------------------------------------------------
    def teacher_outputs(self, inputs: Dict[str, torch.Tensor], data_samples):
        """Teacher ``(features, logits)`` of the batch, from the cache when enabled."""
        if self.teachers is None:
            raise RuntimeError('G2DHook: teachers are not resolved; they are loaded in '
                               'before_train (or call hook.resolve(model))')
        if self.cache is None:
            return self.teachers(inputs)
        if 'sample_idx' not in data_samples:
            raise KeyError("G2DHook(cache=True) needs data_samples['sample_idx']")
        indices = [int(i) for i in torch.as_tensor(data_samples['sample_idx']).reshape(-1)]
        hit = self.cache.get(indices)
        if hit is not None:
            return hit
        feats, logits = self.teachers(inputs)
        self.cache.put(indices, feats, logits)
        return feats, logits

    def _student_logits(self, model, outputs) -> Optional[Dict[str, torch.Tensor]]:
        mode = model.modality_logits
        if mode is None and getattr(model.fusion, 'supports_analytic', False):
            mode = 'analytic'
        return None if mode is None else outputs.logits(mode)

    def after_forward(self, ctx, outputs, data_samples) -> BalanceTerms:
        model = ctx.model
        if outputs.inputs is None:
            raise ValueError('G2DHook needs the batch inputs in ModalityOutputs.inputs '
                             '(MultimodalClassifier.run passes them)')
        modalities = list(model.modalities)
        labels = data_samples['gt_label']
        t_feats, t_logits = self.teacher_outputs(outputs.inputs, data_samples)
        s_logits = self._student_logits(model, outputs)

        # Confidences: one float64 all-reduce of [teacher sums, student sums, batch size],
        # added to the sums of the update's earlier micro-batches.
        local = [sample_scores(t_logits[m], labels, self.task).sum() for m in modalities]
        if s_logits is not None:
            local += [sample_scores(s_logits[m], labels, self.task).sum() for m in modalities]
        local.append(torch.tensor(float(len(labels)), dtype=torch.float64, device=labels.device))
        sums = all_reduce_sum(torch.stack(local))
        if self.conf_sums is not None and self.conf_sums.shape != sums.shape:
            raise ValueError(f'G2DHook: this micro-batch has {sums.numel()} confidence sums, '
                             f'the earlier ones of the update {self.conf_sums.numel()}')
        self.conf_sums = sums if self.conf_sums is None else self.conf_sums + sums
        sums = self.conf_sums
        count = sums[-1].clamp_min(1.0)
        conf, rank_conf, phase, self.k = self.decide(ctx.epoch, modalities)

        fused = outputs.fused_logits
        feat_terms = {m: feature_mse(outputs.features[m], t_feats[m]) for m in modalities}
        logit_terms = None
        if self.task == 'classification':
            logit_terms = {m: logit_kl(fused, t_logits[m], self.temperature) for m in modalities}
        elif self.reg_logit == 'mse':
            logit_terms = {m: regression_logit_mse(fused, t_logits[m]) for m in modalities}

        for i, m in enumerate(modalities):
            self.log(f'conf_teacher_{m}', conf[m])
            if s_logits is not None:
                self.log(f'conf_student_{m}', float(sums[len(modalities) + i] / count))
            if self.ranking == 'dataset':
                self.log(f'conf_dataset_{m}', rank_conf[m])
            self.log(f'k_{m}', self.k[m])
            self.log(f'feat_mse_{m}', feat_terms[m])
            if logit_terms is not None:
                self.log(f'logit_{m}', logit_terms[m])
        self.log('phase', phase)

        losses = {}
        if self.lambda_feat != 0:
            losses['loss_g2d_feat'] = self.lambda_feat * sum(feat_terms.values())
        if self.lambda_logit != 0 and logit_terms is not None:
            losses['loss_g2d_logit'] = self.lambda_logit * sum(logit_terms.values())
        return BalanceTerms(losses=losses)

    def decide(self, epoch: int, modalities: Sequence[str]):
        """SMP from the confidence sums of the update so far.

        Returns ``(batch confidence, ranking confidence, phase, k)``.
        """
        sums = self.conf_sums
        count = sums[-1].clamp_min(1.0)
        conf = {m: float(sums[i] / count) for i, m in enumerate(modalities)}
        rank_conf = self.dataset_confidence if self.ranking == 'dataset' else conf
        ranking = rank_ascending(rank_conf, modalities)
        phase = smp_phase(epoch, self.tau, self.reference_compat)
        k = smp_coefficients(ranking, phase, rank_conf, self.partial_suppression, self.alpha)
        return conf, rank_conf, phase, k

    @torch.no_grad()
    def edit_grads(self, ctx) -> None:
        """Decide SMP once from the update's confidence sums; gate the non-prioritized
        encoders' gradients (never fusion or head); start the next update."""
        model = ctx.model
        if self.conf_sums is None:
            return
        _, _, _, k_all = self.decide(ctx.epoch, list(model.modalities))
        self.conf_sums, self.k = None, {}
        for m, k in k_all.items():
            if k == 1.0:
                continue
            encoder = model.encoders[m]
            params = (filtered_params(encoder, self.param_filter)
                      if self.param_filter is not None else encoder.named_parameters())
            for _, param in params:
                if param.grad is None:
                    continue
                if self.hard_freeze and k == 0.0:
                    param.grad = None
                else:
                    param.grad.mul_(k)
