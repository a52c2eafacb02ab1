"""MultimodalPredictions (the predictions file tools/test.py --out-item preds writes) and
load_predictions (what the analysis tools read)."""
import json
import math

import pytest
import torch

from mmbal.evaluation import MultimodalPredictions, label_arrays, load_predictions

GT = [0, 1, 2, 2]
LOGITS = {'fused': [[2.0, 0.5, 0.1], [0.0, 1.0, 3.0], [0.1, 0.2, 0.3], [1.0, 0.0, 0.0]],
          'audio': [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 5.0], [0.0, 0.0, 1.0]],
          'visual': [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]}


def samples(order=range(len(GT)), modalities=('audio', 'visual')):
    return [{'pred_score': torch.tensor(LOGITS['fused'][i]),
             'modality_scores': {m: torch.tensor(LOGITS[m][i]) for m in modalities},
             'gt_label': torch.tensor(GT[i]), 'sample_idx': i} for i in order]


def dump(path, batches, classes=('a', 'b', 'c'), **kwargs):
    metric = MultimodalPredictions(out_file=str(path), **kwargs)
    metric.dataset_meta = {'classes': classes}
    for batch in batches:
        metric.process({}, batch)
    assert metric.evaluate(size=sum(len(b) for b in batches)) == {}
    return json.loads(path.read_text())


def test_writes_every_sample_in_index_order_with_labels_scores_and_class_accuracy(tmp_path):
    order = [2, 0, 3, 1]  # as two ranks' shards come back
    doc = dump(tmp_path / 'p.json', [samples(order[:2]), samples(order[2:])],
               meta={'checkpoint': 'c.pth'})
    assert doc['format'] == 'mmbal-predictions' and doc['version'] == 1
    assert doc['meta'] == {'checkpoint': 'c.pth'}
    assert doc['classes'] == ['a', 'b', 'c']
    assert doc['outputs'] == ['fused', 'audio', 'visual']
    assert [s['sample_idx'] for s in doc['samples']] == [0, 1, 2, 3]
    assert [s['gt_label'] for s in doc['samples']] == GT
    assert [s['pred_label'] for s in doc['samples']] == [
        {'fused': 0, 'audio': 0, 'visual': 1}, {'fused': 2, 'audio': 1, 'visual': 1},
        {'fused': 2, 'audio': 2, 'visual': 0}, {'fused': 0, 'audio': 2, 'visual': 0}]
    assert doc['samples'][1]['logits'] == {o: LOGITS[o][1] for o in doc['outputs']}
    assert doc['accuracy'] == {'fused': 50.0, 'audio': 100.0, 'visual': 25.0}
    assert doc['class_accuracy'] == {'fused': {'a': 100.0, 'b': 0.0, 'c': 50.0},
                                     'audio': {'a': 100.0, 'b': 100.0, 'c': 100.0},
                                     'visual': {'a': 0.0, 'b': 100.0, 'c': 0.0}}
    loaded = load_predictions(str(tmp_path / 'p.json'))
    idx, gt, preds = label_arrays(loaded)
    assert idx.tolist() == [0, 1, 2, 3] and gt.tolist() == GT
    assert preds['audio'].tolist() == [0, 1, 2, 2]


def test_labels_come_from_full_precision_scores(tmp_path):
    # 1.0000001 and 1.0 are equal at 6 digits; the label is still the true argmax.
    batch = [{'pred_score': torch.tensor([1.0, 1.0000001], dtype=torch.float64),
              'gt_label': 1, 'sample_idx': 0}]
    doc = dump(tmp_path / 'p.json', [batch], classes=('x', 'y'))
    assert doc['samples'][0]['logits']['fused'] == [1.0, 1.0]
    assert doc['samples'][0]['pred_label'] == {'fused': 1}
    assert doc['outputs'] == ['fused']


def test_bad_outputs_are_errors_naming_the_sample(tmp_path):
    with pytest.raises(ValueError, match="out_file must be a .json file path, got 'p.pkl'"):
        MultimodalPredictions(out_file='p.pkl')
    metric = MultimodalPredictions(out_file=str(tmp_path / 'p.json'))
    bad = samples(range(1))
    bad[0]['modality_scores']['audio'] = torch.tensor([0.0, math.nan, 1.0])
    with pytest.raises(ValueError, match=r'the audio logits of sample 0 are not finite'):
        metric.process({}, bad)
    with pytest.raises(KeyError, match='modality "visual" missing from modality_scores of '
                       'sample 1'):
        MultimodalPredictions(out_file='p.json', modalities=['audio', 'visual']).process(
            {}, samples([1], modalities=('audio', )))
    with pytest.raises(ValueError, match='the fused logits of sample 0 have 3 classes, but '
                       'the dataset has 2'):
        dump(tmp_path / 'q.json', [samples(range(1))], classes=('x', 'y'))
    assert not (tmp_path / 'q.json').exists()
    metric = MultimodalPredictions(out_file=str(tmp_path / 'r.json'))
    metric.process({}, [{'pred_score': torch.zeros(3), 'gt_label': 3, 'sample_idx': 0}])
    with pytest.raises(ValueError, match=r'labels \[3\] are not among the 3 classes'):
        metric.evaluate(size=1)


def write(path, doc):
    path.write_text(json.dumps(doc))
    return str(path)


def test_load_refuses_what_is_not_a_predictions_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"predictions file '.*nope.json' does not "
                       r'exist; write one with tools/test.py CONFIG CHECKPOINT --out '
                       r'FILE.json --out-item preds'):
        load_predictions(str(tmp_path / 'nope.json'))
    pickled = tmp_path / 'p.pkl'
    pickled.write_bytes(b'\x80\x04\x95\x00')
    with pytest.raises(ValueError, match=r'p.pkl: not a JSON predictions file'):
        load_predictions(str(pickled))
    metrics = write(tmp_path / 'm.json', {'accuracy/fused': 50.0})
    with pytest.raises(ValueError, match=r'm.json: not an mmbal predictions file \(no '
                       r'"format": "mmbal-predictions"\)'):
        load_predictions(metrics)

    good = dump(tmp_path / 'good.json', [samples()])
    cases = [
        ({'version': 2}, 'predictions file version 2; this mmbal reads version 1'),
        ({'outputs': ['audio', 'fused', 'visual']},
         r'"outputs" must list "fused" then each modality once'),
        ({'samples': []}, '"samples" must be a non-empty list'),
        ({'classes': []}, '"classes" must be a non-empty list of class names'),
    ]
    for change, message in cases:
        with pytest.raises(ValueError, match=r'bad.json: ' + message):
            load_predictions(write(tmp_path / 'bad.json', {**good, **change}))
    sample_cases = [
        ({'gt_label': 3}, r'samples\[2\].gt_label must be a class index in \[0, 3\), got 3'),
        ({'gt_label': True}, r'samples\[2\].gt_label must be a class index'),
        ({'pred_label': {'fused': 0, 'audio': 1}},
         r"samples\[2\].pred_label must have the outputs \['fused', 'audio', 'visual'\]"),
        ({'pred_label': {'fused': 0, 'audio': -1, 'visual': 0}},
         r'samples\[2\].pred_label.audio must be a class index in \[0, 3\), got -1'),
        ({'sample_idx': '2'}, r"samples\[2\].sample_idx must be an integer or null, got '2'"),
    ]
    for change, message in sample_cases:
        doc = json.loads(json.dumps(good))
        doc['samples'][2].update(change)
        with pytest.raises(ValueError, match=r'bad.json: ' + message):
            load_predictions(write(tmp_path / 'bad.json', doc))
