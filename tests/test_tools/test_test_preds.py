"""tools/test.py --out-item preds on a few AV-Digits test samples, and the analysis
tools on the file it writes (a narrow model with its initial weights: no training)."""
import csv
import json

import pytest
import torch
from mmengine.config import Config

from mmbal.registry import MODELS

from .e2e import CONFIG, ROOT, load_tool

NUM = 6
OPTIONS = ['model.encoders.audio.base_channels=4', 'model.encoders.visual.base_channels=4',
           f'test_dataloader.dataset.indices={NUM}', 'test_dataloader.batch_size=4',
           'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']


@pytest.fixture(scope='module')
def tested(tmp_path_factory, one_thread):
    """``(dir, metrics, preds)`` of tools/test.py --out-item preds on an initial-weights
    checkpoint, with classwise test metrics."""
    tmp = tmp_path_factory.mktemp('test_preds')
    cfg = Config.fromfile(ROOT / CONFIG)
    cfg.merge_from_dict({k: int(v) for k, v in (o.split('=') for o in OPTIONS[:2])})
    torch.manual_seed(0)
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict(), 'meta': {}},
               tmp / 'init.pth')
    metrics = load_tool('test.py').main(
        [str(ROOT / CONFIG), str(tmp / 'init.pth'), '--work-dir', str(tmp / 'work'),
         '--out', str(tmp / 'out' / 'preds.json'), '--out-item', 'preds',
         '--cfg-options', *OPTIONS, 'test_evaluator.classwise=True'])
    return tmp / 'out', metrics, json.loads((tmp / 'out' / 'preds.json').read_text())


def test_preds_hold_every_sample_and_agree_with_the_metrics(tested):
    _, metrics, preds = tested
    assert preds['outputs'] == ['fused', 'audio', 'visual']
    assert preds['classes'] == [str(c) for c in range(10)]
    assert preds['meta']['config'].endswith(CONFIG)
    assert [s['sample_idx'] for s in preds['samples']] == list(range(NUM))
    with open(ROOT / 'data/avdigits/annotations/test.csv') as f:
        labels = [int(row['label']) for row, _ in zip(csv.DictReader(f), range(NUM))]
    assert [s['gt_label'] for s in preds['samples']] == labels
    for sample in preds['samples']:
        for output, logits in sample['logits'].items():
            assert len(logits) == 10
            assert sample['pred_label'][output] == max(range(10), key=logits.__getitem__)
    for output in preds['outputs']:
        assert preds['accuracy'][output] == pytest.approx(metrics[f'accuracy/{output}'])
        assert preds['class_accuracy'][output] == pytest.approx(
            {k.split('/')[-1]: v for k, v in metrics.items()
             if k.startswith(f'class_accuracy/{output}/')})


def test_analysis_tools_read_the_predictions(tested, capsys):
    tmp, _, preds = tested
    load_tool('analysis/analyze_results.py').main(
        [str(tmp / 'preds.json'), '--out', str(tmp / 'analysis.json')])
    analysis = json.loads((tmp / 'analysis.json').read_text())
    assert sum(p['count'] for p in analysis['patterns']) == NUM
    assert analysis['accuracy'] == pytest.approx(preds['accuracy'])
    load_tool('analysis/confusion_matrix.py').main(
        [str(tmp / 'preds.json'), '--out-dir', str(tmp / 'cm'), '--include-values'])
    for output in preds['outputs']:
        assert (tmp / 'cm' / f'confusion_{output}.png').read_bytes()[:4] == b'\x89PNG'
    out = capsys.readouterr().out
    assert f'preds.json: {NUM} samples; accuracy fused {preds["accuracy"]["fused"]:.2f}%' in out
    assert f'preds.json: {NUM} samples, 10 classes' in out
    right = round(preds['accuracy']['visual'] * NUM / 100)
    assert f'  visual: {preds["accuracy"]["visual"]:6.2f}% right ({right}/{NUM}) -> ' \
        f'{tmp / "cm" / "confusion_visual.png"}' in out


def test_out_item_preds_needs_a_json_out(capsys):
    tool = load_tool('test.py')
    for extra in ([], ['--out', 'preds.pkl']):
        with pytest.raises(SystemExit):
            tool.parse_args(['c.py', 'k.pth', '--out-item', 'preds', *extra])
        assert '--out-item preds writes JSON: give --out FILE.json' in capsys.readouterr().err
    assert tool.parse_args(['c.py', 'k.pth', '--out', 'm.txt']).out_item == 'metrics'
