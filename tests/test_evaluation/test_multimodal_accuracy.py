"""Tests of MultimodalAccuracy: values against hand-computed numbers and sklearn,
independence from batching, missing modalities, and exactness under 2-process DDP."""
import json
from pathlib import Path

import pytest
import torch
from dist_utils import run_gloo
from sklearn.metrics import accuracy_score, f1_score

from mmbal.evaluation import MultimodalAccuracy
from mmbal.registry import METRICS

NUM_CLASSES = 3
# 10 samples, 3 classes: a fused output, a strong audio branch and a weak
# visual branch that never predicts class 2.
GT = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
FUSED = [0, 0, 1, 1, 1, 2, 2, 2, 2, 0]
AUDIO = [0, 0, 0, 1, 1, 1, 2, 2, 1, 2]
VISUAL = [0, 1, 0, 0, 1, 0, 1, 0, 0, 1]


def one_hot_scores(label: int, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Logits of shape (C,) whose argmax is ``label``."""
    score = torch.linspace(-0.5, 0.5, num_classes)
    score[label] = 2.0
    return score


def make_samples(indices=range(len(GT)), modalities=('audio', 'visual')) -> list[dict]:
    """Model outputs for the given sample indices, in the predict() contract."""
    preds = {'audio': AUDIO, 'visual': VISUAL}
    samples = []
    for i in indices:
        samples.append({
            'pred_score': one_hot_scores(FUSED[i]),
            'modality_scores': {m: one_hot_scores(preds[m][i]) for m in modalities},
            # mix both accepted label types
            'gt_label': torch.tensor(GT[i]) if i % 2 else GT[i],
            'sample_idx': i,
        })
    return samples


def run_metric(samples: list[dict], batch_size: int, **kwargs) -> dict:
    """Feed ``samples`` in batches and evaluate, as the val loop does."""
    metric = MultimodalAccuracy(**kwargs)
    for start in range(0, len(samples), batch_size):
        metric.process({}, samples[start:start + batch_size])
    return metric.evaluate(size=len(samples))


def test_matches_hand_computed_values():
    res = run_metric(make_samples(), batch_size=4)
    assert set(res) == {'accuracy/fused', 'f1/fused', 'accuracy/audio', 'f1/audio',
                        'accuracy/visual', 'f1/visual'}
    # fused: 7 of 10 right; per-class F1 = 2TP/(2TP+FP+FN) = 4/6, 4/6, 6/8
    assert res['accuracy/fused'] == pytest.approx(70.0)
    assert res['f1/fused'] == pytest.approx(100 * 25 / 36)
    # audio: 9 of 10 right; F1 = 1, 6/7, 6/7
    assert res['accuracy/audio'] == pytest.approx(90.0)
    assert res['f1/audio'] == pytest.approx(100 * 19 / 21)
    # visual: 3 of 10 right (samples 0, 2, 4); F1 = 4/9, 2/7, and 0 for class 2 (never predicted)
    assert res['accuracy/visual'] == pytest.approx(30.0)
    assert res['f1/visual'] == pytest.approx(100 * 46 / 189)
    assert all(isinstance(v, float) for v in res.values())


def test_matches_sklearn():
    res = run_metric(make_samples(), batch_size=10)
    for name, pred in (('fused', FUSED), ('audio', AUDIO), ('visual', VISUAL)):
        assert res[f'accuracy/{name}'] == pytest.approx(100 * accuracy_score(GT, pred))
        labels = sorted(set(GT) | set(pred))
        assert res[f'f1/{name}'] == pytest.approx(
            100 * f1_score(GT, pred, average='macro', labels=labels, zero_division=0))


def test_class_only_predicted_counts_and_unseen_class_is_excluded():
    # class 2 is predicted once but never true: F1 0 for it; class 3 of 4 never appears.
    gt, pred = [0, 0, 1], [0, 2, 1]
    samples = [{'pred_score': one_hot_scores(p, 4), 'gt_label': g, 'sample_idx': i}
               for i, (g, p) in enumerate(zip(gt, pred))]
    res = run_metric(samples, batch_size=2, num_classes=4)
    # F1 per class: 2/3 (class 0), 1 (class 1), 0 (class 2); class 3 left out
    assert res['f1/fused'] == pytest.approx(100 * 5 / 9)
    assert res['f1/fused'] == pytest.approx(
        100 * f1_score(gt, pred, average='macro', labels=[0, 1, 2], zero_division=0))
    assert res['accuracy/fused'] == pytest.approx(100 * 2 / 3)
    # no modality_scores at all: only fused metrics
    assert set(res) == {'accuracy/fused', 'f1/fused'}


def test_label_outside_num_classes_raises():
    with pytest.raises(ValueError, match='outside'):
        run_metric(make_samples(), batch_size=10, num_classes=2)


@pytest.mark.parametrize('batch_size', [1, 3, 10])
def test_batch_splitting_does_not_change_result(batch_size):
    assert run_metric(make_samples(), batch_size=batch_size) == run_metric(
        make_samples(), batch_size=len(GT))


def test_missing_modality_raises_key_error_naming_it():
    metric = MultimodalAccuracy(modalities=['audio', 'visual'])
    metric.process({}, make_samples(range(3)))
    with pytest.raises(KeyError, match='visual'):
        metric.process({}, make_samples(range(3, 5), modalities=('audio', )))
    # a sample with no modality_scores key at all
    sample = make_samples(range(1))[0]
    del sample['modality_scores']
    with pytest.raises(KeyError, match='audio'):
        metric.process({}, [sample])


def test_modality_present_in_only_some_samples_raises():
    # without `modalities`, a modality that some samples lack is not reported silently
    metric = MultimodalAccuracy()
    metric.process({}, make_samples(range(3)))
    metric.process({}, make_samples(range(3, 5), modalities=('audio', )))
    with pytest.raises(KeyError, match='visual'):
        metric.evaluate(size=5)


def test_built_from_registry_with_prefix():
    metric = METRICS.build(dict(type='MultimodalAccuracy', prefix='val', num_classes=3))
    assert isinstance(metric, MultimodalAccuracy)
    metric.process({}, make_samples())
    res = metric.evaluate(size=len(GT))
    assert res['val/accuracy/fused'] == pytest.approx(70.0)


def test_stores_one_small_record_per_sample():
    metric = MultimodalAccuracy()
    metric.process({}, make_samples(range(4)))
    assert len(metric.results) == 4
    assert metric.results[1] == {'gt': 0, 'fused': 0, 'modalities': {'audio': 0, 'visual': 1},
                                 'sample_idx': 1}



def test_classwise_accuracy_is_off_by_default_and_per_class_when_on():
    assert not any(k.startswith('class_accuracy/') for k in run_metric(make_samples(), 4))
    metric = MultimodalAccuracy(classwise=True)
    metric.dataset_meta = {'classes': ('zero', 'one', 'two')}
    metric.process({}, make_samples())
    res = metric.evaluate(size=len(GT))
    # fused: 2/3, 2/3, 3/4 of each class right; visual never predicts class 2
    assert {k: v for k, v in res.items() if k.startswith('class_accuracy/')} == pytest.approx({
        'class_accuracy/fused/zero': 100 * 2 / 3, 'class_accuracy/fused/one': 100 * 2 / 3,
        'class_accuracy/fused/two': 75.0,
        'class_accuracy/audio/zero': 100.0, 'class_accuracy/audio/one': 100.0,
        'class_accuracy/audio/two': 75.0,
        'class_accuracy/visual/zero': 100 * 2 / 3, 'class_accuracy/visual/one': 100 / 3,
        'class_accuracy/visual/two': 0.0})


def test_classwise_names_indices_without_class_names_and_skips_absent_classes():
    # class 1 of 3 has no sample: no accuracy, no key
    samples = [{'pred_score': one_hot_scores(p), 'gt_label': g, 'sample_idx': i}
               for i, (g, p) in enumerate([(0, 0), (2, 1), (2, 2)])]
    res = run_metric(samples, batch_size=3, classwise=True, num_classes=3)
    assert {k: v for k, v in res.items() if k.startswith('class_accuracy/')} == \
        {'class_accuracy/fused/0': 100.0, 'class_accuracy/fused/2': 50.0}
    with pytest.raises(TypeError, match="classwise must be True or False, got 'yes'"):
        MultimodalAccuracy(classwise='yes')


# ---- DDP ---------------------------------------------------------------------

DDP_SIZE = 7  # odd, so DefaultSampler pads rank 1 with sample 0


def _ddp_step(rank: int, world_size: int, out_dir: str) -> None:
    """One rank: evaluate the shard DefaultSampler gives it, dump indices and results."""
    from mmengine.dataset import DefaultSampler
    sampler = DefaultSampler(list(range(DDP_SIZE)), shuffle=False)
    indices = list(iter(sampler))
    metric = MultimodalAccuracy(collect_dir=str(Path(out_dir) / 'collect'))
    samples = make_samples(indices)
    for start in range(0, len(samples), 3):
        metric.process({}, samples[start:start + 3])
    res = metric.evaluate(size=DDP_SIZE)
    record = {'indices': indices, 'metrics': res}
    (Path(out_dir) / f'rank{rank}.json').write_text(json.dumps(record))


def test_ddp_two_processes_equals_single_process(tmp_path):
    run_gloo(_ddp_step, str(tmp_path))
    rank0 = json.loads((tmp_path / 'rank0.json').read_text())
    rank1 = json.loads((tmp_path / 'rank1.json').read_text())
    # the sampler padded rank 1 with a repeat of sample 0
    assert rank0['indices'] == [0, 2, 4, 6]
    assert rank1['indices'] == [1, 3, 5, 0]

    expected = run_metric(make_samples(range(DDP_SIZE)), batch_size=DDP_SIZE)
    assert rank0['metrics'] == pytest.approx(expected)
    # evaluate broadcasts the result, so rank 1 agrees
    assert rank1['metrics'] == pytest.approx(expected)
    # fused: 5 of the first 7 right; the duplicate would have made it 6 of 8
    assert expected['accuracy/fused'] == pytest.approx(100 * 5 / 7)
    padded = run_metric(make_samples([*range(DDP_SIZE), 0]), batch_size=8)
    assert padded['accuracy/fused'] != pytest.approx(expected['accuracy/fused'])
