"""tools/misc/print_config.py and tools/analysis/{browse_dataset,get_flops,confusion_matrix,
analyze_results}.py: their rules on hand-made inputs, and a run on the embedded AV-Digits set."""
import json
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from step_utils import tiny_classifier

from mmbal.utils import new_figure

from .e2e import CONFIG, ROOT, load_tool

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
NARROW = ['model.encoders.audio.base_channels=4', 'model.encoders.visual.base_channels=4']


def test_print_config_shows_config_variables_where_they_feed(capsys):
    load_tool('misc/print_config.py').main(
        [str(ROOT / CONFIG), '--cfg-options', 'visual_degrade.noise_std=0.5',
         'train_cfg.max_epochs=2'])
    cfg = Config.fromstring(capsys.readouterr().out.split('Config:\n')[-1], '.py')
    assert cfg.train_cfg.max_epochs == 2
    for split in ('train', 'val', 'test'):
        assert cfg[f'{split}_dataloader'].dataset.pipeline[1].noise_std == 0.5
    with pytest.raises(KeyError, match="nothing reads the top-level key 'pipeline'"):
        load_tool('misc/print_config.py').main(
            [str(ROOT / CONFIG), '--cfg-options', 'pipeline.1.noise_std=0.5'])


def test_browse_dataset_panels_follow_the_tensor_layout():
    tool = load_tool('analysis/browse_dataset.py')
    clip = torch.arange(3 * 5 * 4 * 2, dtype=torch.float32).reshape(3, 5, 4, 2)
    frames = tool.panels('v', clip, max_frames=3)
    assert [p['title'].split('\n')[1] for p in frames] == ['frame 0/5', 'frame 2/5',
                                                          'frame 4/5']
    assert frames[0]['data'].shape == (4, 2, 3)  # RGB, H x W x C
    assert frames[0]['data'].min() == 0.0 and frames[-1]['data'].max() == 1.0
    gray = tool.panels('v', torch.zeros(1, 2, 4, 4), max_frames=8)
    assert [p['data'].shape for p in gray] == [(4, 4), (4, 4)]
    maps = tool.panels('a', torch.randn(2, 6, 7), max_frames=8)
    assert [(p['kind'], p['data'].shape) for p in maps] == [('map', (6, 7))] * 2
    assert tool.panels('f', torch.randn(9), max_frames=8)[0]['kind'] == 'line'
    with pytest.raises(ValueError, match='v: frames with 2 channels .*only 1 .gray. or 3'):
        tool.panels('v', torch.zeros(2, 1, 4, 4), max_frames=8)
    with pytest.raises(ValueError, match=r'x: cannot draw a tensor of shape 2x3'):
        tool.panels('x', torch.zeros(2, 3), max_frames=8)


def test_browse_dataset_saves_a_png_per_sample(tmp_path, capsys):
    load_tool('analysis/browse_dataset.py').main(
        [str(ROOT / CONFIG), '--split', 'val', '--num', '1', '--out-dir', str(tmp_path),
         '--cfg-options', 'val_dataloader.dataset.indices=3'])
    pngs = sorted(tmp_path.glob('*.png'))
    assert [p.name for p in pngs] == ['val_000000.png']
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in pngs)
    out = capsys.readouterr().out
    assert 'val: 3 samples, drawing the first 1' in out
    assert 'audio (1, 129, 63)' in out and 'visual (1, 1, 28, 28)' in out
    with pytest.raises(KeyError, match=r"split 'nope': .* has no nope_dataloader"):
        load_tool('analysis/browse_dataset.py').main(
            [str(ROOT / CONFIG), '--split', 'nope', '--out-dir', str(tmp_path)])


