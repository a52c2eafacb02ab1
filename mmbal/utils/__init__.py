from .checkpoint import checkpoint_safe_globals, safe_checkpoint_loading
from .config_check import check_top_level_keys
from .dist import setup_cpu_distributed

__all__ = ['checkpoint_safe_globals', 'safe_checkpoint_loading', 'setup_cpu_distributed',
           'check_top_level_keys']
