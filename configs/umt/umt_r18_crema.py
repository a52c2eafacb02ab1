# UMT on CREMA-D as G2D uses it: feature distillation from the frozen unimodal teachers only
# (lambda (1, 0)), no SMP; G2D's settings otherwise (see configs/g2d/g2d_r18_crema.py, which
# also gives the command that trains the teachers).
_base_ = ['../g2d/g2d_r18_crema.py']
custom_hooks = [
    dict(type='G2DHook', lambda_feat=1.0, lambda_logit=0.0, temperature=1.0,
         tau=(0, 300), analysis='work_dirs/teachers_crema/analysis.json'),
]
