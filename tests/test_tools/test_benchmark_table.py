"""tools/benchmark.py: the seed summary, the markdown table and skipping finished runs."""
import importlib.util
import json
import math
import re
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


# --------------------------------------------------------------------------- failures, journal
def fake_runs(outcomes, calls):
    """subprocess.call for tools/train.py: ``outcomes[(name, seed)]`` is 'ok', 'nan' or a code."""
    def call(cmd, **kwargs):
        work_dir = Path(cmd[cmd.index('--work-dir') + 1])
        name, seed = work_dir.parent.name, int(work_dir.name[len('seed'):])
        calls.append((name, seed))
        outcome = outcomes.get((name, seed), 'ok')
        if isinstance(outcome, int):
            kwargs['stdout'].write('Traceback ...\nNonFiniteError: non-finite loss at ...\n\n')
            return outcome
        acc = math.nan if outcome == 'nan' else 90.0 + seed
        (work_dir / 'test_results.json').write_text(json.dumps(
            {'checkpoint': 'best.pth', 'test': {'accuracy/fused': acc, 'f1/fused': 80.0}}))
        return 0
    return call


def run_main(monkeypatch, tmp_path, *extra):
    monkeypatch.setattr(bench.sys, 'argv', ['benchmark.py', 'configs/good.py', 'configs/bad.py',
                                            '--seeds', '0', '1', '--work-dir',
                                            str(tmp_path), *extra])
    bench.main()


