"""Build the runner a config asks for (``runner_type``), as the tools do."""
import os.path as osp

from mmengine.config import Config
from mmengine.runner import Runner

from mmbal.registry import RUNNERS
from mmbal.utils import check_top_level_keys, fill_dist_cfg, fill_num_classes, \
    setup_cpu_distributed


def build_runner(cfg: Config, config_path: str, launcher: str = 'none') -> Runner:
    """Check the config, fill the defaults it leaves unset (work dir, distributed timeout,
    class counts from the data), set up CPU DDP, build the runner."""
    check_top_level_keys(cfg)
    if cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    cfg.launcher = launcher
    if launcher != 'none':
        fill_dist_cfg(cfg)
    if launcher == 'pytorch':
        setup_cpu_distributed(cfg)
    fill_num_classes(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
