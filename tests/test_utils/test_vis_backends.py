"""Visualizer backends: the documented --cfg-options line adds TensorBoard beside the local
backend, and a backend whose package is missing stops build_runner naming what to install."""
import argparse
import sys
import uuid
from pathlib import Path

import pytest
from mmengine.config import Config, DictAction
from mmengine.visualization import TensorboardVisBackend

from mmbal.engine import build_runner
from mmbal.registry import RUNNERS, VISUALIZERS
from mmbal.utils import check_vis_backends, merge_cfg_options

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = str(ROOT / 'configs/_base_/default_runtime.py')
# The line docs/get_started.md gives, as the shell passes it to tools/train.py.
TENSORBOARD_OPTION = ("visualizer.vis_backends=[dict(type='LocalVisBackend'),"
                      "dict(type='TensorboardVisBackend')]")
TB_HINT = 'pip install -e ".[optional]" (or pip install tensorboard)'


def runtime_with(option: str) -> Config:
    """default_runtime.py with ``option`` merged as train.py's ``--cfg-options`` does."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    cfg = Config.fromfile(RUNTIME)
    return merge_cfg_options(cfg, parser.parse_args(['--cfg-options', option]).cfg_options)


def test_the_documented_line_writes_a_scalar_tensorboard_reads_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = runtime_with(TENSORBOARD_OPTION)
    assert cfg.visualizer.vis_backends == [dict(type='LocalVisBackend'),
                                           dict(type='TensorboardVisBackend')]
    check_vis_backends(cfg)  # installed here: no error
    visualizer = VISUALIZERS.build(dict(cfg.visualizer, name=f'vis-{uuid.uuid4()}',
                                        save_dir=str(tmp_path)))
    visualizer.add_scalars({'val/accuracy': 0.75}, step=3)
    visualizer.close()
    events = EventAccumulator(str(tmp_path / 'vis_data'))  # the Visualizer's backends' dir
    events.Reload()
    [scalar] = events.Scalars('val/accuracy')
    assert (scalar.step, scalar.value) == (3, 0.75)
    assert (tmp_path / 'vis_data/scalars.json').exists()  # the local backend still writes


@pytest.mark.parametrize('backend, hidden, needs, install', [
    ('TensorboardVisBackend', 'tensorboard', 'torch.utils.tensorboard', TB_HINT),
    ('WandbVisBackend', 'wandb', 'wandb', 'pip install wandb'),
])
def test_a_missing_backend_package_stops_build_runner_naming_the_install(
        tmp_path, monkeypatch, backend, hidden, needs, install):
    monkeypatch.setitem(sys.modules, hidden, None)  # as if not installed
    monkeypatch.delitem(sys.modules, needs, raising=False)
    monkeypatch.setattr(RUNNERS, 'build', lambda cfg: pytest.fail('the runner was built'))
    cfg = runtime_with(f"visualizer.vis_backends=[dict(type='LocalVisBackend'),"
                       f"dict(type='{backend}')]")
    cfg.work_dir = str(tmp_path)
    with pytest.raises(ImportError) as err:
        build_runner(cfg, RUNTIME)
    assert str(err.value).startswith(f'visualizer.vis_backends[1] is {backend}, which needs '
                                     f'{needs} (')
    assert str(err.value).endswith(f'); install it with {install} (config: {RUNTIME})')


def test_a_backend_given_by_its_class_is_checked_by_its_class(monkeypatch):
    class MyBoard(TensorboardVisBackend):  # a subclass under a name of its own
        pass

    monkeypatch.setitem(sys.modules, 'tensorboard', None)
    monkeypatch.delitem(sys.modules, 'torch.utils.tensorboard', raising=False)
    cfg = Config(dict(visualizer=dict(type='Visualizer', vis_backends=[dict(type=MyBoard)])))
    with pytest.raises(ImportError, match='vis_backends.0. is MyBoard, which needs torch.utils'):
        check_vis_backends(cfg)


def test_a_dict_that_is_not_a_literal_is_named():
    with pytest.raises(ValueError, match=r"--cfg-options visualizer.vis_backends: "
                       r"'dict\(type=TensorboardVisBackend\)' is not a dict of literals "
                       r"\(Name at line 1\); expected e.g. dict\(type='TensorboardVisBackend'\)"):
        runtime_with('visualizer.vis_backends=[dict(type=TensorboardVisBackend)]')
