"""G2D / UMT (SPEC "G2D (seed; ICCV 2025) and UMT as its ablation").

Losses, confidences, the SMP schedule, the gradient gating and its switches.
Every expected number is computed here by hand (math.exp / math.tanh on the
spec's formulas, or literals); the functions under test never produce their
own expectation.
"""
import copy
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from dist_utils import run_gloo
from mmengine.optim import OptimWrapper
from step_utils import Stepper, capture_step_grads, ctx_for, sgd_wrapper
from torch import nn

from mmbal.balance.teachers import UnimodalTeachers, check_cacheable, random_transforms
from mmbal.engine.hooks.g2d_hook import (G2DHook, feature_mse, logit_kl, partial_coefficient,
                                         rank_ascending, regression_logit_mse, sample_scores,
                                         smp_coefficients, smp_phase)
from mmbal.registry import MODELS

LN3 = math.log(3.0)


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def softmax(row, T=1.0):
    e = [math.exp(v / T) for v in row]
    return [x / sum(e) for x in e]


def hand_kl(fused, teacher, T):
    """T^2 * (1/B) sum_i sum_c p log(p / q), p = softmax(t/T), q = softmax(f/T)."""
    total = 0.0
    for f, t in zip(fused, teacher):
        p, q = softmax(t, T), softmax(f, T)
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    return T * T * total / len(fused)


# --------------------------------------------------------------------------- fake teachers
class ConstEncoder(nn.Module):
    """Returns the next preset feature batch (a teacher whose outputs the test fixes)."""

    def __init__(self, owner):
        super().__init__()
        self.__dict__['owner'] = owner  # not a submodule (that would be a cycle)
        self.out_channels = None

    def forward(self, x):
        return self.owner.current()[0]


class FixedTeacher(nn.Module):
    """A teacher with preset ``(features, logits)`` per call, in sequence."""

    def __init__(self, modality, outputs):
        super().__init__()
        self.outputs = list(outputs)
        self.calls = 0
        self.encoders = nn.ModuleDict({modality: ConstEncoder(self)})

    def current(self):
        return self.outputs[min(self.calls, len(self.outputs) - 1)]

    def classify(self, feats):
        out = self.current()[1]
        self.calls += 1
        return out


def fixed_teachers(per_modality):
    """``{m: [(feats, logits), ...]}`` -> UnimodalTeachers."""
    return UnimodalTeachers({m: FixedTeacher(m, outs) for m, outs in per_modality.items()})


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def stub_pass(hook, modalities, student_feats, fused, labels, student_logits=None,
              sample_idx=None, epoch=0):
    """Drive ``after_forward`` without a network, then ``edit_grads`` (each stub pass is one
    update, as in the step without accumulation); returns the extra losses."""
    model = SimpleNamespace(modalities=list(modalities),
                            modality_logits='analytic' if student_logits else None,
                            fusion=SimpleNamespace(supports_analytic=False),
                            encoders={m: nn.Identity() for m in modalities})
    b = len(labels)
    outputs = SimpleNamespace(inputs={m: torch.zeros(b, 1) for m in modalities},
                              features=student_feats, fused_logits=fused,
                              logits=lambda mode='analytic': student_logits)
    samples = {'gt_label': torch.tensor(labels)}
    if sample_idx is not None:
        samples['sample_idx'] = torch.tensor(sample_idx)
    ctx = ctx_for(model, epoch)
    losses = hook.after_forward(ctx, outputs, samples).losses
    hook.edit_grads(ctx)  # closes the update (the stub encoders have no gradients)
    return losses


# --------------------------------------------------------------------------- losses
ZS = [[1.0, 2.0, 3.0], [0.0, -1.0, 2.0]]
ZT = [[0.0, 2.0, 1.0], [1.0, 1.0, 2.0]]
FUSED = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]
TLOG = [[0.0, 1.0, 0.0], [2.0, 0.0, 1.0]]


def test_feature_mse_is_mean_over_batch_and_elements():
    # diffs 1,0,2,-1,-2,0 -> squares sum 10 over 2 x 3 elements
    assert float(feature_mse(t(ZS), t(ZT))) == pytest.approx(10 / 6)
    with pytest.raises(ValueError, match='same encoder'):
        feature_mse(t(ZS), t([[0.0, 1.0]] * 2))


@pytest.mark.parametrize('T,literal', [(1.0, 0.696778320719597), (2.0, 0.7771767589497955)])
def test_logit_kl_batchmean_times_t_squared(T, literal):
    expected = hand_kl(FUSED, TLOG, T)
    assert expected == pytest.approx(literal)
    assert float(logit_kl(t(FUSED), t(TLOG), T)) == pytest.approx(expected, rel=1e-5)


def test_teacher_is_detached_in_losses():
    zs, zt = t(ZS).requires_grad_(), t(ZT).requires_grad_()
    (feature_mse(zs, zt) + logit_kl(zs, zt, 2.0)).backward()
    assert zt.grad is None and zs.grad is not None


