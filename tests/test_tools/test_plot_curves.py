"""tools/analysis/plot_curves.py on fake work dirs (no training)."""
import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def load_tool():
    """Import the script from its file path (``tools`` is not a package)."""
    spec = importlib.util.spec_from_file_location(
        'plot_curves', ROOT / 'tools' / 'analysis' / 'plot_curves.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pc = load_tool()


def train_line(it: int, epoch: int, loss: float, **extra) -> dict:
    return {'lr': 0.01, 'data_time': 0.01, 'loss': loss, 'acc/fused': 50.0 + it,
            'time': 0.1, 'epoch': epoch, 'iter': it, 'step': it, **extra}


def val_line(epoch: int, acc: float) -> dict:
    return {'accuracy/fused': acc, 'f1/fused': acc - 1, 'accuracy/audio': acc - 10,
            'f1/audio': acc - 11, 'accuracy/visual': acc - 20, 'f1/visual': acc - 21,
            'data_time': 0.02, 'time': 0.5, 'step': epoch}


def write_launch(work_dir: Path, timestamp: str, records: list) -> None:
    vis = work_dir / timestamp / 'vis_data'
    vis.mkdir(parents=True)
    (vis / 'scalars.json').write_text(''.join(json.dumps(r) + '\n' for r in records))


@pytest.fixture
def runs(tmp_path):
    """A resumed run (two launches) and a plain one."""
    resumed, plain = tmp_path / 'bench' / 'pdmp', tmp_path / 'bench' / 'concat'
    # Written newest first so that merging must follow the names, not creation order.
    write_launch(resumed, '20260102_000000', [
        train_line(3, 2, 0.9, **{'balance/pdmp/w_audio_visual': 0.7}),  # redoes step 3
        train_line(4, 2, 0.8, **{'balance/pdmp/w_audio_visual': 0.6}),
        val_line(2, 72.0),                                              # redoes epoch 2
        val_line(3, 75.0),
    ])
    write_launch(resumed, '20260101_000000', [
        train_line(1, 1, 2.0, **{'balance/pdmp/w_audio_visual': 1.0}),
        train_line(2, 1, 1.5, **{'balance/pdmp/w_audio_visual': 0.9}),
        val_line(1, 60.0),
        train_line(3, 2, 1.2, **{'balance/pdmp/w_audio_visual': 0.8}),  # lost on resume
        val_line(2, 70.0),
    ])
    write_launch(plain, '20260101_120000', [
        train_line(1, 1, 2.2), train_line(2, 1, 1.7), val_line(1, 55.0),
        train_line(3, 2, 1.1), train_line(4, 2, 0.7), val_line(2, 65.0),
    ])
    # Another run's launch one level deeper (tools/test.py work dir) is not read.
    write_launch(resumed / 'test_extra', '20260103_000000', [val_line(9, 0.0)])
    return resumed, plain


def test_load_merges_resumed_launches(runs):
    resumed, _ = runs
    scalars = pc.load_scalars(resumed)
    train, val = scalars['train'], scalars['val']
    assert train['loss'] == {1: 2.0, 2: 1.5, 3: 0.9, 4: 0.8}
    assert list(train['loss']) == [1, 2, 3, 4]
    assert train['balance/pdmp/w_audio_visual'] == {1: 1.0, 2: 0.9, 3: 0.7, 4: 0.6}
    assert train['acc/fused'] == {1: 51.0, 2: 52.0, 3: 53.0, 4: 54.0}
    assert val['accuracy/fused'] == {1: 60.0, 2: 72.0, 3: 75.0}
    assert val['f1/visual'] == {1: 39.0, 2: 51.0, 3: 54.0}
    # Names logged by both phases stay apart; bookkeeping fields are not curves.
    assert train['time'] == {1: 0.1, 2: 0.1, 3: 0.1, 4: 0.1}
    assert val['time'] == {1: 0.5, 2: 0.5, 3: 0.5}
    assert not {'epoch', 'iter', 'step'} & (set(train) | set(val))
    assert not any(k.startswith(('loss', 'acc/', 'balance/')) for k in val)


def test_resolve_keys_patterns_and_phases(runs):
    loaded = [pc.load_scalars(r) for r in runs]
    assert pc.resolve_keys(pc.DEFAULT_KEYS, loaded) == [
        ('val', 'accuracy/fused'), ('val', 'accuracy/audio'), ('val', 'accuracy/visual')]
    assert pc.resolve_keys(['loss', 'balance/pdmp/*', 'loss'], loaded) == [
        ('train', 'loss'), ('train', 'balance/pdmp/w_audio_visual')]
    assert pc.resolve_keys(['time'], loaded) == [('train', 'time'), ('val', 'time')]
    assert pc.resolve_keys(['val:time'], loaded) == [('val', 'time')]


def test_missing_scalars_names_the_work_dir(tmp_path):
    empty = tmp_path / 'empty_run'
    (empty / '20260101_000000' / 'vis_data').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='empty_run.*scalars.json'):
        pc.load_scalars(empty)
    with pytest.raises(FileNotFoundError, match='no_such_run.*does not exist'):
        pc.load_scalars(tmp_path / 'no_such_run')


def test_unlogged_key_names_the_key_and_lists_logged_ones(runs):
    loaded = [pc.load_scalars(r) for r in runs]
    with pytest.raises(ValueError, match=r"'balance/ogm_ge/k_audio' was not logged") as info:
        pc.resolve_keys(['loss', 'balance/ogm_ge/k_audio'], loaded)
    message = str(info.value)
    for key in ('loss', 'balance/pdmp/w_audio_visual', 'accuracy/fused', 'f1/audio'):
        assert key in message
    with pytest.raises(ValueError, match="'train:accuracy/fused'"):
        pc.resolve_keys(['train:accuracy/fused'], loaded)


def test_cli_errors_exit_with_the_message(runs, tmp_path):
    with pytest.raises(SystemExit, match='nowhere'):
        pc.main([str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'x.png')])
    with pytest.raises(SystemExit, match="'not/a_key'"):
        pc.main([str(runs[0]), '--keys', 'not/a_key', '--out', str(tmp_path / 'x.png')])
    assert not (tmp_path / 'x.png').exists()


def test_smooth_and_default_labels(runs):
    np.testing.assert_allclose(pc.smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1, 2, 4, 6])
    np.testing.assert_allclose(pc.smooth(np.array([1.0, 3.0]), 1), [1, 3])
    assert pc.default_labels(runs) == ['pdmp', 'concat']
    assert pc.default_labels(runs[:1]) == ['pdmp']


def test_writes_a_png(runs, tmp_path):
    pytest.importorskip('matplotlib')
    out = tmp_path / 'plots' / 'curves.png'
    pc.main([*map(str, runs), '--keys', 'accuracy/*', 'loss', 'balance/pdmp/*',
             '--labels', 'PDMP', 'Concat', '--smooth', '2', '--out', str(out)])
    data = out.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC
    # 5 subplots -> 3 columns x 2 rows of 5.5 x 3.8 inches at 100 dpi.
    width, height = struct.unpack('>II', data[16:24])
    assert (width, height) == (1650, 760)

    default = pc.plot_curves(runs[1:], tmp_path / 'default.png')
    assert default.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match='1 labels for 2 work dirs'):
        pc.plot_curves(runs, tmp_path / 'bad.png', labels=['only-one'])