def test_failed_runs_are_recorded_listed_and_never_aggregated(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(bench.subprocess, 'call', fake_runs({('bad', 1): 'nan'}, calls))
    with pytest.raises(SystemExit, match=r'1 of 4 runs failed \(bad seed 1\); no aggregate row '
                       r'for bad'):
        run_main(monkeypatch, tmp_path)
    assert calls == [('good', 0), ('good', 1), ('bad', 0), ('bad', 1)]  # every run is run
    out = capsys.readouterr().out
    assert 'benchmark: 4 runs, 4 to run' in out
    assert '[1/4] good seed 0: started, log ' in out
    assert '; ETA unknown (4 runs to go)' in out  # nothing timed yet
    assert re.search(r'\[1/4\] good seed 0: done in \d+s, fused acc 90\.00; ETA \d+s \(3 runs '
                     r'to go\)', out)
    assert re.search(r'\[4/4\] bad seed 1: FAILED in \d+s, ' + re.escape(
        f"{tmp_path / 'bad/seed1/test_results.json'}: metric 'accuracy/fused' is nan "
        f"(not finite)"), out)
    report = (tmp_path / 'results.md').read_text()
    assert '| good | 2 | 90.50 ± 0.71 / 80.00 ± 0.00 |' in report
    assert '| bad |' not in report.split('### Failed runs')[0]  # bad seed 0 is not averaged
    assert f"| bad | 1 | {tmp_path / 'bad/seed1/test_results.json'}: metric 'accuracy/fused' " \
           f"is nan (not finite): the run diverged or evaluated a broken checkpoint | " \
           f"{tmp_path / 'bad/seed1/benchmark_stdout.log'} |" in report
    journal = [json.loads(line) for line in (tmp_path / 'journal.jsonl').read_text().splitlines()]
    assert [(r['run'], r['event'], r.get('status')) for r in journal] == [
        ('good/seed0', 'start', None), ('good/seed0', 'end', 'done'),
        ('good/seed1', 'start', None), ('good/seed1', 'end', 'done'),
        ('bad/seed0', 'start', None), ('bad/seed0', 'end', 'done'),
        ('bad/seed1', 'start', None), ('bad/seed1', 'end', 'failed')]
    csv_runs = (tmp_path / 'results.csv').read_text().splitlines()[1:]
    assert [line.split(',')[1:3] for line in csv_runs] == [['good', '0'], ['good', '1'],
                                                           ['bad', '0']]


def test_nonzero_exit_and_missing_results_fail_the_run(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(bench.subprocess, 'call', fake_runs({('good', 1): 3}, calls))
    monkeypatch.setattr(bench.sys, 'argv', ['benchmark.py', 'configs/good.py', '--seeds', '0',
                                            '1', '--work-dir', str(tmp_path)])
    with pytest.raises(SystemExit, match=r'1 of 2 runs failed \(good seed 1\)'):
        bench.main()
    assert ('tools/train.py exited with code 3: NonFiniteError: non-finite loss at ...; log '
            in capsys.readouterr().out)  # the log's last line says why
    assert '| good |' not in (tmp_path / 'results.md').read_text().split('### Failed')[0]
    # exit 0 without a results file
    with pytest.raises(bench.RunFailed, match='finished without writing'):
        monkeypatch.setattr(bench.subprocess, 'call', lambda cmd, **kw: 0)
        bench.run_one('configs/x.py', 0, tmp_path / 'x' / 'seed0', [], [])


def test_a_rerun_skips_finished_runs_and_reports_earlier_failures(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(bench.subprocess, 'call', fake_runs({('bad', 0): 1, ('bad', 1): 'nan'},
                                                            calls))
    with pytest.raises(SystemExit):
        run_main(monkeypatch, tmp_path)
    calls.clear()
    capsys.readouterr()
    with pytest.raises(SystemExit, match='2 of 4 runs failed'):
        run_main(monkeypatch, tmp_path)
    assert calls == []  # nothing trains again
    out = capsys.readouterr().out
    assert 'benchmark: 4 runs, 0 to run' in out
    assert '[1/4] good seed 0: finished earlier, fused acc 90.00' in out
    assert ('[3/4] bad seed 0: FAILED earlier (tools/train.py exited with code 1: '
            'NonFiniteError: non-finite loss at ...; log '
            f'{tmp_path / "bad/seed0/benchmark_stdout.log"}); not run again without '
            '--retry-failed') in out
    assert "[4/4] bad seed 1: FAILED earlier (" in out and "is nan (not finite)" in out

    # --retry-failed runs them again (now they succeed); the NaN results are kept aside.
    monkeypatch.setattr(bench.subprocess, 'call', fake_runs({}, calls))
    run_main(monkeypatch, tmp_path, '--retry-failed')
    assert calls == [('bad', 0), ('bad', 1)]
    out = capsys.readouterr().out
    assert re.search(r'\[3/4\] bad seed 0: started, .*; ETA \d+s \(2 runs to go\)', out)
    assert '| bad | 2 | 90.50 ± 0.71 / 80.00 ± 0.00 |' in (tmp_path / 'results.md').read_text()
    assert (tmp_path / 'bad/seed1/test_results.json.failed').exists()


def test_an_interrupted_run_is_run_again_and_says_so(tmp_path, monkeypatch, capsys):
    journal = bench.RunJournal(tmp_path / 'journal.jsonl')
    journal.start('good/seed0', group='good')
    calls = []
    monkeypatch.setattr(bench.subprocess, 'call', fake_runs({}, calls))
    monkeypatch.setattr(bench.sys, 'argv', ['benchmark.py', 'configs/good.py', '--seeds', '0',
                                            '--work-dir', str(tmp_path)])
    bench.main()
    assert calls == [('good', 0)]
    assert '(interrupted earlier: running again)' in capsys.readouterr().out


def test_progress_eta_uses_the_group_median_then_every_run():
    import io
    from mmbal.utils.progress import Progress, format_duration
    assert [format_duration(s) for s in (0.4, 42, 662, 7500)] == ['0s', '42s', '11m02s',
                                                                  '2h05m']
    stream = io.StringIO()
    progress = Progress(['a0', 'a1', 'b0', 'b1'], groups=['a', 'a', 'b', 'b'],
                        todo=[True, True, False, True], history={'b': [100.0, 300.0, 500.0]},
                        stream=stream)
    assert Progress(['a0'], stream=stream).eta() == 'ETA unknown (1 run to go)'
    # group a not timed yet: every run's median (300 s) for each of a0, a1, b1
    assert progress.eta() == 'ETA 15m00s (3 runs to go)'
    progress.start(0)
    progress.end(0, 60.0, True, 'fused acc 1.00')
    # a1: 60 s (group a); b1: 300 s (median of b); b0 is not run
    assert stream.getvalue().splitlines()[-1] == '[1/4] a0: done in 1m00s, fused acc 1.00; ' \
                                                 'ETA 6m00s (2 runs to go)'
    progress.end(1, 1000.0, False)  # a failed run's time is not an estimate
    assert progress.eta() == 'ETA 5m00s (1 run to go)'
    progress.note(2, 'finished earlier')
    assert stream.getvalue().splitlines()[-1] == '[3/4] b0: finished earlier'


def test_results_without_a_checkpoint_fail_the_run_not_the_benchmark(tmp_path, monkeypatch,
                                                                      capsys):
    def call(cmd, **kwargs):
        work_dir = Path(cmd[cmd.index('--work-dir') + 1])
        if cmd[1] == 'tools/train.py':
            (work_dir / 'test_results.json').write_text(json.dumps(
                {'checkpoint': None, 'test': {'accuracy/fused': 90.0, 'f1/fused': 80.0}}))
        else:
            Path(cmd[cmd.index('--out') + 1]).write_text(json.dumps({'accuracy/fused': 1.0}))
        return 0

    monkeypatch.setattr(bench.subprocess, 'call', call)
    monkeypatch.setattr(bench.sys, 'argv', ['benchmark.py', 'configs/good.py', '--seeds', '0',
                                            '--extra-split', 'test_human', '--work-dir',
                                            str(tmp_path)])
    with pytest.raises(SystemExit, match=r'1 of 1 runs failed \(good seed 0\)'):
        bench.main()
    assert '"checkpoint" must be the path' in capsys.readouterr().out