@pytest.mark.parametrize('T', [1.0, 2.0])
def test_hook_losses_sum_over_modalities_into_fused_logits(T):
    zs_v = [[0.5, 0.5, 0.5], [1.0, 0.0, 1.0]]
    zt_v = [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    t_v = [[1.0, 1.0, 3.0], [0.0, 0.0, 0.0]]
    hook = G2DHook(lambda_feat=0.5, lambda_logit=2.0, temperature=T, tau=(0, 1))
    hook.teachers = fixed_teachers({'audio': [(t(ZT), t(TLOG))], 'visual': [(t(zt_v), t(t_v))]})
    losses = stub_pass(hook, ['audio', 'visual'], {'audio': t(ZS), 'visual': t(zs_v)},
                       t(FUSED), [0, 1])
    mse_v = (0.25 * 3 + 0 + 1 + 0) / 6  # diffs .5,.5,.5 / 0,-1,0
    assert float(losses['loss_g2d_feat']) == pytest.approx(0.5 * (10 / 6 + mse_v), rel=1e-5)
    # both teachers distil into the same FUSED logits
    kl = hand_kl(FUSED, TLOG, T) + hand_kl(FUSED, t_v, T)
    assert float(losses['loss_g2d_logit']) == pytest.approx(2.0 * kl, rel=1e-5)
    assert float(hook._pending['feat_mse_visual']) == pytest.approx(mse_v, rel=1e-5)


def test_umt_has_no_logit_term_and_zero_lambdas_no_loss():
    hook = G2DHook(lambda_feat=1.0, lambda_logit=0.0, tau=(0, 1))  # UMT
    hook.teachers = fixed_teachers({'audio': [(t(ZT), t(TLOG))], 'visual': [(t(ZT), t(TLOG))]})
    losses = stub_pass(hook, ['audio', 'visual'], {'audio': t(ZS), 'visual': t(ZS)},
                       t(FUSED), [0, 1])
    assert set(losses) == {'loss_g2d_feat'}
    assert float(losses['loss_g2d_feat']) == pytest.approx(2 * 10 / 6, rel=1e-5)
    hook = G2DHook(lambda_feat=0.0, lambda_logit=0.0, tau=(0, 1))  # Joint
    hook.teachers = fixed_teachers({'audio': [(t(ZT), t(TLOG))], 'visual': [(t(ZT), t(TLOG))]})
    assert stub_pass(hook, ['audio', 'visual'], {'audio': t(ZS), 'visual': t(ZS)},
                     t(FUSED), [0, 1]) == {}


# --------------------------------------------------------------------------- confidences
# Two classes, labels (0, 0): logits (ln 3, 0) -> p[y] = 3/4, (0, 0) -> 1/2, (0, ln 3) -> 1/4.
A_LOGITS = [[LN3, 0.0], [0.0, 0.0]]   # c = (3/4 + 1/2) / 2 = 0.625
V_LOGITS = [[0.0, 0.0], [0.0, LN3]]   # c = (1/2 + 1/4) / 2 = 0.375
F2 = [[0.0, 0.0], [0.0, 0.0]]
Z2 = [[0.0, 0.0], [0.0, 0.0]]


def test_sample_scores_classification_and_regression():
    assert sample_scores(t(A_LOGITS), torch.tensor([0, 0])).tolist() == pytest.approx([0.75, 0.5])
    # SPEC "Clarifications": confidences in float64
    assert sample_scores(t(A_LOGITS), torch.tensor([0, 0])).dtype == torch.float64
    # regression: 1 - |sigmoid(t) - y|; sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4
    scores = sample_scores(t([[0.0], [LN3]]), torch.tensor([0.5, 0.25]), 'regression')
    assert scores.tolist() == pytest.approx([1.0, 0.5])


def test_confidences_from_teacher_logits_and_student_logged():
    hook = G2DHook(tau=(1, 1))
    hook.teachers = fixed_teachers({'audio': [(t(Z2), t(A_LOGITS))],
                                    'visual': [(t(Z2), t(V_LOGITS))]})
    student = {'audio': t(V_LOGITS), 'visual': t(F2)}  # student confidences 0.375 and 0.5
    stub_pass(hook, ['audio', 'visual'], {'audio': t(Z2), 'visual': t(Z2)}, t(F2), [0, 0],
              student_logits=student)
    log = hook._pending
    assert float(log['conf_teacher_audio']) == pytest.approx(0.625)
    assert float(log['conf_teacher_visual']) == pytest.approx(0.375)
    assert float(log['conf_student_audio']) == pytest.approx(0.375)
    assert float(log['conf_student_visual']) == pytest.approx(0.5)
    # visual's teacher is less confident: visual trains alone in phase 1
    assert (log['k_audio'], log['k_visual'], log['phase']) == (0.0, 1.0, 1)


def test_regression_mode_scores_and_logit_switch():
    labels = [0.5, 0.25]
    a = [[0.0], [LN3]]     # scores 1, 0.5 -> c = 0.75
    v = [[0.0], [0.0]]     # scores 1, 0.75 -> c = 0.875
    f = [[0.0], [0.0]]
    for reg_logit in (None, 'mse'):
        hook = G2DHook(tau=(1, 1), task='regression', reg_logit=reg_logit)
        hook.teachers = fixed_teachers({'audio': [(t(Z2), t(a))], 'visual': [(t(Z2), t(v))]})
        losses = stub_pass(hook, ['audio', 'visual'], {'audio': t(Z2), 'visual': t(Z2)}, t(f),
                           labels)
        assert float(hook._pending['conf_teacher_audio']) == pytest.approx(0.75)
        assert float(hook._pending['conf_teacher_visual']) == pytest.approx(0.875)
        assert hook._pending['k_audio'] == 1.0 and hook._pending['k_visual'] == 0.0
        if reg_logit is None:
            assert 'loss_g2d_logit' not in losses
        else:
            # MSE(sigmoid f, sigmoid t): audio ((1/2-1/2)^2 + (1/2-3/4)^2)/2 = 1/32, visual 0
            assert float(losses['loss_g2d_logit']) == pytest.approx(1 / 32, rel=1e-5)
    assert float(regression_logit_mse(t([[0.0]]), t([[LN3]]))) == pytest.approx(1 / 16)


# --------------------------------------------------------------------------- SMP schedule
def test_phase_epoch_by_epoch_m2_and_m3():
    # M = 2, tau = (2, 3): epochs 0, 1 prioritized, then joint (phase 2)
    assert [smp_phase(e, (2, 3)) for e in range(6)] == [1, 1, 2, 2, 2, 2]
    # M = 3, tau = (2, 1, 2): 0-1 least confident, 2 second least, 3+ joint
    assert [smp_phase(e, (2, 1, 2)) for e in range(6)] == [1, 1, 2, 3, 3, 3]
    # tau_1 = 0: no SMP at all
    assert [smp_phase(e, (0, 5)) for e in range(3)] == [2, 2, 2]
    assert [smp_phase(e, (0, 0, 5)) for e in range(3)] == [3, 3, 3]


def test_reference_compat_window_is_inclusive():
    # (150, 150): paper 0 <= e < 150 (150 epochs); reference 0 <= e <= 150 (151 epochs)
    assert sum(smp_phase(e, (150, 150)) == 1 for e in range(300)) == 150
    assert sum(smp_phase(e, (150, 150), reference_compat=True) == 1 for e in range(300)) == 151
    assert smp_phase(150, (150, 150)) == 2 and smp_phase(150, (150, 150), True) == 1
    assert smp_phase(151, (150, 150), True) == 2
    # M = 3: only the end of the last prioritized phase becomes inclusive
    assert [smp_phase(e, (2, 1, 2), True) for e in range(5)] == [1, 1, 2, 2, 3]


def test_ranking_ascending_ties_by_config_order():
    assert rank_ascending({'audio': 0.7, 'visual': 0.2}, ['audio', 'visual']) == ['visual', 'audio']
    assert rank_ascending({'audio': 0.5, 'visual': 0.5}, ['audio', 'visual']) == ['audio', 'visual']
    assert rank_ascending({'audio': 0.5, 'visual': 0.5}, ['visual', 'audio']) == ['visual', 'audio']
    c = {'a': 0.3, 'b': 0.1, 'c': 0.3}
    assert rank_ascending(c, ['a', 'b', 'c']) == ['b', 'a', 'c']
    assert smp_coefficients(['b', 'a', 'c'], 1, c) == {'b': 1.0, 'a': 0.0, 'c': 0.0}
    assert smp_coefficients(['b', 'a', 'c'], 2, c) == {'b': 0.0, 'a': 1.0, 'c': 0.0}
    assert smp_coefficients(['b', 'a', 'c'], 3, c) == {'b': 1.0, 'a': 1.0, 'c': 1.0}


def conf_logits(c_rows):
    """Two-class logits whose softmax[0] are the given per-sample probabilities."""
    return t([[math.log(p / (1 - p)), 0.0] for p in c_rows])


def run_batches(hook, modalities, per_batch_probs, epoch):
    """One stub pass per batch; teacher m's batch-b probabilities of class 0 (labels 0)."""
    hook.teachers = fixed_teachers({
        m: [(t([[0.0, 0.0]] * 2), conf_logits(batch[m])) for batch in per_batch_probs]
        for m in modalities})
    ks = []
    for _ in per_batch_probs:
        stub_pass(hook, modalities, {m: t(Z2) for m in modalities}, t(F2), [0, 0], epoch=epoch)
        ks.append({m: hook._pending[f'k_{m}'] for m in modalities})
    return ks


def test_smp_batch_by_batch_m2_ranking_changes_and_tie():
    batches = [{'audio': [0.2, 0.4], 'visual': [0.6, 0.8]},   # audio less confident
               {'audio': [0.9, 0.7], 'visual': [0.5, 0.5]},   # visual less confident
               {'audio': [0.4, 0.6], 'visual': [0.6, 0.4]}]   # exact tie: config order
    hook = G2DHook(tau=(2, 3))
    for epoch in (0, 1):
        ks = run_batches(hook, ['audio', 'visual'], batches, epoch)
        assert ks == [{'audio': 1.0, 'visual': 0.0}, {'audio': 0.0, 'visual': 1.0},
                      {'audio': 1.0, 'visual': 0.0}]
        assert hook._pending['phase'] == 1
    # config order reversed: the tie goes to visual
    ks = run_batches(G2DHook(tau=(2, 3)), ['visual', 'audio'], batches[2:], 0)
    assert ks == [{'visual': 1.0, 'audio': 0.0}]
    for epoch in (2, 3, 4):
        ks = run_batches(hook, ['audio', 'visual'], batches, epoch)
        assert all(k == {'audio': 1.0, 'visual': 1.0} for k in ks)
        assert hook._pending['phase'] == 2


def test_smp_batch_by_batch_m3():
    mods = ['audio', 'visual', 'text']
    batches = [{'audio': [0.5, 0.5], 'visual': [0.2, 0.2], 'text': [0.8, 0.8]},  # v < a < t
               {'audio': [0.1, 0.1], 'visual': [0.3, 0.3], 'text': [0.3, 0.3]}]  # a < v = t
    hook = G2DHook(tau=(1, 1, 1))
    assert run_batches(hook, mods, batches, 0) == [
        {'audio': 0.0, 'visual': 1.0, 'text': 0.0},
        {'audio': 1.0, 'visual': 0.0, 'text': 0.0}]
    # phase 2: the SECOND least confident; in batch 2 visual and text tie and visual comes
    # first in config order, so the ranking is (audio, visual, text) and visual trains
    assert run_batches(hook, mods, batches, 1) == [
        {'audio': 1.0, 'visual': 0.0, 'text': 0.0},
        {'audio': 0.0, 'visual': 1.0, 'text': 0.0}]
    # the same tie with text configured before visual: text is second
    swapped = ['audio', 'text', 'visual']
    assert run_batches(G2DHook(tau=(1, 1, 1)), swapped, batches[1:], 1) == [
        {'audio': 0.0, 'text': 1.0, 'visual': 0.0}]
    assert run_batches(hook, mods, batches, 2) == [{m: 1.0 for m in mods}] * 2


def test_no_smp_when_tau1_is_zero():
    batches = [{'audio': [0.2, 0.2], 'visual': [0.9, 0.9]}]
    hook = G2DHook(tau=(0, 10))
    assert run_batches(hook, ['audio', 'visual'], batches, 0) == [{'audio': 1.0, 'visual': 1.0}]
    assert not hook.smp and hook._pending['phase'] == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match='durations'):
        G2DHook(tau=(1.5, 2))
    with pytest.raises(ValueError, match='one duration'):
        G2DHook(tau=(3, ))
    with pytest.raises(ValueError, match='SMP off'):
        G2DHook(tau=(0, 2, 3))
    with pytest.raises(ValueError, match='exclude'):
        G2DHook(hard_freeze=True, partial_suppression=True)
    with pytest.raises(ValueError, match='ranking'):
        G2DHook(ranking='val')
    with pytest.raises(ValueError, match='tau'):
        G2DHook(tau=(1, 1, 1)).setup(SimpleNamespace(modalities=['audio', 'visual']))


