from .checkpoint import checkpoint_safe_globals, drop_executable_meta, safe_checkpoint_loading
from .config_check import check_top_level_keys
from .config_vars import CONFIG_VARS, fill_num_classes, merge_cfg_options
from .dist import DEFAULT_TIMEOUT, fill_dist_cfg, setup_cpu_distributed
from .safe_config import literal_config

__all__ = ['checkpoint_safe_globals', 'drop_executable_meta', 'safe_checkpoint_loading',
           'setup_cpu_distributed', 'fill_dist_cfg', 'DEFAULT_TIMEOUT', 'check_top_level_keys',
           'CONFIG_VARS', 'merge_cfg_options', 'fill_num_classes', 'literal_config']
