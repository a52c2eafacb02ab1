# Composition: PDMP's gate coefficients and UMT's feature distillation in one run
# (AV-Digits, setting b). The two hooks compose in the training step: PDMP's
# coefficients scale the whole gradient reaching each encoder, UMT's MSE term adds
# to the loss (and, reading the gated features, is scaled with it).
# Late fusion (UMT's setting; PDMP's w diagnostic reads its analytic logits).
# Teachers as for configs/umt/umt_r18_avdigits.py:
#   python tools/analysis/modality_analysis.py configs/g2d/g2d_r18_avdigits.py --teacher \
#       --work-dir work_dirs/teachers_avdigits
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='LateFusion', num_classes=10), head=None)
custom_hooks = [
    dict(type='PDMPHook', gamma_p=5.0, dominant='visual', optim_dominant='visual'),
    dict(type='G2DHook', lambda_feat=1.0, lambda_logit=0.0, temperature=1.0,
         tau=(0, 10), analysis='work_dirs/teachers_avdigits/analysis.json', cache=True),
]