def test_partial_suppression_coefficient():
    k = 1 - math.tanh(1.0 * 0.6 / 0.3)
    assert k == pytest.approx(0.0359724199241831)
    assert partial_coefficient(0.6, 0.3, 1.0) == pytest.approx(k)
    c = {'audio': 0.3, 'visual': 0.6}
    out = smp_coefficients(['audio', 'visual'], 1, c, partial=True, alpha=1.0)
    assert out['audio'] == 1.0 and out['visual'] == pytest.approx(k)
    # through the hook: c_audio = 0.625, c_visual = 0.375 -> audio is the dominant
    hook = G2DHook(tau=(1, 1), partial_suppression=True)
    hook.teachers = fixed_teachers({'audio': [(t(Z2), t(A_LOGITS))],
                                    'visual': [(t(Z2), t(V_LOGITS))]})
    stub_pass(hook, ['audio', 'visual'], {'audio': t(Z2), 'visual': t(Z2)}, t(F2), [0, 0])
    assert hook._pending['k_visual'] == 1.0
    assert hook._pending['k_audio'] == pytest.approx(1 - math.tanh(0.625 / 0.375), rel=1e-5)
    # epoch 1: joint phase, no suppression
    stub_pass(hook, ['audio', 'visual'], {'audio': t(Z2), 'visual': t(Z2)}, t(F2), [0, 0],
              epoch=1)
    assert hook._pending['k_audio'] == 1.0


