from .checkpoint import checkpoint_safe_globals, drop_executable_meta, safe_checkpoint_loading
from .config_check import check_top_level_keys
from .dist import setup_cpu_distributed
from .safe_config import literal_config

__all__ = ['checkpoint_safe_globals', 'drop_executable_meta', 'safe_checkpoint_loading',
           'setup_cpu_distributed', 'check_top_level_keys', 'literal_config']
