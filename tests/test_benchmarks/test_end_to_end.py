"""benchmarks/end_to_end.py and plain_avdigits.py: the pieces, on given numbers and 2 samples."""
import json
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from script_utils import load_script

from mmbal.registry import DATASETS

ROOT = Path(__file__).resolve().parents[2]


def script(name: str):
    """``benchmarks/<name>.py`` as a module, imported once."""
    return load_script(f'benchmarks/{name}.py', f'bench_{name}')


def mmbal_dataset(config: str, loader: str, **overrides):
    """The dataset of ``loader`` in a dataset config, as the Runner builds it."""
    init_default_scope('mmbal')
    cfg = Config.fromfile(str(ROOT / 'configs' / '_base_' / 'datasets' / config))
    return DATASETS.build(dict(cfg[loader].dataset, **overrides))


def test_summary_medians_ratios_and_table():
    e2e = script('end_to_end')
    runs = {'mmbal': [dict(wall=30.0, cpu=20.0, iter_windows=[0.10, 0.12], test_accuracy=95.0),
                      dict(wall=34.0, cpu=22.0, iter_windows=[0.11], test_accuracy=95.5),
                      dict(wall=90.0, cpu=21.0, iter_windows=[0.30], test_accuracy=94.9)],
            'plain': [dict(wall=20.0, cpu=16.0, iter_windows=[0.10], test_accuracy=95.2),
                      dict(wall=25.0, cpu=14.0, iter_windows=[0.10, 0.09], test_accuracy=95.1),
                      dict(wall=21.0, cpu=15.0, iter_windows=[0.12], test_accuracy=95.3)]}
    summary = e2e.summarize(runs)
    assert summary['mmbal']['wall'] == 34.0 and summary['plain']['cpu'] == 15.0
    assert summary['mmbal']['iteration'] == pytest.approx(0.115)
    assert summary['ratio']['wall'] == pytest.approx(34.0 / 21.0)
    assert summary['ratio']['cpu'] == pytest.approx(21.0 / 15.0)
    table = e2e.markdown_table(summary).splitlines()
    assert table[2] == '| mmbal | 3 | 34.0 | 21.0 | 115.0 | 95.00, 95.50, 94.90 |'
    assert table[3] == '| plain | 3 | 21.0 | 15.0 | 100.0 | 95.20, 95.10, 95.30 |'
    assert table[4] == '| mmbal / plain | | 1.619 | 1.400 | 1.150 | |'


def test_no_logged_window_prints_a_dash():
    e2e = script('end_to_end')
    run = dict(wall=1.0, cpu=1.0, iter_windows=[], test_accuracy=50.0)
    summary = e2e.summarize({'mmbal': [run], 'plain': [run]})
    assert summary['ratio']['iteration'] is None
    last = e2e.markdown_table(summary).splitlines()[-1]
    assert last == '| mmbal / plain | | 1.000 | 1.000 | - | |'


def test_arguments_defaults_and_errors(capsys):
    e2e = script('end_to_end')
    assert e2e.parse_args([]).epochs == 10
    assert e2e.parse_args(['--setting', 'crema-tiny']).epochs == 1
    with pytest.raises(SystemExit):
        e2e.parse_args(['--runs', '0'])
    assert '--runs 0: expected an integer >= 1' in capsys.readouterr().err
    cmd = e2e.commands('mmbal', e2e.SETTINGS['demo'], 3, 1, '/w', None)
    assert cmd[-3:] == ['/w', '--cfg-options', 'train_cfg.max_epochs=3']
    cmd = e2e.commands('plain', e2e.SETTINGS['crema-tiny'], 1, 2, '/w', '/data')
    assert cmd[cmd.index('--dataset') + 1] == 'crema-d' and cmd[-2:] == ['--data-root', '/data']
    assert '--preload' in cmd and e2e.parse_args([]).plain_data == 'preload'
    cmd = e2e.commands('plain', e2e.SETTINGS['demo'], 1, 2, '/w', None, preload=False)
    assert '--preload' not in cmd


def test_child_cpu_time_and_a_failing_child(tmp_path):
    e2e = script('end_to_end')
    busy = [sys.executable, '-S', '-c', 'import time\nt = time.process_time()\n'
            'while time.process_time() - t < 0.2: pass']
    timing = e2e.run_child(busy, 1, str(tmp_path / 'busy.log'))
    assert timing['cpu'] >= 0.2 and timing['wall'] >= 0.2
    with pytest.raises(RuntimeError, match=r'exited with 3; see .*fail\.log'):
        e2e.run_child([sys.executable, '-S', '-c', 'raise SystemExit(3)'], 0,
                      str(tmp_path / 'fail.log'))


def test_mmbal_result_reads_the_test_record_and_the_train_windows(tmp_path):
    (tmp_path / 'test_results.json').write_text(json.dumps({'test': {'accuracy/fused': 93.5}}))
    vis = tmp_path / '20261201_000000' / 'vis_data'
    vis.mkdir(parents=True)
    lines = [dict(lr=0.01, loss=1.0, time=0.2, step=20), dict(loss=0.5, time=0.3, step=40),
             {'accuracy/fused': 90.0, 'time': 0.9, 'step': 1}]  # the val line has no loss
    (vis / 'scalars.json').write_text(''.join(json.dumps(rec) + '\n' for rec in lines))
    assert script('end_to_end').mmbal_result(str(tmp_path)) == dict(
        test_accuracy=93.5, iter_windows=[0.2, 0.3])


def test_plain_windows_are_the_logged_ones():
    times = [float(i) for i in range(1, 46)]  # 45 iterations: windows 1-20 and 21-40
    plain = script('plain_avdigits')
    assert plain.window_means(times) == [10.5, 30.5]
    assert plain.window_means([2.0, 4.0]) == [3.0]  # an epoch shorter than the window


def test_plain_avdigits_samples_equal_the_mmbal_pipeline():
    plain = script('plain_avdigits').AVDigitsPlain(str(ROOT / 'data' / 'avdigits'), 'val')
    ds = mmbal_dataset('avdigits.py', 'val_dataloader', data_root=str(ROOT / 'data' / 'avdigits'),
                       indices=2)
    for i in range(2):
        audio, visual, label = plain[i]
        item = ds[i]
        assert torch.equal(audio, item['inputs']['audio'])
        assert torch.equal(visual, item['inputs']['visual'])
        assert label == item['data_samples']['gt_label']



def test_preloaded_samples_are_the_streamed_ones():
    plain = script('plain_avdigits')
    streamed = torch.utils.data.Subset(plain.AVDigitsPlain(str(ROOT / 'data' / 'avdigits'), 'val'),
                                       range(3))
    preloaded = plain.Preloaded(streamed, workers=0)
    assert len(preloaded) == 3
    for i in range(3):
        for got, want in zip(preloaded[i], streamed[i]):
            assert torch.equal(torch.as_tensor(got), torch.as_tensor(want))
