"""Math shared by balance methods (confidence, ratios, cross-rank reductions)."""
from .functional import all_reduce_sum, encoder_conv_weights, gt_confidence, shared_seed
from .teachers import TeacherCache, UnimodalTeachers, load_teachers

__all__ = ['gt_confidence', 'all_reduce_sum', 'encoder_conv_weights', 'shared_seed',
           'UnimodalTeachers', 'TeacherCache', 'load_teachers']
