"""tools/benchmark.py: the seed summary, the markdown table and skipping finished runs."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_tool():
    """Import the script from its file path (``tools`` is not a package)."""
    spec = importlib.util.spec_from_file_location('benchmark', ROOT / 'tools' / 'benchmark.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_tool()


def metrics(**values: float) -> dict:
    """``fused_acc=80`` -> ``{'accuracy/fused': 80.0}``, ``fused_f1`` -> ``f1/fused``."""
    out = {}
    for name, value in values.items():
        modality, kind = name.rsplit('_', 1)
        out[f'{"accuracy" if kind == "acc" else "f1"}/{modality}'] = float(value)
    return out


# Three seeds of a two-modality run and of an audio-only run.
ROWS = {
    'concat': [
        metrics(fused_acc=80, fused_f1=70, audio_acc=50, audio_f1=40, visual_acc=60,
                visual_f1=55),
        metrics(fused_acc=82, fused_f1=74, audio_acc=50, audio_f1=41, visual_acc=60,
                visual_f1=58),
        metrics(fused_acc=87, fused_f1=72, audio_acc=56, audio_f1=42, visual_acc=60,
                visual_f1=61),
    ],
    'audio-only': [
        metrics(audio_acc=40, audio_f1=30),
        metrics(audio_acc=45, audio_f1=30),
        metrics(audio_acc=44, audio_f1=33),
    ],
}

# By hand: mean, then sqrt(sum of squared deviations / (3 - 1)).
EXPECTED = {
    'concat': {
        'accuracy/fused': (83.0, math.sqrt((9 + 1 + 16) / 2)),   # 80 82 87
        'f1/fused': (72.0, 2.0),                                  # 70 74 72: (4+4+0)/2
        'accuracy/audio': (52.0, math.sqrt((4 + 4 + 16) / 2)),    # 50 50 56
        'f1/audio': (41.0, 1.0),                                  # 40 41 42
        'accuracy/visual': (60.0, 0.0),                           # 60 60 60
        'f1/visual': (58.0, 3.0),                                 # 55 58 61: (9+0+9)/2
    },
    'audio-only': {
        'accuracy/audio': (43.0, math.sqrt((9 + 4 + 1) / 2)),     # 40 45 44
        'f1/audio': (31.0, math.sqrt((1 + 1 + 4) / 2)),           # 30 30 33
    },
}


def test_summarise_mean_and_sample_std():
    table = bench.summarise(ROWS)
    assert [t['name'] for t in table] == ['concat', 'audio-only']
    for entry in table:
        expected = EXPECTED[entry['name']]
        assert entry['seeds'] == 3
        assert set(entry) - {'name', 'seeds'} == set(expected)
        for key, (mean, std) in expected.items():
            assert entry[key] == pytest.approx((mean, std), abs=1e-12), key


def test_summarise_single_seed_has_zero_std():
    (entry,) = bench.summarise({'one': [metrics(fused_acc=90, fused_f1=80)]})
    assert entry['seeds'] == 1
    assert entry['accuracy/fused'] == (90.0, 0.0)


def test_markdown_table():
    text = bench.markdown(bench.summarise(ROWS), 'Bench: test split')
    assert text == (
        '### Bench: test split\n'
        '\n'
        '| run | seeds | fused acc / F1 | audio acc / F1 | visual acc / F1 |\n'
        '|---|---|---|---|---|\n'
        # sqrt(13) = 3.606, sqrt(12) = 3.464
        '| concat | 3 | 83.00 ± 3.61 / 72.00 ± 2.00 | 52.00 ± 3.46 / 41.00 ± 1.00'
        ' | 60.00 ± 0.00 / 58.00 ± 3.00 |\n'
        # sqrt(7) = 2.646, sqrt(3) = 1.732; no fused or visual output: a dash
        '| audio-only | 3 | — | 43.00 ± 2.65 / 31.00 ± 1.73 | — |\n')


def test_markdown_extra_modalities_follow_the_known_ones():
    table = bench.summarise({'tri': [metrics(text_acc=1, text_f1=2, fused_acc=3,
                                             fused_f1=4, audio_acc=5, audio_f1=6)]})
    head = bench.markdown(table, 't').splitlines()[2]
    assert head == '| run | seeds | fused acc / F1 | audio acc / F1 | text acc / F1 |'


def write_results(work_dir: Path) -> None:
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / 'test_results.json').write_text(json.dumps(
        {'checkpoint': str(work_dir / 'best.pth'), 'seed': 0,
         'test': metrics(fused_acc=90, fused_f1=89)}))


def test_run_one_skips_finished_runs(tmp_path, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError(f'subprocess.call({args}) for a finished run')

    monkeypatch.setattr(bench.subprocess, 'call', must_not_run)
    work_dir = tmp_path / 'concat' / 'seed0'
    write_results(work_dir)
    (work_dir / 'test_test_human.json').write_text('{}')
    bench.run_one('configs/x.py', 0, work_dir, [], ['test_human'])
    assert sorted(p.name for p in work_dir.iterdir()) == ['test_results.json',
                                                         'test_test_human.json']


def test_run_one_runs_what_is_missing(tmp_path, monkeypatch):
    calls = []

    def fake_call(cmd, **kwargs):
        calls.append(cmd)
        if cmd[1] == 'tools/train.py':
            write_results(Path(cmd[cmd.index('--work-dir') + 1]))
        return 0

    monkeypatch.setattr(bench.subprocess, 'call', fake_call)
    work_dir = tmp_path / 'concat' / 'seed2'
    bench.run_one('configs/x.py', 2, work_dir, ['a=1'], ['test_human'])
    assert [c[1] for c in calls] == ['tools/train.py', 'tools/test.py']
    assert calls[0][-2:] == ['randomness.seed=2', 'a=1']
    assert 'test_dataloader.dataset.split=test_human' in calls[1]
    assert (work_dir / 'wall_time.json').exists()

    calls.clear()
    (work_dir / 'test_test_human.json').write_text('{}')
    bench.run_one('configs/x.py', 2, work_dir, ['a=1'], ['test_human'])
    assert calls == []
