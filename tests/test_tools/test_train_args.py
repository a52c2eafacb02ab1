"""tools/train.py maps its flags onto the config as MMEngine expects."""
import argparse
import importlib.util

import pytest
from mmengine.config import Config

from .e2e import ROOT


def load_train():
    spec = importlib.util.spec_from_file_location('mmbal_train_tool', ROOT / 'tools/train.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def args(**kw):
    base = dict(work_dir=None, amp=False, resume=None, no_validate=False)
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
