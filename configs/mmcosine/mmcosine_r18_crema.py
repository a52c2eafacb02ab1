# MMCosine on CREMA-D with the reference code's settings (main_CD.py defaults, README command):
# ResNet18 encoders from scratch, concat + cosine classifier with s = 10, batch 32, SGD lr 1e-3,
# momentum 0.9, wd 1e-4, 200 epochs, StepLR(100, 0.1).
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/crema-d.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='CosineFusion', num_classes=6, scale=10.0),
             head=None)
train_dataloader = dict(batch_size=32)
auto_scale_lr = dict(base_batch_size=32)  # the lr above is the reference code's at batch 32
param_scheduler = [dict(type='StepLR', by_epoch=True, step_size=100, gamma=0.1)]
train_cfg = dict(max_epochs=200)
