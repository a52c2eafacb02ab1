"""AffectRegressionMetric against hand-computed values of the field's conventions."""
import math

import numpy as np
import pytest
import torch

from mmbal.evaluation import AffectRegressionMetric

TRUTH = [2.0, -1.0, 0.0, 0.5, -2.5]
FUSED = [1.0, 0.4, -0.2, 0.3, -3.4]
AUDIO = [0.0, 0.0, 0.0, 0.0, 0.0]


def samples(truth=TRUTH, fused=FUSED, audio=AUDIO):
    return [{'pred_score': torch.tensor([p]), 'gt_label': y, 'sample_idx': i,
             'modality_scores': {'audio': torch.tensor([a])}}
            for i, (y, p, a) in enumerate(zip(truth, fused, audio))]


def evaluate(metric, data):
    metric.process(None, data)
    return metric.evaluate(len(data))


def test_the_field_conventions_by_hand():
    m = evaluate(AffectRegressionMetric(), samples())
    assert m['mae/fused'] == pytest.approx((1 + 1.4 + 0.2 + 0.2 + 0.9) / 5)
    assert m['corr/fused'] == pytest.approx(np.corrcoef(FUSED, TRUTH)[0, 1])
    # zeros excluded (4 samples), > 0 vs < 0: right on 2.0, 0.5, -2.5; wrong on -1.0
    assert m['acc2_non0/fused'] == pytest.approx(75.0)
    # weighted F1: class False (support 2: tp 1, fp 0, fn 1) F1 2/3; True (support 2:
    # tp 2, fp 1, fn 0) F1 4/5 -> (2 * 2/3 + 2 * 4/5) / 4
    assert m['f1_non0/fused'] == pytest.approx(100 * (2 * 2 / 3 + 2 * 4 / 5) / 4)
    # all samples, >= 0 vs < 0: truth 0.0 counts as non-negative, predicted -0.2 -> wrong;
    # -1.0 predicted 0.4 -> wrong; 3 of 5 right
    assert m['acc2_has0/fused'] == pytest.approx(60.0)
    # classes: truth [T, F, T, T, F], pred [T, T, F, T, F]; True: tp 2 fp 1 fn 1 -> 2/3
    # (support 3), False: tp 1 fp 1 fn 1 -> 1/2 (support 2)
    assert m['f1_has0/fused'] == pytest.approx(100 * (3 * 2 / 3 + 2 * 1 / 2) / 5)
    # round(clip): truth [2, -1, 0, 0 (0.5 -> 0, half to even), -2]; pred [1, 0, 0, 0, -3]
    assert m['acc7/fused'] == pytest.approx(40.0)
    assert math.isnan(m['corr/audio'])  # constant predictions: undefined
    assert m['mae/audio'] == pytest.approx(np.mean(np.abs(TRUTH)))


def test_label_range_maps_unit_targets_back_to_scores():
    unit = lambda v: [(x + 3) / 6 for x in v]  # noqa: E731
    m = evaluate(AffectRegressionMetric(label_range=(-3, 3)),
                 samples(unit(TRUTH), unit(FUSED), unit(AUDIO)))
    ref = evaluate(AffectRegressionMetric(), samples())
    assert m == pytest.approx(ref, nan_ok=True)


def test_bad_samples_and_arguments_are_named():
    metric = AffectRegressionMetric(modalities=['audio', 'text'])
    with pytest.raises(KeyError, match='modality "text" missing from modality_scores of sample 0'):
        metric.process(None, samples())
    bad = samples()
    bad[1]['pred_score'] = torch.tensor([0.1, 0.2])
    with pytest.raises(ValueError, match=r'pred_score of sample 1 must hold one regression '
                                         r'value, got shape \(2,\)'):
        AffectRegressionMetric().process(None, bad)
    with pytest.raises(ValueError, match=r'label_range=\(3.0, -3.0\); expected \(low, high\)'):
        AffectRegressionMetric(label_range=(3, -3))
