"""The runner's config text is formatted by yapf once, not at every use (each save)."""
import mmengine.config.config as mmengine_config
import pytest
import torch
from kill_during_save import CONFIG, tiny_cfg
from mmengine.config import Config

from mmbal.engine import build_runner
from mmbal.utils import FormatOnceConfig, safe_checkpoint_loading


@pytest.fixture
def yapf_calls(monkeypatch):
    """Counts the calls of the yapf formatter that ``Config.pretty_text`` uses."""
    calls = []
    format_code = mmengine_config.FormatCode

    def counted(*args, **kwargs):
        calls.append(1)
        return format_code(*args, **kwargs)

    monkeypatch.setattr(mmengine_config, 'FormatCode', counted)
    return calls


def test_building_a_runner_and_saving_checkpoints_format_the_config_once(
        tmp_path, yapf_calls, one_thread):
    runner = build_runner(tiny_cfg(str(tmp_path), False), str(CONFIG))
    assert len(yapf_calls) == 1  # the log, the dumped config and the visualizer share it
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.param_schedulers = runner.build_param_scheduler(runner.param_schedulers)
    for name in ('epoch_1.pth', 'best.pth', 'epoch_1.pth'):
        runner.save_checkpoint(str(tmp_path), name)
    assert len(yapf_calls) == 1
    with safe_checkpoint_loading():
        meta = torch.load(tmp_path / 'epoch_1.pth', weights_only=True)['meta']
    assert meta['cfg'] == Config.pretty_text.fget(runner.cfg)  # what MMEngine would write


def test_a_changed_config_is_formatted_again(yapf_calls):
    cfg = FormatOnceConfig.of(Config(dict(model=dict(width=16))))
    first = cfg.pretty_text
    assert cfg.pretty_text is first and len(yapf_calls) == 1
    cfg.model.width = 64  # a nested change: the unformatted text differs
    assert cfg.pretty_text == Config(dict(model=dict(width=64))).pretty_text != first
    assert len(yapf_calls) == 3


def test_of_rejects_what_is_not_a_config():
    with pytest.raises(TypeError, match='expects an mmengine Config, got dict'):
        FormatOnceConfig.of(dict(model=1))
