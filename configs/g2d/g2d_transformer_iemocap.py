# G2D on IEMOCAP (4 emotions): late fusion over the 3-layer Transformer encoders, the affect recipe;
# feature and logit distillation (lambda 1, 1; T 1) and SMP over the three modalities, tau
# (10, 10, 20) (ours: the paper has no IEMOCAP table).
# Teachers (the student's encoders, full training split, this schedule) come first:
#   python tools/analysis/modality_analysis.py configs/g2d/g2d_transformer_iemocap.py --teacher \
#       --work-dir work_dirs/teachers_iemocap
_base_ = ['../late/late_transformer_iemocap.py']
custom_hooks = [
    dict(type='G2DHook', lambda_feat=1.0, lambda_logit=1.0, temperature=1.0,
         tau=(10, 10, 20), analysis='work_dirs/teachers_iemocap/analysis.json'),
]
