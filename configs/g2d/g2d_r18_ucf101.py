# G2D on UCF101 (RGB + optical flow). The G2D paper reports no UCF101 table; its general
# settings (see g2d_r18_crema.py): late fusion, batch 16, SGD lr 1e-3, StepLR(200, 0.1),
# 300 epochs, lambda (1, 1), T 1, SMP tau (150, 150). Encoders from ImageNet weights, as the
# other UCF101 configs (ours: G2D trains from scratch on its datasets).
# Teachers first:
#   python tools/analysis/modality_analysis.py configs/g2d/g2d_r18_ucf101.py --teacher \
#       --work-dir work_dirs/teachers_ucf101
_base_ = [
    '../_base_/models/rgbflow_resnet18_concat.py',
    '../_base_/datasets/ucf101.py',
    '../_base_/schedules/sgd_300e_g2d.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='LateFusion', num_classes=101), head=None)
train_dataloader = dict(batch_size=16)
custom_hooks = [
    dict(type='G2DHook', lambda_feat=1.0, lambda_logit=1.0, temperature=1.0,
         tau=(150, 150), analysis='work_dirs/teachers_ucf101/analysis.json'),
]
