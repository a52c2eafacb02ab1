"""Teachers for G2D/UMT: the analysis tool's --teacher and --iters modes, and loading them.

SPEC "G2D", Teachers: the student's exact encoder, trained on the whole training
split with the full schedule; loaded from the modality-analysis artifact (or
explicit checkpoints), frozen, eval mode.
"""
import argparse
import json
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmbal.balance.teachers import (default_teacher_model, encoder_mismatch, load_teachers,
                                    teacher_command)
from mmbal.registry import MODELS
from .e2e import ROOT, SMALL, run
from .test_modality_analysis import load_tool

ENC = {'audio': dict(type='MLPEncoder', in_channels=3, out_channels=4),
       'visual': dict(type='MLPEncoder', in_channels=2, out_channels=3)}
C = 5


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmbal')


def args(**kw):
    base = dict(teacher=False, subset=100.0, epochs=None, iters=None)
    return argparse.Namespace(**{**base, **kw})


def test_teacher_mode_refuses_shortened_training():
    tool = load_tool()
    tool.check_args(args(teacher=True))
    for kw, opt in [(dict(subset=50.0), '--subset'), (dict(epochs=2), '--epochs'),
                    (dict(iters=5), '--iters')]:
        with pytest.raises(ValueError, match=opt):
            tool.check_args(args(teacher=True, **kw))
    with pytest.raises(ValueError, match='give one'):
        tool.check_args(args(iters=5, epochs=2))
    with pytest.raises(ValueError, match='>= 1'):
        tool.check_args(args(iters=0))


def test_iter_based_config():
    tool = load_tool()
    cfg = Config.fromfile(str(ROOT / 'configs/concat/concat_r18_avdigits.py'))
    out = tool.iter_based(cfg, 7)
    assert out.train_cfg == dict(type='IterBasedTrainLoop', max_iters=7, val_interval=7)
    assert out.default_hooks.checkpoint.by_epoch is False
    assert out.default_hooks.checkpoint.interval == 7
    assert out.default_hooks.logger.log_metric_by_epoch is False
    assert out.log_processor.by_epoch is False
    assert cfg.train_cfg.max_epochs == 10  # the input is not modified


def test_finished_run_is_reused_only_with_the_same_config(tmp_path):
    tool = load_tool()
    cfg = Config.fromfile(str(ROOT / 'configs/concat/concat_r18_avdigits.py'))
    (tmp_path / 'last_checkpoint').write_text('x')
    (tmp_path / tool.FINISHED).touch()
    (tmp_path / 'analysis_request.txt').write_text(cfg.pretty_text)
    tool.run(cfg, tmp_path)  # same config, finished: reused, nothing trained
    cfg.train_cfg.max_epochs = 2  # e.g. a shortened run must not become a teacher
    with pytest.raises(RuntimeError, match='different config'):
        tool.run(cfg, tmp_path)


def save_teacher(path, modality, encoder, with_cfg=False, seed=0):
    """A trained-teacher stand-in: a built unimodal model saved like MMEngine does."""
    torch.manual_seed(seed)
    model_cfg = default_teacher_model(encoder, modality, C)
    model = MODELS.build(model_cfg)
    ckpt = {'state_dict': model.state_dict()}
    if with_cfg:
        ckpt['meta'] = {'cfg': Config(dict(model=model_cfg)).pretty_text}
    torch.save(ckpt, path)
    return model


def write_artifact(tmp_path, qualifies=True, encoders=ENC):
    runs = {}
    models = {}
    for m, enc in encoders.items():
        ckpt = tmp_path / f'{m}.pth'
        models[m] = save_teacher(ckpt, m, enc, seed=len(m))
        runs[m] = dict(qualifies_as_teacher=qualifies, encoder=enc, checkpoint_best=str(ckpt),
                       checkpoint_last=str(ckpt),
                       teacher_model=default_teacher_model(enc, m, C))
    path = tmp_path / 'analysis.json'
    path.write_text(json.dumps(dict(mode='teacher', unimodal=runs)))
    return path, models


def test_load_from_artifact_runs_frozen_teachers_on_the_batch(tmp_path):
    path, models = write_artifact(tmp_path)
    teachers = load_teachers(['audio', 'visual'], ENC, C, analysis=str(path))
    inputs = {'audio': torch.randn(6, 3), 'visual': torch.randn(6, 2)}
    feats, logits = teachers(inputs)
    for m in ('audio', 'visual'):
        ref = models[m].eval()
        with torch.no_grad():
            z = ref.encoders[m](inputs[m])
            torch.testing.assert_close(feats[m], z)
            torch.testing.assert_close(logits[m], ref.head(z))
        assert feats[m].shape == (6, ENC[m]['out_channels']) and logits[m].shape == (6, C)
        assert not logits[m].requires_grad
        teacher = teachers.teachers[m]
        assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_missing_artifact_names_the_teacher_command(tmp_path):
    missing = tmp_path / 'teachers' / 'analysis.json'
    with pytest.raises(FileNotFoundError) as err:
        load_teachers(['audio', 'visual'], ENC, C, analysis=str(missing),
                      config='configs/g2d/g2d_r18_avdigits.py')
    msg = str(err.value)
    assert str(missing) in msg
    assert ('tools/analysis/modality_analysis.py configs/g2d/g2d_r18_avdigits.py --teacher '
            f'--work-dir {tmp_path / "teachers"}') in msg
    assert teacher_command('c.py', 'w/t.json').endswith('--work-dir w --out w/t.json')


