# G-Blending on CREMA-D. Schedule: the protocol of the published comparison rows (PDMP's
# re-runs): ResNet18 from scratch, concat fusion, SGD (lr 1e-3, momentum 0.9, wd 1e-4),
# batch 64, 100 epochs, StepLR(70, 0.1). No source gives G-Blending settings for this set:
# online estimation every 10 epochs (BalanceBenchmark's super-epoch), the weights measured on
# the val split. Cost: 10 estimates x 3 copies x 10 epochs = 300 copy epochs on top of 100.
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/crema-d.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=6))
custom_hooks = [
    dict(type='GBlendHook', mode='online', super_epoch=10),
]
