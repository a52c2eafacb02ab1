"""tools/benchmark.py --preset: presets resolve, --dry-run trains nothing, the paper column."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from mmbal.utils.metafiles import MetafileError, Metafiles, load_preset

ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted((ROOT / 'configs' / 'presets').glob('*.yml'))


def load_tool():
    spec = importlib.util.spec_from_file_location('benchmark', ROOT / 'tools' / 'benchmark.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_tool()


@pytest.fixture(scope='module')
def metafiles():
    return Metafiles(ROOT)


def test_every_preset_resolves(metafiles):
    assert {p.stem for p in PRESETS} >= {'pdmp_crema', 'arl_crema', 'g2d_crema', 'aim_crema',
                                          'avdigits'}
    for path in PRESETS:
        preset = load_preset(path, metafiles)
        assert preset.runs and preset.seeds == (0, 1, 2)
        for run in preset.runs:
            # every run trains on the preset's dataset
            assert metafiles.model(run.config).training_data == preset.dataset
        expected = [metafiles.expected(r.config, preset.source, preset.dataset)
                    for r in preset.runs]
        assert any(expected), path


def test_avdigits_preset_has_both_settings_of_every_measured_method(metafiles):
    preset = load_preset(ROOT / 'configs' / 'presets' / 'avdigits.yml', metafiles)
    measured = {c for c, m in metafiles.models.items() if m.result('mmbal', 'AV-Digits')}
    assert measured <= {r.config for r in preset.runs}


def run_main(monkeypatch, capsys, *argv):
    monkeypatch.setattr(sys, 'argv', ['benchmark.py', *argv])
    bench.main()
    return capsys.readouterr().out


def test_dry_run_lists_the_runs_and_the_estimate_without_training(tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setattr(bench.subprocess, 'call', pytest.fail)  # nothing may be run
    out = run_main(monkeypatch, capsys, '--preset', 'arl_crema', '--dry-run',
                   '--work-dir', str(tmp_path))
    # 100 epochs x ceil(6028 / 64) = 9500 steps; CREMA-D has no measured step time
    assert '| arl_r18_crema | ARL | 9500 | — | — |' in out
    assert 'No device-hour estimate' in out
    assert '(6 runs, seeds 0 1 2)' in out
    assert 'ablation: asymmetric coefficients (AL)' in out  # a row mmbal cannot run
    assert not any(tmp_path.iterdir())


def test_dry_run_estimate_uses_the_presets_step_times(tmp_path, monkeypatch, capsys):
    preset = tmp_path / 'configs' / 'presets' / 'tiny.yml'
    preset.parent.mkdir(parents=True)
    preset.write_text(
        'Name: tiny\nTitle: Tiny\nSource: mmbal\nDataset: AV-Digits\nSeeds: [0, 1]\n'
        'Train Samples: {Count: 640, From: by hand}\n'
        'Step Time: {Default ms: 36000, From: a test}\n'
        'Runs:\n'
        '  - {Config: configs/concat/concat_r18_avdigits.py, Row: concat}\n'
        '  - {Config: configs/pdmp/pdmp_r18_avdigits.py, Row: PDMP, Step ms: 72000}\n')
    monkeypatch.setattr(bench, 'preset_path', lambda name, root: preset)
    out = run_main(monkeypatch, capsys, '--preset', 'tiny', '--dry-run')
    # 10 epochs x 640 / 64 = 100 steps per seed; 2 seeds x 100 x 36 s = 2 h
    assert '| concat_r18_avdigits | concat | 100 | 36000 (default) | 2.00 |' in out
    assert '| pdmp_r18_avdigits | PDMP | 100 | 72000 | 4.00 |' in out
    assert 'Estimated device-hours: 6.0 ' in out and 'Step times: a test' in out


def fake_run(root: Path, name: str, seed: int, acc: float, f1: float) -> None:
    run = root / name / f'seed{seed}'
    run.mkdir(parents=True)
    (run / 'test_results.json').write_text(json.dumps(
        {'test': {'accuracy/fused': acc, 'f1/fused': f1, 'accuracy/audio': 50.0,
                  'f1/audio': 40.0}}))


def test_the_paper_column_stands_beside_ours(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench.subprocess, 'call', pytest.fail)  # results exist: no training
    for seed, (acc, f1) in enumerate([(70.0, 69.0), (72.0, 71.0), (74.0, 73.0)]):
        fake_run(tmp_path, 'concat_r18_crema', seed, acc, f1)
        fake_run(tmp_path, 'arl_r18_crema', seed, acc + 10, f1 + 10)
    out = run_main(monkeypatch, capsys, '--preset', 'arl_crema', '--work-dir', str(tmp_path))
    table = (tmp_path / 'results.md').read_text()
    assert table in out
    assert ('| run | seeds | fused acc / F1 | ARL paper acc / F1 | audio acc / F1 |'
            in table)
    assert ('| concat_r18_crema | 3 | 72.00 ± 2.00 / 71.00 ± 2.00 | 58.83 / 59.43 | '
            '50.00 ± 0.00 / 40.00 ± 0.00 |') in table
    assert '| arl_r18_crema | 3 | 82.00 ± 2.00 / 81.00 ± 2.00 | 76.61 / 77.14 |' in table
    assert 'best test accuracy' in table  # the protocol caveat
    assert 'cannot run yet' in table


def test_paper_flag_on_configs_and_a_missing_number(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench.subprocess, 'call', pytest.fail)
    for seed in (0, 1):
        fake_run(tmp_path, 'pdmp-g5_r18_crema', seed, 60.0, 59.0)
        fake_run(tmp_path, 'agm_r18_avdigits', seed, 90.0, 89.0)
    run_main(monkeypatch, capsys, 'configs/pdmp/pdmp-g5_r18_crema.py',
             'configs/agm/agm_r18_avdigits.py', '--paper', 'PDMP', '--seeds', '0', '1',
             '--work-dir', str(tmp_path))
    table = (tmp_path / 'results.md').read_text()
    assert '| pdmp-g5_r18_crema | 2 | 60.00 ± 0.00 / 59.00 ± 0.00 | 70.22 / — |' in table
    assert '| agm_r18_avdigits | 2 | 90.00 ± 0.00 / 89.00 ± 0.00 | — |' in table


def test_an_unknown_preset_or_source_is_refused_by_name(monkeypatch, capsys):
    with pytest.raises(SystemExit, match=r"preset 'nope': no file .*known presets: \["):
        run_main(monkeypatch, capsys, '--preset', 'nope', '--dry-run')
    with pytest.raises(SystemExit, match=r"--paper: 'Nobody' is neither 'mmbal' nor"):
        run_main(monkeypatch, capsys, 'configs/concat/concat_r18_crema.py', '--paper',
                 'Nobody', '--dry-run')


def test_a_preset_for_another_dataset_is_refused(tmp_path, metafiles):
    path = tmp_path / 'bad.yml'
    path.write_text('Name: bad\nTitle: Bad\nSource: PDMP\nDataset: CREMA-D\nSeeds: [0]\n'
                    'Train Samples: {Count: 10, From: x}\n'
                    'Runs: [{Config: configs/concat/concat_r18_avdigits.py, Row: concat}]\n')
    with pytest.raises(MetafileError, match=r"Runs\[0\].Config: .* trains on 'AV-Digits'"):
        load_preset(path, metafiles)
