from .checkpoint import (CheckpointMismatchError, check_state_dict_matches, checkpoint_safe_globals,
                         drop_executable_meta, safe_checkpoint_loading)
from .checkpoint_files import (InvalidCheckpointError, atomic_write, check_resumable,
                               checkpoint_candidates, read_last_checkpoint,
                               remove_partial_files, write_text_atomic)
from .config_check import check_top_level_keys
from .config_vars import CONFIG_VARS, fill_num_classes, merge_cfg_options
from .dist import (DEFAULT_TIMEOUT, end_distributed, fill_dist_cfg, setup_cpu_distributed,
                   setup_slurm_env, slurm_dist_env)
from .figures import new_figure
from .formatted_config import FormatOnceConfig
from .host_allocator import check_malloc_cfg, configure_host_allocator
from .safe_config import literal_config
from .safe_pickle import UnsafePickleError, safe_pickle_load
from .samples import build_preprocessor, build_split_dataset, model_inputs
from .vis_backends import check_vis_backends

__all__ = ['checkpoint_safe_globals', 'drop_executable_meta', 'safe_checkpoint_loading',
           'CheckpointMismatchError', 'check_state_dict_matches', 'InvalidCheckpointError',
           'atomic_write', 'write_text_atomic', 'check_resumable', 'checkpoint_candidates',
           'read_last_checkpoint', 'remove_partial_files',
           'setup_cpu_distributed', 'end_distributed', 'setup_slurm_env', 'slurm_dist_env', 'fill_dist_cfg',
           'DEFAULT_TIMEOUT', 'check_top_level_keys', 'check_vis_backends',
           'CONFIG_VARS', 'merge_cfg_options', 'fill_num_classes', 'literal_config',
           'new_figure', 'build_split_dataset', 'build_preprocessor', 'model_inputs',
           'FormatOnceConfig', 'check_malloc_cfg', 'configure_host_allocator',
           'UnsafePickleError', 'safe_pickle_load']
