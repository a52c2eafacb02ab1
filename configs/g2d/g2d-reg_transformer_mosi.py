# G2D's regression mode on CMU-MOSI sentiment: late fusion with one output per modality head,
# targets mapped from [-3, 3] onto [0, 1], student loss MSE(sigmoid(f), y) (docs/methods/
# g2d.md, "Regression"), feature distillation and the regression logit term
# MSE(sigmoid(f), sigmoid(t_m)) (reg_logit='mse'), SMP with tau (10, 10, 20) ranked by the
# regression confidence 1 - |sigmoid(t_m) - y|. The paper's regression table is MIS-ME, which
# mmbal does not read; this config applies the same mode to MOSI.
# Teachers: python tools/analysis/modality_analysis.py configs/g2d/g2d-reg_transformer_mosi.py \
#   --teacher --work-dir work_dirs/teachers_mosi_reg
_base_ = [
    '../_base_/models/affect_transformer_concat.py',
    '../_base_/datasets/mosi-reg.py',
    '../_base_/schedules/adamw_40e_affect.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='LateFusion', num_classes=1), head=None,
             task='regression', loss=dict(type='RegressionLoss', kind='mse', sigmoid=True))
default_hooks = dict(checkpoint=dict(save_best='mae/fused', rule='less'))  # val MAE
custom_hooks = [
    dict(type='G2DHook', lambda_feat=1.0, lambda_logit=1.0, tau=(10, 10, 20),
         task='regression', reg_logit='mse',
         analysis='work_dirs/teachers_mosi_reg/analysis.json'),
]
