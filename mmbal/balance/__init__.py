"""Math shared by balance methods (confidence, ratios, cross-rank reductions, dataset passes)."""
from . import aim  # noqa: F401  (AIM, mmbal.balance.aim)
from .dataset_pass import build_split_loader, dataset_pass, eval_mode, mean_of, per_class_sums
from .functional import (PARAM_FILTERS, all_reduce_sum, check_param_filter,
                         encoder_conv_weights, filtered_params, gt_confidence, shared_seed)
from .reinit import blend_from_snapshot_, param_snapshot, reset_optimizer_state
from .teachers import TeacherCache, UnimodalTeachers, load_teachers

__all__ = ['gt_confidence', 'all_reduce_sum', 'encoder_conv_weights', 'shared_seed',
           'PARAM_FILTERS', 'filtered_params', 'check_param_filter',
           'UnimodalTeachers', 'TeacherCache', 'load_teachers', 'eval_mode',
           'build_split_loader', 'dataset_pass', 'per_class_sums', 'mean_of', 'param_snapshot',
           'blend_from_snapshot_', 'reset_optimizer_state']