def test_dataset_ranking_uses_the_dataset_confidence():
    hook = G2DHook(tau=(1, 1), ranking='dataset')
    hook.dataset_confidence = {'audio': 0.1, 'visual': 0.9}
    # this batch says visual is less confident; the dataset ranking says audio
    hook.teachers = fixed_teachers({'audio': [(t(Z2), t(A_LOGITS))],
                                    'visual': [(t(Z2), t(V_LOGITS))]})
    stub_pass(hook, ['audio', 'visual'], {'audio': t(Z2), 'visual': t(Z2)}, t(F2), [0, 0])
    assert (hook._pending['k_audio'], hook._pending['k_visual']) == (1.0, 0.0)
    assert hook._pending['conf_dataset_audio'] == 0.1
    assert float(hook._pending['conf_teacher_audio']) == pytest.approx(0.625)


def test_dataset_confidence_averages_every_training_sample():
    model = build_model('mlp')
    # 3 batches of 2 samples; audio probabilities of the true class (label 0) given here
    probs = [[0.2, 0.4], [0.6, 0.8], [0.5, 0.5]]
    hook = G2DHook(tau=(1, 1), ranking='dataset')
    hook.teachers = fixed_teachers({
        'audio': [(t([[0.0] * 4] * 2), conf_logits(p)) for p in probs],
        'visual': [(t([[0.0] * 3] * 2), conf_logits([0.5, 0.5]))] * 3})
    loader = [{'inputs': {'audio': torch.zeros(2, 3), 'visual': torch.zeros(2, 2)},
               'data_samples': {'gt_label': torch.tensor([0, 0])}}] * 3
    conf = hook.compute_dataset_confidence(model, loader)
    assert conf['audio'] == pytest.approx(3.0 / 6) and conf['visual'] == pytest.approx(0.5)


# --------------------------------------------------------------------------- dataset ranking
ROOT = Path(__file__).resolve().parents[2]
AVD_ROOT = str(ROOT / 'data' / 'avdigits')
AVD_ENC = {'audio': dict(type='MLPEncoder', in_channels=129 * 63, out_channels=4),
           'visual': dict(type='MLPEncoder', in_channels=28 * 28, out_channels=3)}


