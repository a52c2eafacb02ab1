# MMCosine on AVE. No MMCosine source gives AVE settings: s = 15 is BalanceBenchmark's, the
# schedule the PDMP paper's protocol (batch 64, SGD lr 1e-3, 100 epochs, StepLR(70, 0.1)). Ours.
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/ave.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='CosineFusion', num_classes=28, scale=15.0),
             head=None)
