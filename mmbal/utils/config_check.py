"""Catch misspelt top-level config keys, which MMEngine's Runner ignores silently."""
import difflib

from mmengine.config import Config

RUNNER_KEYS = (
    'model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader', 'train_cfg',
    'val_cfg', 'test_cfg', 'auto_scale_lr', 'optim_wrapper', 'param_scheduler',
    'val_evaluator', 'test_evaluator', 'default_hooks', 'custom_hooks', 'data_preprocessor',
    'load_from', 'resume', 'launcher', 'env_cfg', 'log_processor', 'log_level', 'visualizer',
    'default_scope', 'randomness', 'experiment_name', 'model_wrapper_cfg', 'runner_type',
    'custom_imports', 'vis_backends')


def check_top_level_keys(cfg: Config) -> None:
    """Raise on a top-level key that looks like a misspelling of a Runner key.

    Other unknown keys are allowed: base configs define helper variables
    (``data_root``, ``train_pipeline``...).
    """
    for key in cfg.keys():
        if key in RUNNER_KEYS or key.startswith('_'):
            continue
        close = difflib.get_close_matches(key, RUNNER_KEYS, n=1, cutoff=0.8)
        if close:
            raise KeyError(f'config key {key!r} is not used by the runner; did you mean '
                           f'{close[0]!r}? (config: {cfg.filename})')
