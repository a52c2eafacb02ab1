"""Build the runner a config asks for (``runner_type``), as the tools do."""
import os.path as osp

from mmengine.config import Config
from mmengine.runner import Runner

from mmbal.registry import RUNNERS
from mmbal.utils import check_top_level_keys, check_vis_backends, fill_dist_cfg, \
    fill_num_classes, setup_cpu_distributed, setup_slurm_env


def build_runner(cfg: Config, config_path: str, launcher: str = 'none') -> Runner:
    """Check the config, fill the defaults it leaves unset (work dir, distributed timeout,
    class counts from the data), set up slurm's environment and CPU DDP, build the runner."""
    check_top_level_keys(cfg)
    check_vis_backends(cfg)
    if cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    cfg.launcher = launcher
    if launcher != 'none':
        fill_dist_cfg(cfg)
    if launcher == 'slurm':
        setup_slurm_env(cfg)
    if launcher in ('pytorch', 'slurm'):
        setup_cpu_distributed(cfg)
    fill_num_classes(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