def test_get_flops_counts_each_encoder_and_the_head():
    model = tiny_classifier().eval()
    rows, _ = load_tool('analysis/get_flops.py').complexity(
        model, {'audio': torch.randn(1, 3), 'visual': torch.randn(1, 2)})
    # Linear layers, one multiply-add per weight: audio 3*5 + 5*4, visual 2*3, head 7*3;
    # parameters add the biases.
    assert rows == [('encoders.audio', 35, 15 + 5 + 20 + 4), ('encoders.visual', 6, 6 + 3),
                    ('head', 21, 21 + 3), ('total', 62, 44 + 9 + 24)]


def test_get_flops_on_the_embedded_set(capsys):
    load_tool('analysis/get_flops.py').main(
        [str(ROOT / CONFIG), '--cfg-options', *NARROW, 'test_dataloader.dataset.indices=1'])
    out = capsys.readouterr().out
    assert 'one test sample, inputs audio (1, 1, 129, 63), visual (1, 1, 1, 28, 28)' in out
    rows = [line.split('|')[1].strip() for line in out.splitlines()
            if line.startswith('| ') and 'module' not in line]
    assert rows == ['encoders.audio', 'encoders.visual', 'head', 'total']


GT = [0, 0, 1, 1, 2, 2]
PRED = {'fused': [0, 0, 1, 0, 2, 1], 'audio': [0, 1, 1, 0, 0, 1], 'visual': [1, 0, 0, 0, 2, 2]}


def preds_file(tmp_path, outputs=('fused', 'audio', 'visual')):
    doc = {'format': 'mmbal-predictions', 'version': 1, 'meta': {}, 'classes': ['a', 'b', 'c'],
           'outputs': list(outputs),
           'samples': [{'sample_idx': 10 + i, 'gt_label': g,
                        'pred_label': {o: PRED[o][i] for o in outputs}}
                       for i, g in enumerate(GT)]}
    path = tmp_path / 'preds.json'
    path.write_text(json.dumps(doc))
    return str(path)


def test_confusion_matrix_counts():
    tool = load_tool('analysis/confusion_matrix.py')
    assert tool.confusion(np.array(GT), np.array(PRED['fused']), 3).tolist() == \
        [[2, 0, 0], [1, 1, 0], [0, 1, 1]]


def test_analyze_results_patterns(tmp_path, capsys):
    tool = load_tool('analysis/analyze_results.py')
    tool.main([preds_file(tmp_path), '--out', str(tmp_path / 'a.json')])
    result = json.loads((tmp_path / 'a.json').read_text())
    # right per sample: fused 1 1 1 0 1 0; audio 1 0 1 0 0 0; visual 0 1 0 0 1 1
    by_group = {p['group']: p['sample_idx'] for p in result['patterns'] if p['group']}
    assert by_group == {'all right': [], 'only fused': [], 'only audio': [],
                        'only visual': [15], 'none right': [13]}
    counts = {tuple(p['right'].values()): p['count'] for p in result['patterns']}
    assert counts[(True, True, False)] == 2 and counts[(True, False, True)] == 2
    assert sum(counts.values()) == 6
    assert result['fused_wrong_branch_right'] == {'count': 1, 'sample_idx': [15]}
    assert result['samples'][3] == {'sample_idx': 13, 'gt_label': 1,
                                    'right': {'fused': False, 'audio': False, 'visual': False}}
    out = capsys.readouterr().out
    assert 'preds.json: 6 samples; accuracy fused 66.67%, audio 33.33%, visual 50.00%' in out
    assert '| wrong | wrong | right | 1 | 16.7% | only visual | 15 |' in out
    assert 'fused wrong although a branch is right: 1 (16.7%): 15' in out
    with pytest.raises(ValueError, match='the predictions have the fused output only'):
        tool.main([preds_file(tmp_path, outputs=('fused', ))])


def test_plots_without_matplotlib_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'matplotlib.backends.backend_agg', None)
    with pytest.raises(ImportError, match=r'confusion_matrix.py needs matplotlib, an optional '
                       r'extra of mmbal: install it with pip install -e "\.\[optional\]" '
                       r'\(or pip install matplotlib\)'):
        new_figure((2, 2), 'confusion_matrix.py')
