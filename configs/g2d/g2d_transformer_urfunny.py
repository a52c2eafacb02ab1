# G2D on UR-Funny (the paper's A-V-TXT table): late fusion over the 3-layer Transformer
# encoders, the affect recipe (the paper's UR-Funny recipe is not in our sources), feature and
# logit distillation (lambda 1, 1; T 1), SMP with tau (10, 10, 20) (ours).
# Teachers: python tools/analysis/modality_analysis.py configs/g2d/g2d_transformer_urfunny.py \
#   --teacher --work-dir work_dirs/teachers_urfunny
_base_ = ['../late/late_transformer_urfunny.py']
custom_hooks = [
    dict(type='G2DHook', lambda_feat=1.0, lambda_logit=1.0, temperature=1.0,
         tau=(10, 10, 20), analysis='work_dirs/teachers_urfunny/analysis.json'),
]
