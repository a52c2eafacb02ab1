# MMCosine on Kinetics-Sounds. As for AVE (mmcosine_r18_ave.py): s = 15 (BalanceBenchmark's)
# and the PDMP paper's protocol; ours. num_classes 31 matches OGM-GE's lists.
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/kinetics-sounds.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='CosineFusion', num_classes=31, scale=15.0),
             head=None)
