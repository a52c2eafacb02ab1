"""tools/analysis/modality_analysis.py: role rules and the artifact of a small run."""
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from .e2e import CONFIG, ROOT, run_concurrently


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'mmbal_modality_analysis', ROOT / 'tools/analysis/modality_analysis.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_argmax_breaks_ties_by_config_order():
    tool = load_tool()
    assert tool.argmax_modality({'audio': 60.0, 'visual': 70.0}, ['audio', 'visual']) == 'visual'
    assert tool.argmax_modality({'audio': 70.0, 'visual': 70.0}, ['audio', 'visual']) == 'audio'
    assert tool.argmax_modality({'audio': 70.0, 'visual': 70.0}, ['visual', 'audio']) == 'visual'


def test_early_value_and_flip_warning():
    tool = load_tool()
    curves = {'audio': [[1, 30.0], [2, 50.0], [3, 70.0]],
              'visual': [[1, 40.0], [2, 45.0], [3, 50.0]]}
    assert tool.value_at_epoch(curves['audio'], 2) == 50.0
    with pytest.raises(KeyError, match='epoch 4'):
        tool.value_at_epoch(curves['audio'], 4)
    assert tool.ranking_flips(curves, ['audio', 'visual'], 3) == ['visual', 'audio', 'audio']
    assert tool.ranking_flips(curves, ['audio', 'visual'], 1) == []


def test_unimodal_config_keeps_encoder_and_drops_hooks():
    from mmengine.config import Config
    tool = load_tool()
    cfg = Config.fromfile(str(ROOT / 'configs/ogm_ge/ogm-ge_r18_avdigits.py'))
    uni = tool.unimodal_config(cfg, 'audio')
    assert list(uni.model.encoders) == ['audio']
    assert uni.model.encoders.audio == cfg.model.encoders.audio
    assert uni.model.head.num_classes == 10 and uni.custom_hooks == []
    joint = tool.joint_config(cfg)
    assert joint.custom_hooks == [] and joint.optim_wrapper.type == 'OptimWrapper'


@pytest.mark.slow
def test_analysis_finds_the_roles_built_into_avdigits(tmp_path):
    # (b), the default set: visual is better alone and learns faster. (a), a quarter of the
    # image/label pairs mismatched: audio is better alone, while the visual branch still
    # leads the joint model after its first epoch. Three epochs of the unimodal runs already
    # separate the modalities clearly (full runs: docs/get_started.md); the joint run is the
    # default single epoch. Both analyses run side by side, one thread each. The artifact's
    # fields are checked on the same runs (one end-to-end analysis test keeps the suite short).
    settings = {'b': ('configs/concat/concat_r18_avdigits.py', 'visual', 'visual'),
                'a': ('configs/concat/concat_r18_avdigits-a.py', 'audio', 'visual')}
    run_concurrently([[sys.executable, 'tools/analysis/modality_analysis.py', config,
                       '--work-dir', str(tmp_path / name), '--epochs', '3']
                      for name, (config, _, _) in settings.items()])
    for name, (_, m_p, m_o) in settings.items():
        art = json.loads((tmp_path / name / 'analysis.json').read_text())
        assert (art['performance_dominant'], art['optimization_dominant']) == (m_p, m_o), name
        assert art['modalities'] == ['audio', 'visual'] and art['split'] == 'val'
        finals = {m: art['unimodal'][m]['final_accuracy'] for m in art['modalities']}
        first_best = lambda d: next(m for m in art['modalities'] if d[m] == max(d.values()))  # noqa
        assert art['performance_dominant'] == first_best(finals)
        branch = {m: c[0][1] for m, c in art['joint']['branch_curves'].items()}
        assert art['optimization_dominant'] == first_best(branch)
        for m in art['modalities']:
            assert [e for e, _ in art['unimodal'][m]['curve']] == [1, 2, 3]
            assert art['unimodal'][m]['qualifies_as_teacher'] is False  # --epochs shortened it
            assert art['unimodal'][m]['checkpoint_last'].endswith('epoch_3.pth')


