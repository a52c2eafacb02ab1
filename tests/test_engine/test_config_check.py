"""Misspelt top-level config keys are reported instead of ignored."""
import pytest
from mmengine.config import Config

from mmbal.utils import check_top_level_keys


def test_misspelt_runner_key_is_named():
    cfg = Config(dict(trian_cfg=dict(max_epochs=1), data_root='x', train_pipeline=[]))
    with pytest.raises(KeyError, match="'trian_cfg'.*did you mean 'train_cfg'"):
        check_top_level_keys(cfg)


def test_helper_variables_are_allowed():
    check_top_level_keys(Config(dict(train_cfg=dict(), data_root='x', train_pipeline=[],
                                     modalities=('audio',))))