def test_non_qualifying_artifact_is_refused(tmp_path):
    path, _ = write_artifact(tmp_path, qualifies=False)
    with pytest.raises(ValueError, match='(?s)does not qualify.*--teacher'):
        load_teachers(['audio', 'visual'], ENC, C, analysis=str(path))


def test_encoder_mismatch_is_named(tmp_path):
    path, _ = write_artifact(tmp_path)
    student = {**ENC, 'visual': dict(type='MLPEncoder', in_channels=2, out_channels=6)}
    with pytest.raises(ValueError, match=r"'visual'.*out_channels: 3 vs 6"):
        load_teachers(['audio', 'visual'], student, C, analysis=str(path))
    assert encoder_mismatch(dict(a=(1, 2)), dict(a=[1, 2])) == []  # tuple == list in JSON
    assert encoder_mismatch(dict(a=1), dict(a=1, b=2)) == ["b: '<unset>' vs 2"]


def test_explicit_checkpoints_with_and_without_saved_config(tmp_path):
    a = save_teacher(tmp_path / 'a.pth', 'audio', ENC['audio'])  # plain state dict
    save_teacher(tmp_path / 'v.pth', 'visual', ENC['visual'], with_cfg=True)
    teachers = load_teachers(['audio', 'visual'], ENC, C,
                             checkpoints={'audio': str(tmp_path / 'a.pth'),
                                          'visual': str(tmp_path / 'v.pth')})
    x = torch.randn(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(teachers({'audio': x, 'visual': torch.zeros(2, 2)})[1]['audio'],
                                   a.eval().head(a.encoders['audio'](x)))
    # the saved config is checked against the student's encoder
    student = {**ENC, 'visual': dict(type='MLPEncoder', in_channels=2, out_channels=3,
                                     hidden_channels=[8])}
    with pytest.raises(ValueError, match='hidden_channels'):
        load_teachers(['audio', 'visual'], student, C,
                      checkpoints={'audio': str(tmp_path / 'a.pth'),
                                   'visual': str(tmp_path / 'v.pth')})
    # a plain state dict that does not fit the student's encoder is refused by its keys
    with pytest.raises((ValueError, RuntimeError)):
        load_teachers(['audio', 'visual'], {**ENC, 'audio': dict(
            type='MLPEncoder', in_channels=3, out_channels=4, hidden_channels=[5])}, C,
            checkpoints={'audio': str(tmp_path / 'a.pth'), 'visual': str(tmp_path / 'v.pth')})
    with pytest.raises(ValueError, match='analysis'):
        load_teachers(['audio', 'visual'], ENC, C, checkpoints={'audio': str(tmp_path / 'a.pth')})


@pytest.mark.slow
def test_iters_run_is_recorded_and_not_a_teacher(tmp_path):
    config = 'configs/concat/concat_r18_avdigits.py'
    run([sys.executable, 'tools/analysis/modality_analysis.py', config, '--work-dir',
         str(tmp_path), '--iters', '2', '--cfg-options', *SMALL])
    art = json.loads((tmp_path / 'analysis.json').read_text())
    assert art['iters'] == 2 and art['epochs'] is None and art['mode'] == 'analysis'
    for m in ('audio', 'visual'):
        run_ = art['unimodal'][m]
        assert [step for step, _ in run_['curve']] == [2]   # validated once, at iteration 2
        assert run_['qualifies_as_teacher'] is False
        assert run_['checkpoint_last'].endswith('iter_2.pth')
        assert run_['encoder'] == {'type': 'ResNet18', 'in_channels': 1, 'base_channels': 8,
                                   'channels_last': True}
    assert art['joint']['iters'] == 2
    assert art['optimization_dominant'] in ('audio', 'visual')
    cfg = Config.fromfile(str(ROOT / config))
    cfg.merge_from_dict({'model.encoders.audio.base_channels': 8,
                         'model.encoders.visual.base_channels': 8})
    with pytest.raises(ValueError, match='does not qualify'):
        load_teachers(['audio', 'visual'], dict(cfg.model.encoders), 10,
                      analysis=str(tmp_path / 'analysis.json'))
