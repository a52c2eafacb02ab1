"""tools/train.py (and test.py) map their flags onto the config as MMEngine expects."""
import argparse
import importlib.util

import pytest
from mmengine.config import Config

from .e2e import CONFIG, ROOT


def load_train():
    return load_tool('train')


def args(**kw):
    base = dict(work_dir=None, amp=False, resume=None, no_validate=False, auto_scale_lr=False)
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize('wrapper,expected', [('OptimWrapper', 'AmpOptimWrapper'),
                                              ('AmpOptimWrapper', 'AmpOptimWrapper')])
def test_amp_switches_to_the_matching_amp_wrapper(wrapper, expected):
    cfg = Config(dict(optim_wrapper=dict(type=wrapper, optimizer=dict(type='SGD', lr=0.1))))
    cfg = load_train().merge_args(cfg, args(amp=True))
    assert cfg.optim_wrapper.type == expected
    assert cfg.optim_wrapper.loss_scale == 'dynamic'


def test_amp_refuses_an_unknown_wrapper():
    cfg = Config(dict(optim_wrapper=dict(type='MyWrapper')))
    with pytest.raises(ValueError, match="'MyWrapper'"):
        load_train().merge_args(cfg, args(amp=True))


def test_resume_forms():
    train = load_train()
    cfg = train.merge_args(Config(dict(optim_wrapper=dict())), args(resume='auto'))
    assert cfg.resume is True and cfg.load_from is None
    cfg = train.merge_args(Config(dict(optim_wrapper=dict())), args(resume='a/epoch_3.pth'))
    assert cfg.resume is True and cfg.load_from == 'a/epoch_3.pth'


def test_auto_scale_lr_enables_the_config_s_base_batch_size():
    train = load_train()
    cfg = Config(dict(optim_wrapper=dict(), auto_scale_lr=dict(base_batch_size=64, enable=False)))
    assert train.merge_args(cfg, args()).auto_scale_lr.enable is False
    cfg = train.merge_args(cfg, args(auto_scale_lr=True))
    assert cfg.auto_scale_lr == dict(base_batch_size=64, enable=True)
    # No base_batch_size: enabled all the same; the runner names what is missing
    # (test_engine/test_auto_scale_lr.py).
    cfg = train.merge_args(Config(dict(optim_wrapper=dict())), args(auto_scale_lr=True))
    assert cfg.auto_scale_lr == dict(enable=True)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f'mmbal_{name}_tool', ROOT / f'tools/{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Built(Exception):
    """Raised by a stand-in build_runner: the test reads the config the tool built."""


@pytest.mark.parametrize('tool,extra', [('train', []), ('test', ['ckpt.pth'])])
def test_data_root_and_config_variables_reach_the_config_the_runner_gets(
        tool, extra, monkeypatch):
    module = load_tool(tool)
    seen = {}

    def fake_build_runner(cfg, path, launcher):
        seen['cfg'] = cfg
        raise Built

    monkeypatch.setattr(module, 'build_runner', fake_build_runner)
    monkeypatch.setattr('sys.argv', [f'{tool}.py', str(ROOT / CONFIG),
                                     *extra, '--data-root', '/data/avd',
                                     '--cfg-options', 'visual_degrade.noise_std=0.5'])
    with pytest.raises(Built):
        module.main()
    cfg = seen['cfg']
    for split in ('train', 'val', 'test'):
        dataset = cfg[f'{split}_dataloader'].dataset
        assert dataset.data_root == '/data/avd'
        assert dataset.pipeline[1].noise_std == 0.5


@pytest.mark.parametrize('tool,extra', [('train', []), ('test', ['ckpt.pth'])])
def test_an_override_nothing_reads_stops_the_tool(tool, extra, monkeypatch):
    module = load_tool(tool)
    monkeypatch.setattr('sys.argv', [f'{tool}.py', str(ROOT / CONFIG),
                                     *extra, '--cfg-options', 'pipeline.1.noise_std=0.5'])
    with pytest.raises(KeyError, match="nothing reads the top-level key 'pipeline'"):
        module.main()
