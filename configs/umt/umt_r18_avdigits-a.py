# UMT as G2D uses it: feature distillation only (lambda = (1, 0)), no SMP.
# AV-Digits, setting (a); late fusion (the paper's setting), the demo schedule.
# tau[0] = 0: SMP off.
# Teachers: the unimodal runs of the modality analysis in teacher mode, trained first with
#   python tools/analysis/modality_analysis.py configs/g2d/g2d_r18_avdigits-a.py --teacher \
#       --work-dir work_dirs/teachers_avdigits-a
# (shared by every G2D/UMT config of this setting: teachers depend only on encoders and data).
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits-a.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='LateFusion', num_classes=10), head=None)
# The AV-Digits pipeline is deterministic: teachers' outputs are computed once per sample.
custom_hooks = [
    dict(type='G2DHook', lambda_feat=1.0, lambda_logit=0.0, temperature=1.0,
         tau=(0, 10), analysis='work_dirs/teachers_avdigits-a/analysis.json', cache=True),
]