def test_interrupted_run_is_resumed_and_finished_run_reused(tmp_path, monkeypatch):
    # An interrupted run (checkpoints, no FINISHED marker) must be resumed, never taken
    # for a teacher; once finished it is reused (another config: test_teachers.py).
    from mmengine.config import Config
    tool = load_tool()
    cfg = Config(dict(train_cfg=dict(max_epochs=10)))
    calls = []
    monkeypatch.setattr(tool.subprocess, 'call', lambda cmd, **kw: calls.append(cmd) or 0)
    work_dir = tmp_path / 'unimodal_audio'
    work_dir.mkdir()
    (work_dir / 'last_checkpoint').write_text('epoch_9.pth')
    (work_dir / 'analysis_request.txt').write_text(cfg.pretty_text)
    tool.run(cfg, work_dir)
    assert len(calls) == 1 and calls[0][-1] == '--resume'
    assert (work_dir / tool.FINISHED).exists()
    tool.run(cfg, work_dir)
    assert len(calls) == 1
    fresh = tmp_path / 'unimodal_visual'
    tool.run(cfg, fresh)
    assert len(calls) == 2 and '--resume' not in calls[1]


def fake_training(calls, fail=()):
    """subprocess.call for tools/train.py: writes the val log and the checkpoint pointer."""
    def call(cmd, **kwargs):
        work_dir = Path(cmd[cmd.index('--work-dir') + 1])
        calls.append(work_dir.name)
        if work_dir.name in fail:
            return 1
        scalars = work_dir / '20240101_000000' / 'vis_data' / 'scalars.json'
        scalars.parent.mkdir(parents=True, exist_ok=True)
        accs = ({'accuracy/audio': 40.0, 'accuracy/visual': 60.0} if work_dir.name == 'joint'
                else {'accuracy/fused': 70.0 if work_dir.name.endswith('audio') else 80.0})
        scalars.write_text(json.dumps({'step': 1, **accs}) + '\n')
        (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_1.pth'))
        return 0
    return call


def test_every_run_has_progress_lines_and_a_journal(tmp_path, monkeypatch, capsys):
    tool = load_tool()
    calls = []
    monkeypatch.setattr(tool.subprocess, 'call', fake_training(calls))
    monkeypatch.setattr(sys, 'argv', ['modality_analysis.py', str(CONFIG), '--work-dir',
                                      str(tmp_path)])
    tool.main()
    assert calls == ['unimodal_audio', 'unimodal_visual', 'joint']
    out = capsys.readouterr().out
    assert (f'[1/3] unimodal_audio: started, log {tmp_path / "unimodal_audio/stdout.log"}; '
            'ETA unknown (3 runs to go)') in out
    assert re.search(r'\[1/3\] unimodal_audio: done in \d+s, val fused acc 70\.00; ETA \d+s '
                     r'\(2 runs to go\)', out)
    assert re.search(r'\[3/3\] joint: done in \d+s, val audio acc 40\.00, visual acc 60\.00; '
                     r'nothing left', out)
    journal = [json.loads(line) for line in (tmp_path / 'journal.jsonl').read_text().splitlines()]
    assert [(r['run'], r['event'], r.get('status'), r.get('group')) for r in journal] == [
        ('unimodal_audio', 'start', None, 'unimodal'), ('unimodal_audio', 'end', 'done',
                                                        'unimodal'),
        ('unimodal_visual', 'start', None, 'unimodal'), ('unimodal_visual', 'end', 'done',
                                                         'unimodal'),
        ('joint', 'start', None, 'joint'), ('joint', 'end', 'done', 'joint')]
    calls.clear()
    tool.main()  # everything finished: reused, and said so
    assert calls == []
    assert '[2/3] unimodal_visual: finished earlier, val fused acc 80.00' in \
        capsys.readouterr().out


def test_a_failed_run_is_journaled_and_stops_the_analysis(tmp_path, monkeypatch, capsys):
    tool = load_tool()
    calls = []
    monkeypatch.setattr(tool.subprocess, 'call', fake_training(calls, fail={'unimodal_visual'}))
    monkeypatch.setattr(sys, 'argv', ['modality_analysis.py', str(CONFIG), '--work-dir',
                                      str(tmp_path)])
    with pytest.raises(RuntimeError, match='failed; see .*unimodal_visual/stdout.log'):
        tool.main()
    assert calls == ['unimodal_audio', 'unimodal_visual']
    assert re.search(r'\[2/3\] unimodal_visual: FAILED in \d+s, .* failed; see ',
                     capsys.readouterr().out)
    last = json.loads((tmp_path / 'journal.jsonl').read_text().splitlines()[-1])
    assert last['run'] == 'unimodal_visual' and last['status'] == 'failed'
    assert last['log'] == str(tmp_path / 'unimodal_visual/stdout.log')
