# G2D on CREMA-D with the paper's settings: ResNet18 encoders from scratch, late fusion (mean of
# per-modality linear heads), batch 16, SGD lr 1e-3, StepLR(200, 0.1), 300 epochs; feature and
# logit distillation (lambda 1, 1; T 1) and SMP with tau (150, 150): the less confident modality
# trains alone for 150 epochs, then both jointly for 150.
# Teachers (the student's encoders, full training split, this schedule) come first:
#   python tools/analysis/modality_analysis.py configs/g2d/g2d_r18_crema.py --teacher \
#       --work-dir work_dirs/teachers_crema
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/crema-d.py',
    '../_base_/schedules/sgd_300e_g2d.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='LateFusion', num_classes=6), head=None)
train_dataloader = dict(batch_size=16)
custom_hooks = [
    dict(type='G2DHook', lambda_feat=1.0, lambda_logit=1.0, temperature=1.0,
         tau=(150, 150), analysis='work_dirs/teachers_crema/analysis.json'),
]