def avdigits_cfg(n=6, batch_size=4):
    """The shipped AV-Digits loaders over n training rows; the TRAIN pipeline adds seeded
    image noise (deterministic per sample), so train and eval views differ."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(ROOT / 'configs/_base_/datasets/avdigits.py'))
    for split in ('train', 'val'):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=AVD_ROOT, indices=n)
    train_pipeline = copy.deepcopy(cfg.train_dataloader.dataset.pipeline)
    train_pipeline[1] = dict(type='DegradeImage', noise_std=0.8, downscale=1, seed=3)
    cfg.train_dataloader.dataset.pipeline = train_pipeline
    return cfg


def avdigits_student_and_teachers(seed=0):
    from mmbal.balance.teachers import default_teacher_model
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='MultimodalClassifier', encoders=copy.deepcopy(AVD_ENC),
                              fusion=dict(type='LateFusion', num_classes=10), head=None))
    teachers = UnimodalTeachers({m: MODELS.build(default_teacher_model(AVD_ENC[m], m, 10))
                                 for m in AVD_ENC})
    return model, teachers


def hand_dataset_confidence(cfg, teachers, pipeline):
    """mean_i softmax(t_m(x_i))[y_i] over every training row, one sample at a time."""
    from mmbal.registry import DATASETS
    dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    dataset_cfg['pipeline'] = copy.deepcopy(pipeline)
    dataset = DATASETS.build(dataset_cfg)
    conf = {m: [] for m in AVD_ENC}
    with torch.no_grad():
        for i in range(len(dataset)):
            sample = dataset[i]
            y = int(sample['data_samples']['gt_label'])
            for m, teacher in teachers.teachers.items():
                z = teacher.encoders[m](sample['inputs'][m][None].float())
                conf[m].append(softmax(teacher.classify({m: z})[0].tolist())[y])
    return {m: math.fsum(v) / len(v) for m, v in conf.items()}, len(dataset)


def test_dataset_ranking_is_the_whole_training_split_under_training_transforms():
    """SPEC "G2D": ranking='dataset' averages c_m over the whole TRAINING split under the
    training transforms, through the core dataset pass (build_split_loader + dataset_pass)."""
    cfg = avdigits_cfg()
    model, teachers = avdigits_student_and_teachers()
    expected, n = hand_dataset_confidence(cfg, teachers, cfg.train_dataloader.dataset.pipeline)
    eval_view, _ = hand_dataset_confidence(cfg, teachers, cfg.val_dataloader.dataset.pipeline)
    assert n == 6 and abs(expected['visual'] - eval_view['visual']) > 1e-4  # views differ
    hook = G2DHook(tau=(1, 1), ranking='dataset')
    hook.teachers = teachers
    runner = SimpleNamespace(cfg=cfg)
    loader = hook._ranking_loader(runner)
    assert loader.batch_size == 4 and len(loader.dataset) == 6  # batches of 4 + 2
    rng = torch.get_rng_state()
    conf = hook.compute_dataset_confidence(model, loader)
    assert torch.equal(torch.get_rng_state(), rng)  # the pass leaves training's RNG alone
    for m in AVD_ENC:
        assert conf[m] == pytest.approx(expected[m], rel=1e-6)
    assert model.training  # eval mode inside the pass only
    with pytest.raises(ValueError, match=r'cfg\.train_dataloader'):
        hook._ranking_loader(SimpleNamespace(cfg=None))


def _dataset_rank(rank, world, out_dir):
    model, teachers = avdigits_student_and_teachers()
    hook = G2DHook(tau=(1, 1), ranking='dataset')
    hook.teachers = teachers
    loader = hook._ranking_loader(SimpleNamespace(cfg=avdigits_cfg(n=7, batch_size=2)))
    conf = hook.compute_dataset_confidence(model, loader)
    with open(f'{out_dir}/dataset_rank{rank}_of{world}.json', 'w') as f:
        json.dump({'conf': conf, 'shard': len(loader.dataset)}, f)


def test_dataset_ranking_is_all_reduced_under_ddp(tmp_path):
    run_gloo(_dataset_rank, str(tmp_path))
    _dataset_rank(0, 1, str(tmp_path))
    r0, r1, single = (json.loads((tmp_path / f'dataset_{n}.json').read_text())
                      for n in ('rank0_of2', 'rank1_of2', 'rank0_of1'))
    assert (r0['shard'], r1['shard'], single['shard']) == (4, 3, 7)  # each sample once
    assert r0['conf'] == r1['conf']
    for m, c in single['conf'].items():  # (float32 teacher logits of other batch shapes)
        assert r0['conf'][m] == pytest.approx(c, rel=1e-6)


# --------------------------------------------------------------------------- gating
B, C = 4, 3


def build_model(kind='mlp', seed=0):
    torch.manual_seed(seed)
    if kind == 'mlp':
        encoders = dict(audio=dict(type='MLPEncoder', in_channels=3, out_channels=4,
                                   hidden_channels=(5, )),
                        visual=dict(type='MLPEncoder', in_channels=2, out_channels=3))
    else:
        encoders = dict(audio=dict(type='ResNet18', in_channels=1, base_channels=4),
                        visual=dict(type='ResNet18', in_channels=1, base_channels=4))
    return MODELS.build(dict(type='MultimodalClassifier', encoders=encoders,
                             fusion=dict(type='LateFusion', num_classes=C), head=None))


def make_batch(kind, seed=1):
    g = torch.Generator().manual_seed(seed)
    if kind == 'mlp':
        inputs = {'audio': torch.randn(B, 3, generator=g), 'visual': torch.randn(B, 2, generator=g)}
    else:
        inputs = {'audio': torch.randn(B, 1, 16, 16, generator=g),
                  'visual': torch.randn(B, 1, 16, 16, generator=g)}
    return inputs, {'gt_label': torch.tensor([0, 1, 2, 0])}


def teachers_for(model, audio_less_confident=True, seed=3):
    """Fixed teacher features of the student's dims; audio's teacher the less confident."""
    g = torch.Generator().manual_seed(seed)
    labels = [0, 1, 2, 0]
    strong = t([[4.0 if c == y else 0.0 for c in range(C)] for y in labels])
    weak = t([[0.5 if c == y else 0.0 for c in range(C)] for y in labels])
    lo, hi = ('audio', 'visual') if audio_less_confident else ('visual', 'audio')
    logits = {lo: weak, hi: strong}
    return fixed_teachers({
        m: [(torch.randn(B, model.encoders[m].out_channels, generator=g), logits[m])]
        for m in model.modalities})


def attach(hook, model, teachers):
    hook.teachers = teachers
    hook.setup(model)
    hook.resolve(model)


def grads_at_step(model, hook, inputs, samples, epoch, optimizer=None, lr=0.1, momentum=0.0,
                  wd=0.0):
    """One update through the training step; grads as optimizer.step sees them (None kept)."""
    opt = optimizer or torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                       weight_decay=wd)
    wrapper = OptimWrapper(optimizer=opt)
    original = opt.step
    captured = capture_step_grads(wrapper, model)
    Stepper(model, [hook], optim_wrapper=wrapper)(inputs, samples, epoch=epoch)
    opt.step = original
    return dict(captured)


def owner(name):
    return name.split('.')[1] if name.startswith('encoders.') else None


@pytest.mark.parametrize('audio_less_confident', [True, False])
def test_gating_zeroes_exactly_the_other_encoder(audio_less_confident):
    base = build_model('mlp')
    inputs, samples = make_batch('mlp')
    teachers = teachers_for(base, audio_less_confident)
    joint_model, smp_model = copy.deepcopy(base), copy.deepcopy(base)
    joint_hook, smp_hook = G2DHook(tau=(1, 1)), G2DHook(tau=(1, 1))
    attach(joint_hook, joint_model, teachers)
    g_joint = grads_at_step(joint_model, joint_hook, inputs, samples, epoch=1)  # joint phase
    attach(smp_hook, smp_model, teachers)
    g_smp = grads_at_step(smp_model, smp_hook, inputs, samples, epoch=0)        # phase 1
    prioritized = 'audio' if audio_less_confident else 'visual'
    assert smp_hook._pending[f'k_{prioritized}'] == 1.0
    names = list(g_joint)
    assert any(n.startswith('fusion.') for n in names)
    for n in names:
        if owner(n) is not None and owner(n) != prioritized:
            assert g_joint[n].abs().max() > 0, n
            assert torch.equal(g_smp[n], torch.zeros_like(g_joint[n])), n   # grad * 0
        else:  # the prioritized encoder, the fusion's per-modality heads: untouched
            assert torch.equal(g_smp[n], g_joint[n]), n


def test_hard_freeze_keeps_params_still_under_momentum_and_weight_decay():
    base = build_model('mlp')
    inputs, samples = make_batch('mlp')
    teachers = teachers_for(base, audio_less_confident=True)
    after = {}
    for hard in (False, True):
        model = copy.deepcopy(base)
        hook = G2DHook(tau=(1, 1), hard_freeze=hard)
        attach(hook, model, teachers)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
        grads_at_step(model, hook, inputs, samples, 1, optimizer=opt)  # joint: momentum builds
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        grads = grads_at_step(model, hook, inputs, samples, 0, optimizer=opt)  # audio alone
        moved = {n: not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters()}
        after[hard] = (grads, moved)
    grads, moved = after[True]
    for n in grads:
        if owner(n) == 'visual':
            assert grads[n] is None and not moved[n], n
        else:
            assert grads[n] is not None and moved[n], n
    grads, moved = after[False]   # grad * 0: momentum and weight decay still move visual
    assert all(moved[n] for n in grads if owner(n) == 'visual')
    assert all(torch.equal(grads[n], torch.zeros_like(grads[n]))
               for n in grads if owner(n) == 'visual')


def test_reference_compat_gates_only_conv_weights():
    base = build_model('resnet')
    inputs, samples = make_batch('resnet')
    teachers = teachers_for(base, audio_less_confident=True)
    results = {}
    runs = [('joint', {}, 5), ('paper', {}, 0), ('ref', dict(reference_compat=True), 0)]
    for name, kw, epoch in runs:
        model = copy.deepcopy(base)
        hook = G2DHook(tau=(1, 1), **kw)
        attach(hook, model, teachers)
        results[name] = grads_at_step(model, hook, inputs, samples, epoch)
    params = dict(base.named_parameters())
    conv = [n for n in params if owner(n) == 'visual' and params[n].dim() == 4]
    other = [n for n in params if owner(n) == 'visual' and params[n].dim() != 4]
    assert 'encoders.visual.stem.0.weight' in conv and any('bn' in n for n in other)
    for n in conv:
        assert torch.equal(results['ref'][n], torch.zeros_like(results['ref'][n])), n
    for n in other:  # BN affine: zeroed by the paper rule, untouched by the reference's
        assert torch.equal(results['paper'][n], torch.zeros_like(results['paper'][n])), n
        assert torch.equal(results['ref'][n], results['joint'][n]), n
    assert any(results['joint'][n].abs().max() > 0 for n in other)
    for n in params:
        if owner(n) != 'visual':
            assert torch.equal(results['ref'][n], results['joint'][n]), n


def test_reference_compat_on_mlp_encoders_raises_naming_the_encoder():
    """SPEC "Clarifications": 'conv weights only' with no conv weight is an error at setup."""
    model = build_model('mlp')
    with pytest.raises(ValueError, match=r"G2DHook\(reference_compat=True\): "
                                         r"param_filter='conv' selects no parameter of "
                                         r"encoder 'audio' \(MLPEncoder"):
        G2DHook(tau=(1, 1), reference_compat=True).setup(model)
    G2DHook(tau=(0, 2), reference_compat=True).setup(model)  # SMP off: nothing is gated
    G2DHook(tau=(1, 1)).setup(model)  # the paper's rule gates every parameter
    with pytest.raises(ValueError, match="param_filter='weights'.*reference_compat=True"):
        G2DHook(tau=(1, 1), param_filter='weights')
    with pytest.raises(ValueError, match="param_filter='bn'.*'conv', 'weights'"):
        G2DHook(tau=(1, 1), reference_compat=True, param_filter='bn')


def test_reference_compat_weights_filter_gates_every_2d_weight_of_an_mlp():
    base = build_model('mlp')
    inputs, samples = make_batch('mlp')
    teachers = teachers_for(base, audio_less_confident=True)
    results = {}
    for name, kw, epoch in [('joint', {}, 1),
                            ('ref', dict(reference_compat=True, param_filter='weights'), 0)]:
        model = copy.deepcopy(base)
        hook = G2DHook(tau=(1, 1), **kw)
        attach(hook, model, teachers)
        results[name] = grads_at_step(model, hook, inputs, samples, epoch)
    params = dict(base.named_parameters())
    gated = [n for n in params if owner(n) == 'visual' and params[n].dim() >= 2]
    assert gated == ['encoders.visual.layers.0.weight']
    for n in params:
        if n in gated:
            assert results['joint'][n].abs().max() > 0, n
            assert torch.equal(results['ref'][n], torch.zeros_like(results['ref'][n])), n
        else:  # visual's bias, audio (prioritized), the fusion's heads
            assert torch.equal(results['ref'][n], results['joint'][n]), n


def test_partial_suppression_scales_all_encoder_grads():
    base = build_model('mlp')
    inputs, samples = make_batch('mlp')
    teachers = teachers_for(base, audio_less_confident=True)
    joint_model, model = copy.deepcopy(base), copy.deepcopy(base)
    joint_hook = G2DHook(tau=(1, 1))
    attach(joint_hook, joint_model, teachers)
    g_joint = grads_at_step(joint_model, joint_hook, inputs, samples, epoch=1)
    hook = G2DHook(tau=(1, 1), partial_suppression=True)
    attach(hook, model, teachers)
    g = grads_at_step(model, hook, inputs, samples, epoch=0)
    # teacher confidences by hand: softmax[y] of (0.5, 0, 0) and of (4, 0, 0)
    c_weak = math.exp(0.5) / (math.exp(0.5) + 2)
    c_dom = math.exp(4.0) / (math.exp(4.0) + 2)
    k = 1 - math.tanh(c_dom / c_weak)
    assert float(hook._pending['conf_teacher_visual']) == pytest.approx(c_dom, rel=1e-5)
    for n in g:
        if owner(n) == 'visual':
            torch.testing.assert_close(g[n], k * g_joint[n], rtol=1e-5, atol=1e-9)
        else:
            assert torch.equal(g[n], g_joint[n]), n


def test_teachers_are_not_seen_by_optimizer_or_checkpoint():
    from mmbal.balance.teachers import default_teacher_model
    model = build_model('mlp')
    enc = {'audio': dict(type='MLPEncoder', in_channels=3, out_channels=4, hidden_channels=(5, )),
           'visual': dict(type='MLPEncoder', in_channels=2, out_channels=3)}
    teachers = UnimodalTeachers({m: MODELS.build(default_teacher_model(enc[m], m, C))
                                 for m in enc})
    n_params = len(list(model.parameters()))
    keys = set(model.state_dict())
    hook = G2DHook(tau=(1, 1))
    attach(hook, model, teachers)
    model.train()
    assert len(list(model.parameters())) == n_params and set(model.state_dict()) == keys
    for teacher in teachers.teachers.values():
        assert not teacher.training
        assert all(not p.requires_grad for p in teacher.parameters())
    inputs, samples = make_batch('mlp')
    feats, logits = teachers(inputs)
    assert not feats['audio'].requires_grad and logits['visual'].shape == (B, C)


# --------------------------------------------------------------------------- cache
def test_cache_serves_teacher_outputs_per_sample_idx():
    hook = G2DHook(tau=(0, 1), cache=True)
    hook.teachers = fixed_teachers({'audio': [(t(ZT), t(TLOG))], 'visual': [(t(ZT), t(TLOG))]})
    for _ in range(3):
        stub_pass(hook, ['audio', 'visual'], {'audio': t(ZS), 'visual': t(ZS)}, t(FUSED),
                  [0, 1], sample_idx=[7, 3])
    assert hook.teachers.teachers['audio'].calls == 1     # computed once, then cached
    assert hook.cache.hits == 2 and len(hook.cache) == 2
    stub_pass(hook, ['audio', 'visual'], {'audio': t(ZS), 'visual': t(ZS)}, t(FUSED),
              [1, 0], sample_idx=[3, 7])  # reordered: teacher rows follow the index
    # (1,2,3)-(1,1,2) and (0,-1,2)-(0,2,1): squares 0+1+1 + 0+9+1 = 12 over 6 elements
    assert float(hook._pending['feat_mse_audio']) == pytest.approx(2.0)
    assert float(hook._pending['feat_mse_audio']) == pytest.approx(
        sum((a - b) ** 2 for ra, rb in zip(ZS, ZT[::-1]) for a, b in zip(ra, rb)) / 6)
    with pytest.raises(KeyError, match='sample_idx'):
        stub_pass(hook, ['audio', 'visual'], {'audio': t(ZS), 'visual': t(ZS)}, t(FUSED), [0, 1])


def test_cache_refused_with_a_random_pipeline():
    from mmengine.dataset import Compose
    from mmbal.registry import TRANSFORMS
    det = [dict(type='DegradeImage', noise_std=0.1, seed=0),
           dict(type='Normalize', mean=[0.5], std=[0.5]),
           dict(type='LoadFrames', sampling='random', test_mode=True)]
    rand = det + [dict(type='RandomFlip', prob=0.5)]
    build = lambda cfgs: Compose([TRANSFORMS.build(c) for c in cfgs])  # noqa: E731
    assert random_transforms(build(det)) == []
    assert len(random_transforms(build(rand))) == 1
    assert random_transforms(build([dict(type='LoadFrames', sampling='random')]))
    nested = build([dict(type='LoadAudioSpectrogram', load=dict(sample_rate=8000),
                         waveform_transforms=[dict(type='AddNoiseSNR', snr_db=5)])])
    assert random_transforms(nested) == []
    check_cacheable(SimpleNamespace(pipeline=build(det)))
    with pytest.raises(ValueError, match='RandomFlip'):
        check_cacheable(SimpleNamespace(pipeline=build(rand)))
    # through the hook, when training starts
    hook = G2DHook(tau=(0, 2), cache=True)
    model = build_model('mlp')
    runner = SimpleNamespace(
        train_loop=SimpleNamespace(max_epochs=2),
        train_dataloader=SimpleNamespace(dataset=SimpleNamespace(pipeline=build(rand))))
    hook.teachers = teachers_for(model)
    hook.setup(model)
    with pytest.raises(ValueError, match='RandomFlip'):
        hook.resolve(model, runner)


def test_schedule_warning_and_epoch_loop_required():
    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

    def loop(cls, epochs):
        obj = cls.__new__(cls)
        obj._max_epochs = epochs
        return obj

    hook = G2DHook(tau=(5, 5))
    with pytest.warns(UserWarning, match=r'max_epochs=12 differs from sum\(tau\)=10'):
        hook._check_schedule(SimpleNamespace(train_loop=loop(EpochBasedTrainLoop, 12)))
    hook._check_schedule(SimpleNamespace(train_loop=loop(EpochBasedTrainLoop, 10)))  # silent
    with pytest.raises(ValueError, match='epochs'):
        hook._check_schedule(SimpleNamespace(train_loop=loop(IterBasedTrainLoop, 1)))
    G2DHook(tau=(0, 5))._check_schedule(SimpleNamespace(train_loop=loop(IterBasedTrainLoop, 1)))


# --------------------------------------------------------------------------- DDP
# Per rank, the teachers' probabilities of the true class (2 samples each); the local and
# the global rankings differ on rank 0.
DDP_PROBS = [{'audio': [0.2, 0.2], 'visual': [0.3, 0.3]},    # rank 0: audio 0.2 < visual 0.3
             {'audio': [0.9, 0.9], 'visual': [0.5, 0.5]}]    # rank 1: visual 0.5 < audio 0.9
# global: audio (0.2 + 0.2 + 0.9 + 0.9) / 4 = 0.55, visual (0.3 + 0.3 + 0.5 + 0.5) / 4 = 0.4


def _ddp_step(rank, world, out_dir):
    hook = G2DHook(tau=(1, 1))
    run_batches(hook, ['audio', 'visual'], [DDP_PROBS[rank]], epoch=0)
    result = {k: float(v) for k, v in hook._pending.items() if k.startswith(('k_', 'conf_'))}
    with open(f'{out_dir}/rank{rank}.json', 'w') as f:
        json.dump(result, f)


def test_confidences_are_all_reduced_under_ddp(tmp_path):
    run_gloo(_ddp_step, str(tmp_path))
    r0, r1 = (json.loads((tmp_path / f'rank{r}.json').read_text()) for r in (0, 1))
    assert r0 == r1
    assert r0['conf_teacher_audio'] == pytest.approx(0.55, abs=1e-6)
    assert r0['conf_teacher_visual'] == pytest.approx(0.4, abs=1e-6)
    assert (r0['k_audio'], r0['k_visual']) == (0.0, 1.0)  # rank 0 alone would pick audio


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_teachers_then_g2d_epoch(tmp_path):
    sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[1]))
    from test_tools.e2e import SMALL, run
    config = 'configs/g2d/g2d_r18_avdigits.py'
    teachers = tmp_path / 'teachers'
    run([sys.executable, 'tools/analysis/modality_analysis.py', config, '--teacher',
         '--work-dir', str(teachers), '--cfg-options', *SMALL, 'train_cfg.max_epochs=1'])
    art = json.loads((teachers / 'analysis.json').read_text())
    assert art['mode'] == 'teacher' and art['joint'] is None
    assert all(art['unimodal'][m]['qualifies_as_teacher'] for m in ('audio', 'visual'))
    run([sys.executable, 'tools/train.py', config, '--work-dir', str(tmp_path / 'g2d'),
                '--cfg-options', *SMALL, 'train_cfg.max_epochs=1', 'custom_hooks.0.tau=(1,0)',
                f'custom_hooks.0.analysis={teachers / "analysis.json"}'])
    records = [json.loads(line) for p in sorted((tmp_path / 'g2d').glob('*/vis_data/scalars.json'))
               for line in p.read_text().splitlines()]
    train = [r for r in records if 'loss_g2d_feat' in r]
    assert len(train) == 6  # 192 samples / batch 32
    for r in train:
        assert r['balance/g2d/phase'] == 1.0
        ks = (r['balance/g2d/k_audio'], r['balance/g2d/k_visual'])
        assert sorted(ks) == [0.0, 1.0]
        less = min(('audio', 'visual'), key=lambda m: (r[f'balance/g2d/conf_teacher_{m}'],
                                                       m != 'audio'))
        assert r[f'balance/g2d/k_{less}'] == 1.0
        assert math.isfinite(r['loss_g2d_logit']) and 'balance/g2d/conf_student_audio' in r
    assert (tmp_path / 'g2d' / 'test_results.json').exists()  # testing needs no teachers


# --------------------------------------------------------------------------- accumulation
def class_logits(probs, labels):
    """C-class teacher logits with softmax[y] = p: row (0, .., x, .., 0), x = ln(2p/(1-p))."""
    rows = []
    for p, y in zip(probs, labels):
        row = [0.0] * C
        row[y] = math.log((C - 1) * p / (1 - p))
        rows.append(row)
    return t(rows)


@pytest.mark.parametrize('partial', [False, True])
def test_accumulation_equals_the_large_batch_smp(partial):
    """SPEC "Clarifications": confidence sums and counts over the micro-batches, SMP decided
    once at the step. Here the second micro-batch alone would prioritize visual; the update's
    2B samples prioritize audio."""
    labels = [0, 1, 2, 0, 1, 2, 0, 1]
    probs = {'audio': [0.1, 0.2, 0.3, 0.2, 0.8, 0.7, 0.6, 0.7],    # halves 0.2 / 0.7
             'visual': [0.5, 0.6, 0.4, 0.5, 0.6, 0.5, 0.6, 0.7]}   # halves 0.5 / 0.6
    c = {m: sum(v) / len(v) for m, v in probs.items()}              # 0.45 / 0.55
    c_last = {m: sum(v[B:]) / B for m, v in probs.items()}
    assert c['audio'] < c['visual'] and c_last['visual'] < c_last['audio']
    base = build_model('mlp')
    g = torch.Generator().manual_seed(5)
    inputs = {'audio': torch.randn(2 * B, 3, generator=g),
              'visual': torch.randn(2 * B, 2, generator=g)}
    feats = {m: torch.randn(2 * B, base.encoders[m].out_channels, generator=g)
             for m in base.modalities}
    logits = {m: class_logits(probs[m], labels) for m in base.modalities}
    halves = (slice(0, B), slice(B, 2 * B))
    kw = dict(tau=(1, 1), partial_suppression=partial)

    large = copy.deepcopy(base)
    hook = G2DHook(**kw)
    attach(hook, large, fixed_teachers({m: [(feats[m], logits[m])] for m in base.modalities}))
    Stepper(large, [hook], lr=0.5)(inputs, {'gt_label': torch.tensor(labels)}, it=1)

    acc = copy.deepcopy(base)
    hook = G2DHook(**kw)
    attach(hook, acc, fixed_teachers({m: [(feats[m][h], logits[m][h]) for h in halves]
                                      for m in base.modalities}))
    wrapper = sgd_wrapper(acc, lr=0.5, accumulative_counts=2)
    wrapper.initialize_count_status(acc, 0, 2)
    stepper = Stepper(acc, [hook], optim_wrapper=wrapper)
    for it, h in enumerate(halves):
        stepper({m: x[h] for m, x in inputs.items()}, {'gt_label': torch.tensor(labels[h])},
                it=it)
    # logged at the update: the 2B samples' confidences (float32 teacher logits) and decision
    assert float(hook._pending['conf_teacher_audio']) == pytest.approx(c['audio'], rel=1e-6)
    assert float(hook._pending['conf_teacher_visual']) == pytest.approx(c['visual'], rel=1e-6)
    k_visual = 1 - math.tanh(c['visual'] / c['audio']) if partial else 0.0
    assert hook._pending['k_audio'] == 1.0
    assert hook._pending['k_visual'] == pytest.approx(k_visual, rel=1e-6)
    assert hook.conf_sums is None and hook.k == {}  # reset for the next update
    after = dict(acc.named_parameters())
    before = dict(base.named_parameters())
    for n, p in large.named_parameters():
        torch.testing.assert_close(after[n], p, rtol=1e-6, atol=1e-6, msg=n)
        if owner(n) == 'audio':
            assert not torch.equal(p, before[n]), n  # the prioritized encoder moved
        if owner(n) == 'visual' and not partial:
            assert torch.equal(p, before[n]), n  # grad x 0, no momentum, no decay
